"""What every runtime's calls share: the ``segment`` logger, and the six calls on the real clock.

:class:`RealTimeCalls` gives the six calls the real wall clock and cheap,
non-repeating random message ids.
"""

from __future__ import annotations

import logging
import os
import time

from segment_core import CallMethods, message_ids

__all__ = ["RealTimeCalls", "log"]

# The reference client logs to "segment"; keeping the name keeps users' logging config working.
log = logging.getLogger("segment")


class RealTimeCalls(CallMethods):
    """The six calls stamped with the real wall clock and fast, non-repeating ids.

    Ids are UUID4s from os.urandom, as uuid4() makes them, drawn 4 KB at a time
    (see ``message_ids``), so an id costs a fraction of uuid4(). A runtime makes a
    new source after fork, so parent and child never hand out the same bytes.
    """

    _wall = staticmethod(time.time)

    @staticmethod
    def _local_utc_offset(wall: float) -> float:
        # The host's zone is read here, never in segment_core, and only for a naive timestamp.
        return time.localtime(wall).tm_gmtoff

    def _seed_ids(self) -> None:
        # A C callable where the extension is built: no Python frame per call for the id.
        self._new_message_id = message_ids(os.urandom)
