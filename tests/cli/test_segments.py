"""From a workstation to a Coral host and back: `plan split` (with `--compile` where the compiler is) writes a
folder, the folder is copied elsewhere, and `plan verify --segments` / `plan run` use it there as it is.

Plans here are priced from given cuts (`plan solve --cuts`), which needs no solver: these tests run on the
device-side install too (Python 3.9, tflite-runtime, no OR-Tools; .ci/run). The compiled folder comes from
a STAND-IN edgetpu_compiler (tests/runtime/test_compiler.py), which measures nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli_helpers import one_line_error, plan
from tests.conftest import MODELS
from tests.runtime.test_compiler import FAKE_COMPILER, LOGS
from tpuplan.runtime.backends import edgetpu
from tpuplan.runtime.split.manifest import read_manifest
from tpuplan.runtime.verify.report import VerifyReport

SMALL = MODELS / "mobilenet_v1_0.25_128_quant.tflite"


@dataclass(frozen=True)
class Workstation:
    """What the workstation made: an Edge TPU plan and a CPU plan (cut after op 12) and their splits."""

    root: Path
    plan: Path
    cpu_plan: Path
    segments: Path
    cpu_segments: Path


@pytest.fixture(scope="module")
def workstation(tmp_path_factory: pytest.TempPathFactory) -> Workstation:
    if not SMALL.is_file():
        pytest.skip(f"{SMALL} is absent")
    root = tmp_path_factory.mktemp("workstation")
    ws = Workstation(root, root / "plan.json", root / "cpu-plan.json", root / "segs", root / "cpu-segs")
    for args in (
        ["solve", SMALL, "--cuts", "12", "-o", ws.plan],
        ["solve", SMALL, "--cuts", "12", "--device", "cpu", "-o", ws.cpu_plan],
        ["split", SMALL, ws.plan, "-o", ws.segments, "-q"],
        ["split", SMALL, ws.cpu_plan, "-o", ws.cpu_segments, "-q"],
    ):
        res = plan(*args)
        assert res.returncode == 0, res.stderr
    return ws


def _copy(src: Path, dest: Path) -> Path:
    """The folder as `scp -r` or a USB stick would bring it: same names, another place."""
    shutil.copytree(src, dest)
    return dest


def _report(res: object) -> VerifyReport:
    return VerifyReport.model_validate(json.loads(getattr(res, "stdout", "")))


def test_a_copied_folder_verifies_as_is(
    workstation: Workstation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy(workstation.segments, tmp_path / "pi" / "segs")
    monkeypatch.chdir(tmp_path)  # another working directory: the manifest names files relative to itself
    res = plan("verify", workstation.plan, "--segments", "pi/segs", "-n", "4", "--json", "-q")
    assert res.returncode == 4, res.stderr  # an Edge TPU plan measured on the CPU: nothing compared
    rep = _report(res)
    assert (rep.verdict, rep.comparable, rep.outputs_match, rep.segments) == ("not_compared", False, None, "pi/segs")
    assert rep.interpreter is not None and rep.interpreter.split()[0] in ("tflite_runtime", "ai_edge_litert")
    assert [c.within_tolerance for c in rep.stages] == [None, None]
    only = plan("verify", workstation.plan, "-s", "pi/segs", "-m", SMALL, "--outputs-only", "-n", "4", "--json", "-q")
    assert only.returncode == 0, only.stderr
    assert (_report(only).verdict, _report(only).outputs_match) == ("ok", True)
    ran = plan("run", "pi/segs", "-n", "8", "--json", "-q", "--plan", workstation.plan)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["inputs"] == 8


def test_a_cpu_plan_is_compared_stage_by_stage(workstation: Workstation) -> None:
    res = plan("verify", workstation.cpu_plan, "--segments", workstation.cpu_segments, "-n", "6", "--json", "-q")
    rep = _report(res)
    assert rep.comparable and all(c.within_tolerance is not None for c in rep.stages)
    assert (rep.verdict, res.returncode) in (("ok", 0), ("prediction_missed", 3)), res.stderr


def test_a_changed_or_missing_file_is_refused(workstation: Workstation, tmp_path: Path) -> None:
    pi = _copy(workstation.segments, tmp_path / "segs")
    first = pi / read_manifest(pi).segments[0].file
    data = bytearray(first.read_bytes())
    data[-1] ^= 1
    first.write_bytes(bytes(data))
    line = one_line_error(plan("verify", workstation.plan, "--segments", pi), "does not match the manifest")
    assert str(first) in line
    first.unlink()
    one_line_error(plan("run", pi), f"segment file {first.name!r} is missing")


def test_segments_of_another_plan_are_refused(workstation: Workstation, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    assert plan("solve", SMALL, "--cuts", "12", "--copies", "1,2", "-o", other).returncode == 0
    cuts_only = tmp_path / "cuts-only"
    assert plan("split", SMALL, "--cuts", "12", "-o", cuts_only, "-q").returncode == 0
    one_line_error(plan("verify", other, "--segments", cuts_only), "runs its segments on [1, 1] devices each")
    one_line_error(plan("verify", other, "--segments", workstation.segments), "not from this plan")
    later = tmp_path / "later.json"
    assert plan("solve", SMALL, "--cuts", "20", "-o", later).returncode == 0
    one_line_error(plan("verify", later, "--segments", workstation.segments), "but the plan cuts at [20]")


def test_verify_needs_the_model_or_the_segments(workstation: Workstation) -> None:
    res = plan("verify", workstation.plan)
    assert res.returncode == 2 and "--segments" in res.stderr and "Traceback" not in res.stderr


@pytest.fixture
def stand_in_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """edgetpu_compiler on PATH as a stand-in script (it replays a real report; see test_compiler.py)."""
    if not LOGS.is_dir():
        pytest.skip(f"real compiler reports not found in {LOGS}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "edgetpu_compiler"
    script.write_text(FAKE_COMPILER, encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_ARGS", str(tmp_path / "argv.txt"))
    monkeypatch.setenv("FAKE_REPORT", str(LOGS / "frc_model_v16.txt"))
    monkeypatch.setenv("FAKE_MODE", "ok")
    return bin_dir


def test_a_compiled_folder_on_a_host_without_tpus_or_compiler(
    workstation: Workstation, stand_in_compiler: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "compiled"
    res = plan("split", SMALL, workstation.plan, "-o", out, "--compile", "--compiler-args", "-m 13", "-q")
    assert res.returncode == 0, res.stderr
    assert "compiled with edgetpu_compiler -s --min_runtime_version 13" in res.stdout
    manifest = read_manifest(out)
    assert manifest.compiler_args == ["--min_runtime_version", "13"]
    for seg in manifest.segments:  # both files of every segment, by name beside the manifest
        assert seg.compiled is not None and "/" not in seg.file + seg.compiled.file
        assert (out / seg.file).is_file() and (out / seg.compiled.file).is_file()
    pi = _copy(out, tmp_path / "pi" / "segs")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # the Coral host: no edgetpu_compiler ...
    monkeypatch.setattr(edgetpu, "list_edge_tpus", list)  # ... and no Edge TPU plugged in
    line = one_line_error(plan("verify", workstation.plan, "--segments", pi, "--backend", "edgetpu"))
    assert "2 stages need 2 Edge TPUs but 0 are present" in line and "compiler" not in line
    line = one_line_error(plan("run", pi, "--backend", "edgetpu"))
    assert "Edge TPUs" in line and "compiler" not in line


def test_an_unrecorded_compiled_file_is_not_run(workstation: Workstation, tmp_path: Path) -> None:
    pi = _copy(workstation.segments, tmp_path / "segs")
    stray = pi / (Path(read_manifest(pi).segments[0].file).stem + "_edgetpu.tflite")
    stray.write_bytes(b"compiled by hand")
    line = one_line_error(plan("verify", workstation.plan, "--segments", pi, "--backend", "edgetpu"))
    assert f"{stray.name} lies beside it but the manifest does not record it" in line
    assert "plan split --compile" in line
