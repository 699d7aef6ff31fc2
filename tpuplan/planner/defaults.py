"""The solver's defaults and bounds, in a module that imports nothing.

The `plan` command shows and checks these in its help and option parsing; reading them from here
keeps `plan --help` from loading OR-Tools (planner.search.cpsat), which only a solve needs.
"""

from __future__ import annotations

DEFAULT_TIME_LIMIT_S = 30.0
DEFAULT_WORKERS = 1  # deterministic search, and the fastest on these narrowed models
MAX_TIME_LIMIT_S = 86_400.0
