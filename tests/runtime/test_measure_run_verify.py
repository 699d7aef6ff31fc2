"""Measured CPU profiles, `plan run` and `plan verify` on a real small model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import plan as plan_cli
from tests.cli_helpers import solver
from tpuplan.planner.plan import load_plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.tflite.reader import load_model
from tpuplan.runtime.measure import measure_profile
from tpuplan.runtime.run import RunOptions, check_split_matches_plan, run_split
from tpuplan.runtime.split.manifest import load_split
from tpuplan.runtime.split.write import write_split
from tpuplan.runtime.verify.check import invoke_part_us, load_report, verify

solve = solver().solve  # skips the module where the solver cannot run (a device-side install)

SMALL = "mobilenet_v1_0.25_128_quant.tflite"


@pytest.fixture(scope="module")
def measured(shared_models: Path) -> Profile:
    return measure_profile(load_model(shared_models / SMALL), repeats=5)


def test_measured_profile_has_real_times(measured: Profile) -> None:
    assert measured.source == "measured"
    assert measured.device.backend == "cpu"
    assert all(op.measured_us is not None and op.measured_us >= 0 for op in measured.ops)
    assert sum(op.measured_us or 0 for op in measured.ops) > 0
    assert measured.measurement is not None
    assert float(measured.measurement["invoke_overhead_us"]) > 0
    # conv layers cost more than the reshape/softmax tail
    convs = [op.measured_us or 0 for op in measured.ops if op.op_class == "conv"]
    tail = [op.measured_us or 0 for op in measured.ops if op.op_type in ("RESHAPE", "SOFTMAX")]
    assert max(convs) > max(tail)


def test_measure_refuses_edgetpu_backend(shared_models: Path) -> None:
    with pytest.raises(TpuplanError, match="cpu backend only"):
        measure_profile(load_model(shared_models / SMALL), backend="edgetpu")


def test_verify_cpu_outputs_identical_and_report_round_trips(
    measured: Profile, shared_models: Path, tmp_path: Path
) -> None:
    plan = solve(measured, 2)
    plan_path = tmp_path / "plan.json"
    write_doc(plan_path, plan)
    rep = verify(load_plan(plan_path), load_model(shared_models / SMALL), inputs=8, repeats=5)
    assert rep.outputs_match is True
    assert rep.comparable
    assert len(rep.stages) == 2
    assert [s.predicted_us for s in rep.stages] == [float(invoke_part_us(s)) for s in plan.stages]
    assert all(invoke_part_us(s) < s.predicted_us for s in plan.stages)  # the runner's part is not in a lone run
    assert all(s.measured_us > 0 for s in rep.stages)
    assert 1.0 <= rep.effective_cores <= 2.0
    assert rep.predicted_throughput_per_s <= rep.predicted_throughput_ideal_per_s
    out = tmp_path / "report.json"
    write_doc(out, rep)
    assert load_report(out) == rep


def test_verify_flags_a_wrong_prediction_with_exit_3(measured: Profile, shared_models: Path, tmp_path: Path) -> None:
    # a deliberately wrong cost model: every op predicted 20x slower than measured
    inflated = measured.model_copy(
        update={"ops": [op.model_copy(update={"measured_us": (op.measured_us or 0) * 20 + 50}) for op in measured.ops]}
    )
    plan = evaluate(inflated, None, [10])
    plan_path = tmp_path / "plan.json"
    write_doc(plan_path, plan)
    rep = verify(load_plan(plan_path), load_model(shared_models / SMALL), inputs=4, repeats=3)
    assert rep.verdict == "prediction_missed"
    assert any(not s.within_tolerance for s in rep.stages)
    res = plan_cli("verify", plan_path, "--model", shared_models / SMALL, "--inputs", "4", "--json")  # in process
    assert res.returncode == 3, res.stderr
    assert json.loads(res.stdout)["verdict"] == "prediction_missed"


def test_verify_rejects_plan_for_another_model(measured: Profile, shared_models: Path, tmp_path: Path) -> None:
    plan_path = tmp_path / "plan.json"
    write_doc(plan_path, solve(measured, 2))
    other = shared_models / "mobilenet_v1_0.5_160_quant.tflite"
    res = subprocess.run(
        [sys.executable, "-m", "tpuplan", "verify", str(plan_path), "--model", str(other)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "sha256" in res.stderr


def test_verify_edgetpu_without_devices_is_a_clear_error(
    measured: Profile, shared_models: Path, tmp_path: Path
) -> None:
    plan_path = tmp_path / "plan.json"
    write_doc(plan_path, solve(measured, 2))
    with pytest.raises(TpuplanError, match="Edge TPU"):
        verify(load_plan(plan_path), load_model(shared_models / SMALL), backend="edgetpu", inputs=2)


def test_run_split_counts_every_input(shared_models: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg"
    write_split(load_model(shared_models / SMALL), out, cuts=[5, 20])
    res = run_split(load_split(out), options=RunOptions(inputs=30))
    assert len(res.stages) == 3
    assert all(s.items == 30 for s in res.stages)
    assert res.throughput_per_s > 0
    assert res.latency_p50_us <= res.latency_p99_us
    with pytest.raises(TpuplanError, match="edgetpu backend only"):
        run_split(load_split(out), devices=["usb:0"], options=RunOptions(inputs=1))


def test_run_refuses_segments_of_another_plan(measured: Profile, shared_models: Path, tmp_path: Path) -> None:
    plan3, plan2 = tmp_path / "plan3.json", tmp_path / "plan2.json"
    write_doc(plan3, solve(measured, 3))
    write_doc(plan2, solve(measured, 2))
    out = tmp_path / "seg"
    manifest = write_split(load_model(shared_models / SMALL), out, plan=load_plan(plan3))
    check_split_matches_plan(manifest, load_plan(plan3), str(out))
    assert run_split(load_split(out), options=RunOptions(inputs=3)).inputs == 3
    with pytest.raises(TpuplanError, match=rf"split at cuts \[{manifest.cuts[0]}, .* cuts at \[\d+\]"):
        check_split_matches_plan(manifest, load_plan(plan2), str(out))
    other = json.loads(plan3.read_text())
    other["model"]["sha256"] = "ab" * 32
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps(other))
    with pytest.raises(TpuplanError, match=r"segments of model sha256 .* plan is for model sha256 abababababab"):
        check_split_matches_plan(manifest, load_plan(foreign), str(out))
