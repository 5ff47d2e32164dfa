from __future__ import annotations

from hypothesis_profiles import load_profile

load_profile()
