"""The solver's defaults live in planner/defaults.py, which imports nothing, so that `plan --help` shows
them without loading OR-Tools. planner/search/cpsat.py still states its own copies (it is being rewritten
elsewhere); until it imports them from defaults.py, the two must agree."""

from __future__ import annotations

from tpuplan.planner import defaults
from tpuplan.planner.search import cpsat


def test_cpsat_and_the_light_defaults_agree() -> None:
    names = ("DEFAULT_TIME_LIMIT_S", "DEFAULT_WORKERS", "MAX_TIME_LIMIT_S")
    assert {n: getattr(cpsat, n) for n in names} == {n: getattr(defaults, n) for n in names}
