"""Fitting a device to `plan verify` reports: real verify runs on this CPU, the fit must predict the
stages it was fitted to better than the spec it started from, and bad pairs are refused by name."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest

from tests.cli_helpers import plan, solver
from tpuplan.planner.plan import Plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import load_device, preset
from tpuplan.profiles.pricing.host import load_host, resolve_host
from tpuplan.profiles.tflite.reader import load_model
from tpuplan.runtime.verify.check import VerifyReport, verify
from tpuplan.runtime.verify.refit import fit_from_verify

solve = solver().solve  # skips the module where the solver cannot run (a device-side install)

SMALL = "mobilenet_v1_0.25_128_quant.tflite"


@pytest.fixture(scope="module")
def pairs(shared_models: Path) -> list[tuple[Plan, VerifyReport]]:
    """Two plans priced with the uncalibrated `cpu` preset, each verified on this machine's CPU."""
    model = load_model(shared_models / SMALL)
    profile = build_profile(model, preset("cpu"), resolve_host("tpuplan"))
    out = []
    for k in (2, 3):
        plan = solve(profile, k)
        out.append((plan, verify(plan, model, inputs=6, repeats=7)))
    return out


def test_fit_predicts_the_measured_stages_better(pairs: list[tuple[Plan, VerifyReport]]) -> None:
    fit = fit_from_verify(pairs)
    stages = sum(len(r.stages) for _, r in pairs)
    assert len(fit.points) == stages
    assert [p.measured_us for p in fit.points] == [c.measured_us for _, r in pairs for c in r.stages]
    assert [p.before_us for p in fit.points] == [c.predicted_us for _, r in pairs for c in r.stages]
    assert fit.median_error_after <= fit.median_error_before
    assert fit.device.calibration is not None and "verify reports" in fit.device.calibration.source
    assert all(c.calibrated for c in fit.host.host_ops.values())  # a CPU device: its ops are the host's
    runner = [r.runner_host for _, r in pairs]
    assert fit.host.stage_us == pytest.approx(statistics.median(h.empty_stage_us for h in runner), abs=1e-3)


def test_refitted_device_prices_the_plan_as_the_fit_says(
    pairs: list[tuple[Plan, VerifyReport]], shared_models: Path
) -> None:
    """The fitted spec is a real device: a profile priced with it predicts what the fit's table says."""
    fit = fit_from_verify(pairs)
    plan = pairs[0][0]
    profile = build_profile(load_model(shared_models / SMALL), fit.device, fit.host)
    from_fit = [p.after_us for p in fit.points if p.report == 0]
    priced = evaluate(profile, [fit.device], plan.cuts, fit.host)
    got = [s.invoke_us for s in priced.stages]
    # each op's price and each term are rounded up to a whole microsecond: at most one per op and term more
    slack = [s.n_ops + len(s.predicted_terms) for s in priced.stages]
    assert all(-1 <= g - f <= d + 1 for g, f, d in zip(got, from_fit, slack, strict=True)), (got, from_fit)


def test_pairs_that_do_not_belong_together_are_refused(pairs: list[tuple[Plan, VerifyReport]]) -> None:
    (plan_a, rep_a), (_, rep_b) = pairs
    with pytest.raises(TpuplanError, match="verify report 1 is of another plan"):
        fit_from_verify([(plan_a, rep_b)])
    with pytest.raises(TpuplanError, match="at least one plan"):
        fit_from_verify([])
    with pytest.raises(TpuplanError, match="does not predict"):
        fit_from_verify([(plan_a, rep_a.model_copy(update={"comparable": False}))])


def test_calibrate_verify_command_writes_the_fit_and_shows_before_and_after(
    pairs: list[tuple[Plan, VerifyReport]], tmp_path: Path
) -> None:
    """One command: plans and reports in, the fitted device and host out, the stages before and after shown."""
    args = []
    for i, (plan_doc, report) in enumerate(pairs):
        write_doc(tmp_path / f"plan{i}.json", plan_doc)
        write_doc(tmp_path / f"report{i}.json", report)
        args += ["--verify", f"{tmp_path / f'plan{i}.json'}:{tmp_path / f'report{i}.json'}"]
    dev, host = tmp_path / "mine.json", tmp_path / "myhost.json"
    res = plan("calibrate", *args, "-o", dev, "--host-out", host)
    assert res.returncode == 0, res.stderr
    assert "before us" in res.stdout and "after us" in res.stdout and "median stage error" in res.stdout
    fit = fit_from_verify(pairs)
    assert load_device(dev) == fit.device and load_host(host) == fit.host
    again = plan("calibrate", *args, "-o", dev)  # exists: refused without --force, the file unchanged
    assert again.returncode == 1 and "already exists" in again.stderr and load_device(dev) == fit.device


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--verify", "justone.json"], "PLAN.json:REPORT.json"),
        (["--verify", "a.json:b.json", "x.csv"], "separate run"),
        (["--host-out", "h.json", "x.csv"], "--host-out goes with --verify"),
    ],
)
def test_calibrate_verify_bad_arguments(args: list[str], text: str, tmp_path: Path) -> None:
    """Flags that cannot go together are usage errors: exit 2, one line."""
    res = plan("calibrate", *args, "-o", tmp_path / "out.json")
    assert res.returncode == 2 and text in res.stderr and len(res.stderr.strip().splitlines()) == 1
