"""Issue 13, "robustness", "confusing output" and the rest of "data loss": one test per item.

SIGTERM cleans up like Ctrl-C, the probe child cannot be replaced from the working directory, inputs
that are not regular files are refused without reading, a split never writes what cannot run, and
every command has -o and --json (or says why not). The output-target matrix is tests/cli/test_outputs.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import Inputs, make_inputs, one_line_error, plan
from tests.model_builders import custom_op_model
from tests.shared_data import MODELS, SHARED, needs
from tpuplan.cli import _command
from tpuplan.planner.plan import load_plan
from tpuplan.profiles.docio import dump_json
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite.reader import load_model
from tpuplan.runtime.backends import probe
from tpuplan.runtime.split import write as segments
from tpuplan.runtime.verify.check import verify

ROOT = Path(__file__).resolve().parents[2]
PLAN_BIN = Path(sys.executable).parent / "plan"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("reliability"))


def _leftovers(*dirs: Path) -> list[str]:
    return sorted(p.name for d in dirs for p in d.iterdir() if p.name.startswith((".tpuplan-", "tpuplan-")))


# --- SIGTERM ----------------------------------------------------------------------------------------


def test_sigterm_turned_into_another_error_still_terminates(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM in the middle of an import: the import machinery may report it as an ImportError."""

    def cut_short() -> Any:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        except KeyboardInterrupt:
            raise TpuplanError("no LiteRT interpreter: pip install ai-edge-litert") from None
        raise AssertionError("SIGTERM did not interrupt")

    monkeypatch.setattr(probe, "tflite_module", cut_short)
    model = tmp_path / "fresh.tflite"
    model.write_bytes(synth_fc(32, depth=2, seed=int(time.time_ns() % 2**31)))
    res = plan("split", model, "--cuts", "2", "-o", tmp_path / "segs")
    assert res.returncode == 128 + signal.SIGTERM and res.stderr.strip() == "plan: terminated", res.stderr


