"""Red-team pass 3 (issue 22), outputs: paths from documents never become file paths, nothing read is ever
written, no file is replaced without --force (not even one that appears during the run), and every
document written is one tpuplan itself would read. Each test names the finding it closes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tpuplan.cli.solve as solve_cli
from tests.cli_helpers import Inputs, make_inputs, one_line_error, plan
from tpuplan.cli.common import emit
from tpuplan.planner.solve import solve
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import write_atomic, write_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import host_preset
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite.reader import parse_model
from tpuplan.runtime.split.write import write_split
from tpuplan.runtime.tensors.outputs import NpzWriter

PLAN_BIN = Path(sys.executable).parent / "plan"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("r3outputs"))


@pytest.fixture(scope="module")
def cpu(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A float-input model, its CPU plan, its split, and a verify report of that plan."""
    root = tmp_path_factory.mktemp("r3cpu")
    model = root / "fc.tflite"
    model.write_bytes(synth_fc(64, depth=3))
    loaded = parse_model(model.read_bytes(), model)
    cplan = solve(build_profile(loaded, preset("cpu")), 2)
    write_doc(root / "cplan.json", cplan)
    write_split(loaded, root / "segs", plan=cplan)
    res = plan("verify", root / "cplan.json", "--model", model, "-n", "3", "-o", root / "report.json", "-q")
    assert res.returncode in (0, 3), res.stderr
    return {"model": model, "plan": root / "cplan.json", "segs": root / "segs", "report": root / "report.json"}


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith((".tpuplan-", "tpuplan-")))


@pytest.mark.parametrize("name", ["../victim", "{abs}", ".hidden", "a\nb"])
def test_r01_a_host_name_never_becomes_a_path_outside_hosts_dir(inputs: Inputs, tmp_path: Path, name: str) -> None:
    """R01: `calibrate --hosts-dir D` named files after the host document's `name`: `../victim` or an
    absolute path wrote (with --force, overwrote) any *.json outside D."""
    victim = tmp_path / "victim.json"
    victim.write_text("precious")
    host = host_preset("tpuplan").model_copy(update={"name": name.format(abs=tmp_path / "victim")})
    host_file = tmp_path / "host_trav.json"
    write_doc(host_file, host)
    hosts_dir = tmp_path / "hd"
    hosts_dir.mkdir()
    spec = f"{inputs.csv}:{host_file}:50"
    res = plan(
        "calibrate", inputs.csv, "--pipeline", spec, "--hosts-dir", hosts_dir, "-o", tmp_path / "d.json", "--force"
    )
    one_line_error(res, "cannot name a file in --hosts-dir")
    assert victim.read_text() == "precious" and not list(hosts_dir.iterdir()) and not (tmp_path / "d.json").exists()


@pytest.mark.parametrize("flag", ["-o", "--png"])
def test_r02_no_output_inside_a_directory_the_command_reads(inputs: Inputs, tmp_path: Path, flag: str) -> None:
    """R02: `plan verify -i DIR -o DIR/0.png --force` replaced the input image it had just read."""
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0.png").write_bytes(b"an input image")
    res = plan("verify", inputs.plan, "--model", inputs.model, "-i", frames, flag, frames / "0.png", "--force")
    one_line_error(res, "a directory this command reads")
    assert (frames / "0.png").read_bytes() == b"an input image"


def test_r02_run_writes_nothing_into_its_segments_or_image_directory(cpu: dict[str, Path], tmp_path: Path) -> None:
    segs = cpu["segs"]
    one_line_error(plan("run", segs, "-o", segs / "out.npz"), "a directory this command reads")
    link = tmp_path / "link"
    link.symlink_to(segs)  # the same directory by another name
    one_line_error(plan("run", segs, "-o", link / "out.npz"), "a directory this command reads")
    assert not (segs / "out.npz").exists()


def test_r03_calibrate_host_never_replaces_its_base(inputs: Inputs, tmp_path: Path) -> None:
    """R03: `calibrate-host --base X -o X --force` replaced its own --base host."""
    base = tmp_path / "base.json"
    write_doc(base, host_preset("tpuplan"))
    before = base.read_bytes()
    one_line_error(plan("calibrate-host", inputs.profile, "--base", base, "-o", base, "--force"), "is an input")
    assert base.read_bytes() == before


