"""The refit from stage times (`calibration.stagefit`, what `plan calibrate --verify` and `plan solve
--measured` fit): known factors are recovered from simulated times, a duplicated time counts once, too few
points are refused, what the times cannot identify keeps its value and is named (R19)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tpuplan.profiles.build import build_profile
from tpuplan.profiles.calibration.stagefit import StageTime, TooFewPoints, fit_stage_times
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.device import DeviceSpec, device_json, preset, resolve_device
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.scenarios import get_coefficient, perturbed
from tpuplan.profiles.pricing.stagecost import StagePricer
from tpuplan.profiles.synth import synth_conv
from tpuplan.profiles.tflite.reader import parse_model

DEVICE, HOST = preset("edgetpu-usb"), resolve_host(None)
CUT_SETS = [(0,), (1,), (2,), (3,), (0, 2), (1, 3), (0, 1, 2)]


@pytest.fixture(scope="module")
def profile() -> Profile:
    """Five convolutions on a 64x64 image with 128 filters: the link, the compute and the overhead all count."""
    return build_profile(parse_model(synth_conv(128, size=64), Path("conv128.tflite")), DEVICE, HOST)


def _times(profile: Profile, truth: tuple[DeviceSpec, HostSpec], cut_sets: list[tuple[int, ...]]) -> list[StageTime]:
    """Every stage of every cut set, timed by the true specs (the planner's invoke part, not rounded)."""
    pricer = StagePricer(profile, *truth)
    n = len(profile.ops)
    out = []
    for cuts in cut_sets:
        for a, b in zip([0, *(c + 1 for c in cuts)], [*cuts, n - 1], strict=True):
            row = pricer.row(a)
            us = float(formula.invoke_part({t: v[b - a] for t, v in row["terms"].items()}))
            out.append(StageTime(profile, a, b, DEVICE.name, HOST.name, us, f"cuts {cuts} stage {a}..{b}"))
    return out


def _fit(times: list[StageTime]):  # type: ignore[no-untyped-def]
    return fit_stage_times(times, {DEVICE.name: DEVICE}, {HOST.name: HOST}, "test")


def test_link_three_times_slower_is_recovered(profile: Profile) -> None:
    truth = perturbed(DEVICE, HOST, {"link": 3.0})
    fit = _fit(_times(profile, truth, CUT_SETS))
    link = fit.devices[DEVICE.name].link
    assert link.in_us_per_kib == pytest.approx(3 * DEVICE.link.in_us_per_kib, rel=0.03)
    assert link.out_us_per_kib == pytest.approx(3 * DEVICE.link.out_us_per_kib, rel=0.03)
    assert "usb.link" in fit.fitted
    assert fit.median_error(fit.after_us) < 0.01 < fit.median_error(fit.before_us)


def test_several_factors_leave_the_stages_predicted_within_noise(profile: Profile) -> None:
    """Link 3x, overhead 1.5x, compute 0.8x at once: the refit predicts every stage within a few %."""
    truth = perturbed(DEVICE, HOST, {"link": 3.0, "overhead": 1.5, "compute": 0.8})
    times = _times(profile, truth, CUT_SETS)
    fit = _fit(times)
    assert fit.median_error(fit.before_us) > 0.2
    assert max(abs(a - p.measured_us) / p.measured_us for a, p in zip(fit.after_us, fit.points)) < 0.03
    assert len(fit.fitted) <= len(fit.points) - 1


def test_a_time_given_twice_counts_once(profile: Profile) -> None:
    """R19: the same report twice is the same evidence: the same points, the same fit, the same specs."""
    times = _times(profile, perturbed(DEVICE, HOST, {"link": 3.0}), [(1,), (0, 2)])
    once, twice = _fit(times), _fit(times + times)
    assert len(twice.points) == len(once.points) == 5
    assert [p.sources for p in twice.points] == [s + s for s in (p.sources for p in once.points)]
    assert twice.devices == once.devices and twice.hosts == once.hosts
    assert [(p.name, p.after, p.status) for p in twice.params] == [(p.name, p.after, p.status) for p in once.params]


def test_fewer_than_two_distinct_points_are_refused(profile: Profile) -> None:
    one = _times(profile, (DEVICE, HOST), [()])
    with pytest.raises(TooFewPoints, match="1 distinct stage time: a refit needs at least one more"):
        _fit(one * 3)


def test_never_more_parameters_than_points_less_one_and_the_rest_kept_by_name(profile: Profile) -> None:
    """R19: four stages for a dozen parameters: at most three move, the others keep their values (none is set
    to 0) and are reported as not identified; the stages are still fitted (not an exact degenerate fit)."""
    truth = perturbed(DEVICE, HOST, {"link": 3.0, "compute": 0.5, "overhead": 2.0})
    fit = _fit(_times(profile, truth, [(0, 1, 2)]))
    assert len(fit.points) == 4
    assert 1 <= len(fit.fitted) <= 3
    held = [p for p in fit.params if p.status != "fitted"]
    assert held and all(p.after == p.before for p in held)
    assert {p.name for p in held if p.status == "not identified"}  # named, not hidden
    for p in fit.params:
        assert p.low <= p.after <= p.high or p.status != "fitted"


def test_a_parameter_no_stage_depends_on_is_no_data(profile: Profile) -> None:
    fit = _fit(_times(profile, (DEVICE, HOST), [(1,), (2,)]))
    status = {p.name: p.status for p in fit.params}
    assert status["chip.fc"] == "no data"  # a conv model has no fully connected layer
    assert status["usb.upload"] == "no data"  # one invoke never uploads


def test_the_refitted_specs_read_back_as_written(profile: Profile, tmp_path: Path) -> None:
    """What the refit hands on is a spec tpuplan's reader accepts, with the refit in its calibration."""
    fit = _fit(_times(profile, perturbed(DEVICE, HOST, {"link": 3.0}), CUT_SETS))
    spec = fit.devices[DEVICE.name]
    path = tmp_path / "dev.json"
    path.write_text(device_json(spec))
    again = resolve_device(str(path))
    assert again == spec
    assert spec.calibration is not None and "refitted to" in spec.calibration.source
    assert get_coefficient(again, "link.in_us_per_kib") > DEVICE.link.in_us_per_kib
