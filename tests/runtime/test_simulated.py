"""The simulated Edge TPU (`--backend edgetpu-sim`): its times are the hidden true model's on a virtual
clock, a segment priced alone is priced as the planner prices that stage of the whole model (so the true
optimum is the planner's solve on the true specs), and everything it reports says SIMULATED."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import one_line_error, plan
from tpuplan.planner.plan import Plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import resolve_host
from tpuplan.profiles.pricing.scenarios import perturbed
from tpuplan.profiles.pricing.stagecost import StagePricer
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite.reader import LoadedModel, parse_model
from tpuplan.runtime.backends.kinds import get_backend
from tpuplan.runtime.backends.simulated import TRUE_FACTORS, Simulator, default_simulator
from tpuplan.runtime.split.cut import split_model
from tpuplan.runtime.verify.check import VerifyReport, verify

DEVICE, HOST = preset("edgetpu-usb"), resolve_host(None)


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return parse_model(synth_conv(64, size=48), Path("conv64.tflite"))


@pytest.fixture(scope="module")
def two_stage(model: LoadedModel) -> Plan:
    return evaluate(build_profile(model, DEVICE, HOST), None, [2], HOST)


@pytest.fixture(scope="module")
def report(two_stage: Plan, model: LoadedModel) -> VerifyReport:
    return verify(two_stage, model, backend="edgetpu-sim", inputs=2, repeats=2)


def _in_model(loaded: LoadedModel, sim: Simulator, a: int, b: int) -> float:
    pricer = StagePricer(build_profile(loaded, sim.device, sim.host), sim.device, sim.host)
    return float(formula.invoke_part({t: v[b - a] for t, v in pricer.row(a)["terms"].items()}))


@pytest.mark.parametrize("cuts", [[0], [2], [1, 3], [0, 2, 4]])
def test_a_segment_alone_is_priced_as_that_stage_of_the_whole_model(model: LoadedModel, cuts: list[int]) -> None:
    sim = default_simulator()
    for seg in split_model(model, cuts):
        assert sim.stage(seg.data).invoke_us == pytest.approx(_in_model(model, sim, seg.first_op, seg.last_op))


def test_the_truth_is_the_presets_off_by_known_factors() -> None:
    sim = default_simulator()
    assert sim.device.link.in_us_per_kib == pytest.approx(TRUE_FACTORS["link"] * DEVICE.link.in_us_per_kib)
    assert sim.device.cost("conv").stream_us_per_kib == pytest.approx(
        TRUE_FACTORS["spill"] * DEVICE.cost("conv").stream_us_per_kib
    )
    assert sim.device.invoke_overhead_us == pytest.approx(TRUE_FACTORS["overhead"] * DEVICE.invoke_overhead_us)
    with pytest.raises(ValueError, match="no term 'nope'"):
        perturbed(DEVICE, HOST, {"nope": 2.0})


def test_perturbed_scales_each_term_by_its_factor(model: LoadedModel) -> None:
    dev, host = perturbed(DEVICE, HOST, {"link": 3.0, "compute": 0.5})
    base = StagePricer(build_profile(model, DEVICE, HOST), DEVICE, HOST).row(0)["q"]
    q = {k: v[3] for k, v in base.items()}
    for term, factor in (("link", 3.0), ("overhead", 1.0)):
        spec = next(t for t in formula.TIME_TERMS if t.name == term)
        before = formula.term_value(spec, formula.spec_coefficients(DEVICE, HOST), q)
        after = formula.term_value(spec, formula.spec_coefficients(dev, host), q)
        assert after == pytest.approx(factor * before)
    assert dev.cost("conv").us_per_mmac == pytest.approx(0.5 * DEVICE.cost("conv").us_per_mmac)


def test_stage_times_are_the_truth_on_the_virtual_clock(report: VerifyReport, model: LoadedModel) -> None:
    """Whatever this machine's load: each stage 'measured' exactly its true invoke."""
    sim = default_simulator()
    for c in report.stages:
        assert c.measured_us == pytest.approx(_in_model(model, sim, c.first_op, c.last_op), abs=0.1)
        assert c.measured_in_pipeline_us == c.measured_us
    assert report.comparable
    assert report.outputs_match is True  # the CPU segments really ran