def test_r04_a_file_that_appears_during_solve_is_kept_without_force(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R04: a file created while `plan solve -o` ran was replaced without --force (check, then rename)."""
    out = tmp_path / "late.json"
    real = solve_cli._plan_for

    def late(*args: Any) -> Any:
        out.write_text("precious")  # someone else's file, made after the output check
        return real(*args)

    monkeypatch.setattr(solve_cli, "_plan_for", late)
    one_line_error(plan("solve", inputs.profile, "--tpus", "2", "-o", out), "appeared while this command ran")
    assert out.read_text() == "precious" and not _leftovers(tmp_path)
    out.unlink()
    res = plan("solve", inputs.profile, "--tpus", "2", "-o", out, "--force")  # --force replaces it
    assert res.returncode == 0 and json.loads(out.read_text())["kind"] == "tpuplan.plan", res.stderr


def test_r04_a_file_that_appears_during_run_is_kept_without_force(
    cpu: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R04: `plan run -o` replaced a file created during the run."""
    out = tmp_path / "late.npz"
    real = NpzWriter.add

    def add(self: NpzWriter, outputs: dict[str, Any]) -> None:
        if not out.exists():
            out.write_text("precious")
        real(self, outputs)

    monkeypatch.setattr(NpzWriter, "add", add)
    one_line_error(plan("run", cpu["segs"], "-n", "3", "-o", out), "appeared while this command ran")
    assert out.read_text() == "precious" and not _leftovers(tmp_path)


def test_r04_concurrent_writers_without_force_leave_one_winner(tmp_path: Path) -> None:
    """R04: of 5 concurrent `plan solve -o sq.json`, 4 'succeeded', each replacing another's file."""
    out = tmp_path / "sq.json"
    barrier, won, lost = threading.Barrier(8), [], []

    def write(k: int) -> None:
        barrier.wait()
        try:
            write_atomic(out, f"writer {k}".encode(), overwrite=False)
            won.append(k)
        except TpuplanError:
            lost.append(k)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 7 and out.read_text() == f"writer {won[0]}"
    assert not _leftovers(tmp_path)


def test_r34_run_takes_a_250_byte_output_name(cpu: dict[str, Path], tmp_path: Path) -> None:
    """R34: `plan run -o` refused names of 241-255 bytes (its staging directory added 15 bytes)."""
    out = tmp_path / ("q" * 251 + ".npz")
    res = plan("run", cpu["segs"], "-n", "2", "-o", out)
    assert res.returncode == 0 and np.load(out)[next(iter(np.load(out)))].shape[0] == 2, res.stderr


def test_r13_run_accepts_an_output_name_that_is_not_utf8(cpu: dict[str, Path], tmp_path: Path) -> None:
    """R13: the .npz was written, then RunResult refused the name (a traceback)."""
    out = Path(os.fsdecode(bytes(tmp_path) + b"/o\xff.npz"))
    res = plan("run", cpu["segs"], "-n", "2", "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    assert os.path.exists(bytes(tmp_path) + b"/o\xff.npz") and json.loads(res.stdout)["outputs_file"].endswith(
        "o\\xff.npz"
    )
    table = plan("run", cpu["segs"], "-n", "2", "-o", out, "--force")
    assert table.returncode == 0 and "o\\xff.npz" in table.stdout


def test_r11_calibrate_name_longer_than_a_device_name_is_a_usage_error(inputs: Inputs, tmp_path: Path) -> None:
    """R11: a 300-character --name ended in a DeviceSpec ValidationError traceback (and R24 for calibrate-host)."""
    out = tmp_path / "d.json"
    one_line_error(plan("calibrate", inputs.csv, "-o", out, "--name", "n" * 300), "--name: 1 to 200 characters", 2)
    one_line_error(plan("calibrate-host", inputs.profile, "-o", out, "--name", "n" * 300), "--name", 2)
    assert not out.exists()


def test_r24_a_document_tpuplan_would_refuse_is_never_written(tmp_path: Path) -> None:
    """R24: fitted documents were built with model_copy(update=...), unchecked, and written; solve then
    refused them. Every document is now read back by its own reader before it is written."""
    bad = host_preset("tpuplan").model_copy(update={"stage_us": 1e12})
    out = tmp_path / "h.json"
    with pytest.raises(TpuplanError, match=r"stage_us.*not written") as info:
        emit(bad, output=out, force=False, as_json=False, table="")
    assert str(info.value).startswith(str(out)) and not out.exists()


def test_r24_calibrate_verify_writes_neither_file_when_the_host_is_out_of_bounds(
    cpu: dict[str, Path], tmp_path: Path
) -> None:
    """R24: a report's empty_stage_us of 10^12 (within the report's bound) made a host of stage_us 10^12."""
    doc = json.loads(cpu["report"].read_text())
    doc["runner_host"]["empty_stage_us"] = 1e12
    edited = tmp_path / "rep.json"
    edited.write_text(json.dumps(doc))
    dev, host = tmp_path / "d.json", tmp_path / "h.json"
    res = plan("calibrate", "--verify", f"{cpu['plan']}:{edited}", "-m", cpu["model"], "-o", dev, "--host-out", host)
    one_line_error(res, "not written")
    assert not dev.exists() and not host.exists()


def test_r09_a_report_with_a_stage_removed_or_added_is_refused(cpu: dict[str, Path], tmp_path: Path) -> None:
    """R09: `calibrate --verify` with a report edited to one stage more or less: a zip() traceback."""
    doc = json.loads(cpu["report"].read_text())
    for stages in (doc["stages"][:1], [*doc["stages"], {**doc["stages"][-1], "index": len(doc["stages"])}]):
        if len(stages) > len(doc["stages"]):
            last = stages[-2]
            stages[-1] = {
                **last,
                "index": len(stages) - 1,
                "first_op": last["last_op"] + 1,
                "last_op": last["last_op"] + 1,
            }
        edited = tmp_path / "rep.json"
        edited.write_text(json.dumps({**doc, "stages": stages, "worst_stage": 0}))
        res = plan(
            "calibrate", "--verify", f"{cpu['plan']}:{edited}", "-m", cpu["model"], "-o", tmp_path / "d.json", "--force"
        )
        one_line_error(res, "the report's stages are not the plan's")


def test_dash_o_is_standard_output(inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Conventions: `-o -` wrote a file named `-`; now the document goes to stdout and nothing else does."""
    monkeypatch.chdir(tmp_path)
    res = plan("solve", inputs.profile, "--tpus", "2", "-o", "-")
    assert res.returncode == 0 and json.loads(res.stdout)["kind"] == "tpuplan.plan", res.stderr
    assert not (tmp_path / "-").exists()
    shown = plan("show", inputs.plan, "-o", "-")  # `plan show` has -o too
    assert json.loads(shown.stdout)["kind"] == "tpuplan.plan"
    one_line_error(plan("split", inputs.model, inputs.plan, "-o", "-"), "standard output cannot hold it", 2)


def test_show_o_writes_the_plan_checked(inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "again.json"
    res = plan("show", inputs.plan, "-o", out)
    assert res.returncode == 0 and f"wrote {out}" in res.stdout
    assert json.loads(out.read_text()) == json.loads(inputs.plan.read_text())
    one_line_error(plan("show", inputs.plan, "-o", out), "already exists")
    one_line_error(plan("show", inputs.plan, "-o", inputs.plan, "--force"), "is an input")


def test_binary_outputs_to_standard_output(cpu: dict[str, Path], tmp_path: Path) -> None:
    """`plan run -o -` and `plan synth -o -` write the .npz / model bytes to stdout (a pipe here)."""
    exe = [str(PLAN_BIN)] if PLAN_BIN.is_file() else [sys.executable, "-m", "tpuplan"]
    run = subprocess.run([*exe, "run", str(cpu["segs"]), "-n", "3", "-o", "-"], capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    (tmp_path / "x.npz").write_bytes(run.stdout)
    assert next(iter(np.load(tmp_path / "x.npz").values())).shape[0] == 3
    synth = subprocess.run([*exe, "synth", "fc", "--width", "8", "-o", "-"], capture_output=True, timeout=120)
    assert synth.returncode == 0 and synth.stdout[4:8] == b"TFL3", synth.stderr