@pytest.mark.parametrize("when", ["probe", "writing segments"])
def test_sigterm_in_process_cleans_up_like_ctrl_c(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    model = tmp_path / "fresh.tflite"
    model.write_bytes(synth_fc(32, depth=2, seed=int(time.time_ns() % 2**31)))  # never probed before

    def terminate(*args: Any, **kwargs: Any) -> Any:
        assert _leftovers(temp, tmp_path), "the probe or staging directory should exist now"
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        raise AssertionError("SIGTERM did not interrupt")

    target = (probe.subprocess, "run") if when == "probe" else (segments, "_write_file")
    monkeypatch.setattr(*target, terminate)
    if when != "probe":
        monkeypatch.setattr(segments, "probe_models", lambda models: {})
    before = signal.getsignal(signal.SIGTERM)
    res = plan("split", model, "--cuts", "2", "-o", tmp_path / "segs")
    assert res.returncode == 128 + signal.SIGTERM and res.stderr.strip() == "plan: terminated", res.stderr
    assert _leftovers(temp, tmp_path) == [] and not (tmp_path / "segs").exists()
    assert signal.getsignal(signal.SIGTERM) == before


def test_sigterm_to_the_process_cleans_up(tmp_path: Path) -> None:
    """The real thing: `plan split` killed with SIGTERM while its probe child runs."""
    model = tmp_path / "fc2000.tflite"
    model.write_bytes(synth_fc(2000, depth=2, seed=int(time.time_ns() % 2**31)))
    temp = tmp_path / "temp"
    temp.mkdir()
    exe = [str(PLAN_BIN)] if PLAN_BIN.is_file() else [sys.executable, "-m", "tpuplan.cli"]
    env = {**os.environ, "TMPDIR": str(temp)}
    child = subprocess.Popen(
        [*exe, "split", str(model), "--cuts", "1", "-o", str(tmp_path / "segs")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not _leftovers(temp) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert _leftovers(temp), "the probe directory never appeared"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM and err.strip().endswith("plan: terminated"), err
    assert _leftovers(temp, tmp_path) == [] and not (tmp_path / "segs").exists()


# --- the probe child --------------------------------------------------------------------------------


def test_probe_child_cannot_be_replaced_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "executed"
    trap = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    for rel in (
        "runtime/__init__.py",
        "tpuplan/runtime/backends/probe.py",
        "probe_child.py",
        "numpy.py",
        "ai_edge_litert/__init__.py",
        "tpuplan/__init__.py",
        "sitecustomize.py",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(trap)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    fresh = synth_fc(16, depth=1, seed=int(time.time_ns() % 2**31))
    assert probe.probe_models([("fresh", fresh)]) == {}
    assert not marker.exists(), marker.read_text()


def test_probe_reports_python_level_errors_once(monkeypatch: pytest.MonkeyPatch) -> None:
    data = custom_op_model()
    errors = probe.probe_models([("custom", data)])
    assert errors == {"custom": "RuntimeError: Encountered unresolved custom op: NoSuchCustomOp."}
    monkeypatch.setattr(probe.subprocess, "run", lambda *a, **k: pytest.fail("probed twice"))
    assert probe.probe_models([("again", data)]) == {"again": errors["custom"]}


# --- splitting what cannot run ----------------------------------------------------------------------


def test_split_refuses_a_model_litert_cannot_run(tmp_path: Path) -> None:
    model = tmp_path / "custom.tflite"
    model.write_bytes(custom_op_model())
    line = one_line_error(
        plan("split", model, "--cuts", "1", "-o", tmp_path / "segs"),
        "the TFLite interpreter here cannot run this model (RuntimeError: Encountered unresolved "
        "custom op: NoSuchCustomOp.); it can be planned",
    )
    assert str(model) in line and not (tmp_path / "segs").exists()
    ops = json.loads(plan("inspect", model, "--json").stdout)["ops"]  # planning needs no interpreter
    assert ops[1]["op_type"] == "NoSuchCustomOp" and ops[1]["op_class"] == "custom" and not ops[1]["edgetpu"]


def test_split_refuses_a_segment_that_does_not_load(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        segments, "probe_models", lambda models: {"segment 1": "ValueError: Cannot set tensor: dimension mismatch"}
    )
    one_line_error(
        plan("split", inputs.model, "--cuts", "2", "-o", tmp_path / "segs"),
        "segment 1 (ops 3..8) does not load in the TFLite interpreter (ValueError: Cannot set tensor",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_split_refuses_a_plan_whose_stages_moved_with_their_cuts(inputs: Inputs, tmp_path: Path) -> None:
    doc = json.loads(inputs.plan.read_text())
    doc["cuts"] = [doc["cuts"][0] + 1]
    doc["stages"][0]["last_op"] += 1
    doc["stages"][0]["n_ops"] += 1
    doc["stages"][1]["first_op"] += 1
    doc["stages"][1]["n_ops"] -= 1
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    assert plan("show", edited).returncode == 0  # it agrees with itself: only the model can tell
    one_line_error(
        plan("split", inputs.model, edited, "-o", tmp_path / "segs"), "the plan was edited after it was made"
    )
    assert not (tmp_path / "segs").exists()


# --- inputs that are not regular files --------------------------------------------------------------


def _within(seconds: float, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run in a daemon thread: a command that blocks on a FIFO fails the test instead of hanging it."""
    box: list[subprocess.CompletedProcess[str]] = []
    worker = threading.Thread(target=lambda: box.append(plan(*args)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert box, f"plan {' '.join(map(str, args))} did not finish within {seconds} s"
    return box[0]


def test_devices_and_fifos_are_refused_without_reading(inputs: Inputs, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.tflite"
    zero.symlink_to("/dev/zero")
    for args in (
        ["inspect", fifo],
        ["inspect", zero],
        ["show", fifo],
        ["solve", zero, "-k", "1"],
        ["solve", inputs.profile, "-k", "2", "--device", fifo],
        ["calibrate", fifo, "-o", tmp_path / "d.json"],
    ):
        one_line_error(_within(20, *args), "is not a regular file (a device, FIFO or socket)")
    one_line_error(plan("inspect", tmp_path), "expected a profile .json or a .tflite model")


def test_outputs_are_checked_before_long_work(inputs: Inputs, tmp_path: Path) -> None:
    for args in (
        ["verify", inputs.plan, "--model", inputs.model, "-n", "500", "-o", "/missing/dir/x.json"],
        ["profile", "--measure", inputs.model, "-o", "/missing/dir/x.json"],
        ["split", inputs.model, inputs.plan, "-o", inputs.root],
    ):
        started = time.monotonic()
        one_line_error(plan(*args))
        assert time.monotonic() - started < 2.0, args


# --- confusing output -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.json"
    path.write_text(dump_json(verify(load_plan(inputs.plan), load_model(inputs.model), inputs=2, repeats=2)))
    return path


def test_show_report_is_checked_before_drawing(inputs: Inputs, report: Path, tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    one_line_error(
        plan("show", inputs.plan, "--report", report), "--report draws measured times into the picture", code=2
    )
    for field, value, message in (
        ("measured_us", float("inf"), "Input should be a finite number"),
        ("measured_us", 1e300, "stages.0.measured_us: Input should be less than or equal"),
        ("measured_us", -5.0, "stages.0.measured_us: Input should be greater than or equal"),
        ("first_op", 1, "the report's stages are not the plan's"),
        ("plan_sha256", "0" * 64, "this verify report is for another plan"),
    ):
        doc = json.loads(report.read_text())
        (doc["stages"][0] if field != "plan_sha256" else doc)[field] = value
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(doc, allow_nan=True))
        one_line_error(plan("show", inputs.plan, "--png", png, "--report", bad), message)
        assert not png.exists()
    res = plan("show", inputs.plan, "--png", png, "--report", report)
    assert res.returncode == 0 and png.read_bytes().startswith(b"\x89PNG"), res.stderr


def test_cpu_devices_have_no_on_chip_memory_in_tables(inputs: Inputs) -> None:
    assert "device  cpu (cpu), host CPU;" in plan("inspect", inputs.model, "--device", "cpu").stdout
    cpu_row = next(ln for ln in plan("devices").stdout.splitlines() if ln.startswith("cpu "))
    assert "- (host CPU)" in cpu_row and "MiB" not in cpu_row
    table = plan("solve", inputs.model, "--device", "cpu", "--cuts", "2").stdout
    assert "2 stage(s) on the host CPU" in table and "TPU(s)" not in table


def test_devices_json_is_a_versioned_document(tmp_path: Path) -> None:
    doc = json.loads(plan("devices", "--json").stdout)
    assert doc["kind"] == "tpuplan.devices" and doc["schema_version"] == 1 and doc["presets"]


def test_every_command_has_output_and_json_or_says_why_not() -> None:
    """The README promises -o and --json on every command (run and verify are the runtime's)."""
    group: Any = _command()
    commands = {name: cmd for name, cmd in group.commands.items() if name not in ("run", "verify")}
    commands.update({f"synth {n}": c for n, c in commands.pop("synth").commands.items()})
    missing = []
    for name, cmd in commands.items():
        flags = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
        has_out = "-o" in flags or "No -o:" in (cmd.help or "")
        if not (has_out and "--json" in flags):
            missing.append(name)
    assert len(commands) >= 11 and missing == []


def _clone_away_from_shared(tmp_path: Path) -> Path:
    """The tracked files, copied to a folder with no `shared` beside it."""
    clone = tmp_path / "clone" / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / rel).is_file():
            shutil.copy2(ROOT / rel, clone / rel)
    return clone


def _pytest(clone: Path, shared: Path | None, *files: str) -> subprocess.CompletedProcess[str]:
    """pytest in the clone (its own tpuplan and tests), with TPUPLAN_SHARED set to `shared` or unset."""
    env = {k: v for k, v in os.environ.items() if k != "TPUPLAN_SHARED"}
    if shared is not None:
        env["TPUPLAN_SHARED"] = str(shared)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *files],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


SPLIT_TESTS = ("tests/runtime/test_split.py", "tests/runtime/test_split_files.py")


def test_tests_skip_without_the_shared_models(tmp_path: Path) -> None:
    """A clone away from ../shared, TPUPLAN_SHARED unset: the split tests (they read the real models) skip
    instead of failing, and the run ends by saying how many skipped, where it looked and what to set."""
    clone = _clone_away_from_shared(tmp_path)
    done = _pytest(clone, None, *SPLIT_TESTS)
    assert done.returncode == 0 and "failed" not in done.stdout, done.stdout[-2000:]
    said = re.search(r"(\d+) tests skipped: the shared data .* is not at (\S+); set TPUPLAN_SHARED=", done.stdout)
    assert said is not None, done.stdout[-2000:]
    assert f"\n{said[1]} skipped in " in done.stdout and int(said[1]) >= 10  # every one, for this reason
    assert Path(said[2]) == clone.parent / "shared"


@needs(MODELS)
def test_a_clone_elsewhere_finds_the_shared_data_through_tpuplan_shared(tmp_path: Path) -> None:
    """The same clone with TPUPLAN_SHARED pointing at the data: nothing skips for want of it."""
    clone = _clone_away_from_shared(tmp_path)
    done = _pytest(clone, SHARED, "tests/runtime/test_split_files.py")
    assert done.returncode == 0 and "skipped" not in done.stdout and " passed" in done.stdout, done.stdout[-2000:]
