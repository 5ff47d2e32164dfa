"""Plugins: the user's code that sees each message before it is encoded (public module).

Re-exports ``segment_core._plugins``: see its docstring for the two kinds
(before, enrichment), their order, and what happens when one raises. Add
plugins with ``client.add_plugin(plugin)`` or ``client.add_plugin(plugin,
kind="enrichment")`` on any client, the simulator's included.
"""

from ._plugins import Enrichment, Plugin, PluginFailure, PluginKind, Sampling

__all__ = ["Enrichment", "Plugin", "PluginFailure", "PluginKind", "Sampling"]
