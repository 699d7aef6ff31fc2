"""Where the tests find the shared data (real models, measurements, compiler logs), and how they skip
without it.

The folder is $TPUPLAN_SHARED, else `shared` beside the checkout: benchmarks/common.py decides, for the
tests and the benchmarks alike, and nothing else names it. It is read in place, never copied. A test
that needs a file of it skips when the file is absent, always with a reason starting with ABSENT, so
that tests/conftest.py can count those skips at the end of the run and say how to point at the data
(`.ci/run` refuses to start without it instead).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.common import COMPILER_LOGS, MEASUREMENTS, MODELS, SHARED, SHARED_ENV, cpu_model_paths, shared_manifest

ABSENT = "shared data absent"

__all__ = [
    "ABSENT",
    "COMPILER_LOGS",
    "MEASUREMENTS",
    "MODELS",
    "SHARED",
    "SHARED_ENV",
    "absent",
    "cpu_model_paths",
    "needs",
    "require",
    "shared_manifest",
]


def absent(path: Path) -> str:
    """The reason of a skip for want of `path`, a file or folder of the shared data."""
    return f"{ABSENT}: {path}"


def needs(*paths: Path) -> pytest.MarkDecorator:
    """A mark that skips a test (or, as `pytestmark`, a module) unless every path exists."""
    missing = [p for p in paths if not p.exists()]
    return pytest.mark.skipif(bool(missing), reason=absent(missing[0] if missing else paths[0]))


def require(*paths: Path) -> None:
    """Skip the running test (or fixture) unless every path exists."""
    for path in paths:
        if not path.exists():
            pytest.skip(absent(path))