def test_every_report_says_simulated(report: VerifyReport, two_stage: Plan, tmp_path: Path) -> None:
    assert report.simulated and report.backend == "edgetpu-sim"
    assert report.notes[0].startswith("SIMULATED")
    assert report.runner_host.runner == "simulated" and "SIMULATED" in report.runner_host.machine
    assert all(d.startswith("simulated-tpu") for d in report.devices)
    from tpuplan.cli.verify import _figure, verify_table

    text = verify_table(report)
    assert text.startswith("SIMULATED") and "SIMULATED ms (edgetpu-sim)" in text
    seen: dict[str, Any] = {}

    def fake(plan_doc: Plan, measured: list[float], **kwargs: Any) -> bytes:
        seen.update(kwargs)
        return b""

    import tpuplan.runtime.verify.plots as plots

    real = plots.plan_figure
    plots.plan_figure = fake  # type: ignore[assignment]
    try:
        _figure(two_stage, report)
    finally:
        plots.plan_figure = real  # type: ignore[assignment]
    assert seen["simulated"] is True and seen["measured_label"].startswith("SIMULATED")


def test_the_picture_says_simulated(report: VerifyReport, two_stage: Plan) -> None:
    pytest.importorskip("matplotlib")
    from tpuplan.runtime.verify import plots

    png = plots.plan_figure(two_stage, [c.measured_us for c in report.stages], simulated=True)
    assert png.startswith(b"\x89PNG")


def test_the_command_line_says_simulated_and_plan_run_refuses_it(two_stage: Plan, tmp_path: Path) -> None:
    data = synth_conv(64, size=48)
    (tmp_path / "conv64.tflite").write_bytes(data)
    write_doc(tmp_path / "p.json", two_stage)
    res = plan("verify", tmp_path / "p.json", "-m", tmp_path / "conv64.tflite", "-b", "edgetpu-sim", "-n", "2", "-q")
    assert res.returncode in (0, 3), res.stderr
    assert res.stdout.startswith("SIMULATED") and "SIMULATED (a virtual clock, no hardware)" in res.stdout
    split = plan("split", tmp_path / "conv64.tflite", tmp_path / "p.json", "-o", tmp_path / "segs")
    assert split.returncode == 0, split.stderr
    one_line_error(plan("run", tmp_path / "segs", "-b", "edgetpu-sim"), "simulates stage times")


def test_a_simulator_with_noise_is_seeded() -> None:
    data = synth_fc(64, depth=2)
    dev, host = perturbed(DEVICE, HOST, {"link": 3.0})
    a, b = Simulator(dev, host, noise=0.05, seed=1), Simulator(dev, host, noise=0.05, seed=1)
    ta, tb = a.ticker(data), b.ticker(data)
    for _ in range(5):
        ta()
        tb()
    assert a.clock.now_ns() == b.clock.now_ns() != round(5 * a.stage(data).invoke_us * 1000)
    assert get_backend("edgetpu-sim").simulated and not get_backend("cpu").simulated


def test_plan_show_draws_a_simulated_report_as_simulated(
    report: VerifyReport, two_stage: Plan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tpuplan.runtime.verify.plots as plots

    seen: dict[str, Any] = {}

    def fake(plan_doc: Plan, measured: list[float] | None = None, **kwargs: Any) -> bytes:
        seen.update(kwargs, measured=measured)
        return b"png"

    monkeypatch.setattr(plots, "plan_figure", fake)
    write_doc(tmp_path / "p.json", two_stage)
    write_doc(tmp_path / "r.json", report)
    res = plan("show", tmp_path / "p.json", "--png", tmp_path / "p.png", "--report", tmp_path / "r.json")
    assert res.returncode == 0, res.stderr
    assert seen["simulated"] is True and seen["measured_label"].startswith("SIMULATED")
    assert seen["measured"] == [c.measured_us for c in report.stages]
