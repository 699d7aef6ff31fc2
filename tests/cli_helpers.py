"""What the reliability tests share: the CLI in process, small inputs made here, and scratch file systems.

Everything is built from `plan synth fc` and a three-row sweep CSV, so these tests need nothing from
../shared. A full disk and a read-only file system are small tmpfs mounts, made only where this process
may mount (root in a container); elsewhere the tests that need them skip.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tpuplan import cli
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite.reader import parse_model

SWEEP = (
    "Hidden neurons,# MACs,On chip mem used,Off chip mem used,Inference time\n"
    "100,1,0.05,0,0.1\n200,1,0.1,0,0.2\n300,1,0.2,0,0.3\n"
)


def plan(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `plan ARGS` in process, exactly as the console script does (main() catches our errors)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(["plan", *map(str, args)], code, out.getvalue(), err.getvalue())


def one_line_error(res: subprocess.CompletedProcess[str], text: str = "", code: int = 1) -> str:
    """Exit `code` (1: bad input, 2: usage error) and the error as the one last line on stderr,
    `plan: error: ...` containing `text` (a progress line such as `solved in 0.01 s` may come before it;
    a traceback may not)."""
    lines = res.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("plan: error:")]
    ok = res.returncode == code and len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in res.stderr
    assert ok, (res.args, res.returncode, res.stderr)
    assert text in errors[0], (text, errors[0])
    return errors[0]


@dataclass(frozen=True)
class Inputs:
    """A small model, its profile and 2-TPU plan, and a sweep CSV, all in one directory."""

    root: Path
    model: Path
    profile: Path
    plan: Path
    csv: Path


def make_inputs(root: Path) -> Inputs:
    """The plan is the solver's: where OR-Tools is missing (a device-side install) the test skips."""
    solve = solver().solve
    root.mkdir(parents=True, exist_ok=True)
    model = root / "fc.tflite"
    model.write_bytes(synth_fc(64, depth=3))
    prof = build_profile(parse_model(model.read_bytes(), model), preset("edgetpu-usb"))
    write_doc(root / "profile.json", prof)
    write_doc(root / "plan.json", solve(prof, 2))
    (root / "fc_single_tpu.csv").write_text(SWEEP)
    return Inputs(root, model, root / "profile.json", root / "plan.json", root / "fc_single_tpu.csv")


def solver() -> Any:
    """tpuplan.planner.solve, or a skip where it cannot run: a device-side install has no OR-Tools (and
    Python 3.9 runs no solver)."""
    if sys.version_info < (3, 10):
        pytest.skip("the solver needs Python 3.10 or newer", allow_module_level=True)
    return pytest.importorskip("tpuplan.planner.solve", reason="the solver needs OR-Tools (tpuplan[planner])")


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def tmpfs(where: Path, *options: str) -> Iterator[Path | None]:
    """A small tmpfs mounted at `where` (None when this process may not mount), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    opts = ",".join(("size=64k", *options))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, check=False)
    if done.returncode != 0:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def fill(directory: Path) -> None:
    """Write into `directory` until its file system is full."""
    with open(directory / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 4096)
