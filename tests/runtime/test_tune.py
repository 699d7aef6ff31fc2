"""`plan tune` on the simulated Edge TPU: the loop of split, verify, re-plan stops when the plan stops
changing, says how many hardware runs it took, and ends near the true optimum (the planner's solve on the
simulated device's hidden specs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import one_line_error, plan, solver
from tpuplan.planner.plan import load_plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import resolve_host
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite.reader import parse_model
from tpuplan.runtime.backends.simulated import default_simulator
from tpuplan.runtime.tune import VerifyOptions, same_plan, tune

solver()  # refitting and planning again are the planner's side: skipped on a device-side install
DEVICE, HOST = preset("edgetpu-usb"), resolve_host(None)


def test_the_loop_converges_near_the_true_optimum_when_the_first_plan_is_off() -> None:
    """Streaming 3x slower than the preset says: the first plan keeps the 27 MB of weights on one TPU
    streaming; the loop moves to a split that holds them on chip, within 5% of the optimum in <= 3 runs."""
    solve = solver().solve
    loaded = parse_model(synth_fc(3000), Path("fc3000.tflite"))
    profile = build_profile(loaded, DEVICE, HOST)
    sim = default_simulator()
    best = solve(profile, 3, [sim.device], host=sim.host).predicted_period_us

    def true_period(cuts: list[int]) -> int:
        return evaluate(profile, [sim.device], cuts, sim.host).predicted_period_us

    got = tune(
        profile,
        loaded,
        [DEVICE],
        HOST,
        lambda p, d, h: solve(p, 3, d, host=h),
        backend="edgetpu-sim",
        max_runs=6,
        options=VerifyOptions(inputs=1, repeats=1),
    )
    assert true_period(got.first.cuts) > 1.05 * best  # the presets' plan is off
    assert got.converged and got.runs <= 4
    after = [true_period(r.next_plan.cuts) for r in got.rounds]
    assert min(i + 1 for i, p in enumerate(after) if p <= 1.05 * best) <= 3
    assert true_period(got.plan.cuts) <= 1.05 * best
    assert all(r.report.simulated for r in got.rounds)
    assert all(s.measured_invoke_us is not None for s in got.plan.stages)  # it was verified: every stage kept
    assert same_plan(got.plan, got.rounds[-1].plan) or any(same_plan(got.plan, r.plan) for r in got.rounds)


def test_plan_tune_prints_each_run_and_saves_them(tmp_path: Path) -> None:
    solver()
    (tmp_path / "m.tflite").write_bytes(synth_conv(96, size=32))
    res = plan(
        "tune", tmp_path / "m.tflite", "--tpus", "2", "-b", "edgetpu-sim", "-n", "1", "--repeats", "1",
        "--save", tmp_path / "runs", "-o", tmp_path / "tuned.json", "-q",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("SIMULATED") and "SIMULATED slowest stage ms" in res.stdout
    assert "converged after" in res.stdout and "hardware run(s)" in res.stdout
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    n = len(runs) // 2
    assert runs == sorted([f"plan-{i}.json" for i in range(1, n + 1)] + [f"report-{i}.json" for i in range(1, n + 1)])
    final = load_plan(tmp_path / "tuned.json")
    assert final.model.path == "m.tflite"
    again = plan(
        "tune", tmp_path / "m.tflite", "--tpus", "2", "-b", "edgetpu-sim", "-n", "1", "--repeats", "1", "--json", "-q"
    )
    doc = json.loads(again.stdout)
    assert doc["kind"] == "tpuplan.tune" and doc["simulated"] is True and doc["runs"] == n and doc["converged"]


def test_plan_tune_needs_the_model_beside_a_profile(tmp_path: Path) -> None:
    loaded = parse_model(synth_conv(32, size=16), Path("m.tflite"))
    write_doc(tmp_path / "prof.json", build_profile(loaded, DEVICE, HOST))
    one_line_error(plan("tune", tmp_path / "prof.json", "--tpus", "2", "-b", "edgetpu-sim"), "give the model")


@pytest.mark.parametrize("runs", [0, 101])
def test_max_runs_is_bounded(runs: int) -> None:
    loaded = parse_model(synth_conv(32, size=16), Path("m.tflite"))
    profile = build_profile(loaded, DEVICE, HOST)
    with pytest.raises(Exception, match="max-runs"):
        tune(profile, loaded, [DEVICE], HOST, lambda p, d, h: evaluate(p, d, [], h), max_runs=runs)
