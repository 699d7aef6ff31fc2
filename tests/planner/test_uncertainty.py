"""Issue 19: how sure a prediction is. A plan carries its period and latency over the calibration's
scenarios (the fit again without one source each); the plan check refuses a range that does not hold the
plan's own numbers; two plans whose ranges meet are said to be within each other's range."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import make_inputs, plan, solver
from tpuplan.planner.plan import parse_plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.planner.uncertainty import PredictionRange, Span, prediction_range
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import host_preset
from tpuplan.profiles.pricing.scenarios import NOMINAL, scenario_names, with_scenario
from tpuplan.profiles.synth import synth_conv
from tpuplan.profiles.tflite.reader import parse_model


def _profile(filters: int = 96):  # type: ignore[no-untyped-def]
    model = parse_model(synth_conv(filters), Path(f"conv{filters}.tflite"))
    return build_profile(model, preset("edgetpu-usb"), host_preset("pycoral"))


def test_a_plan_carries_its_range_over_the_scenarios() -> None:
    profile = _profile()
    usb, host = preset("edgetpu-usb"), host_preset("pycoral")
    p = evaluate(profile, [usb], [2], host)
    r = p.predicted_range
    assert r is not None and r.scenarios[0] == NOMINAL and len(r.scenarios) == len(scenario_names(usb, host)) > 2
    assert r.period_us.low <= p.predicted_period_us <= r.period_us.high
    assert r.latency_us.low <= p.predicted_latency_us <= r.latency_us.high
    assert r.period_us.low < r.period_us.high  # the refits differ: the range is not a point
    worst = with_scenario(usb, r.widest), with_scenario(host, r.widest)
    again = evaluate(profile, [worst[0]], [2], worst[1])
    assert again.predicted_period_us == r.period_us.high  # the widest scenario priced on its own


def test_without_scenarios_the_range_is_the_value() -> None:
    profile = _profile()
    plain = preset("edgetpu-usb").model_copy(update={"calibration": None})
    host = host_preset("pycoral").model_copy(update={"calibration": None})
    r = prediction_range(profile, [plain, plain], host, [2], [1, 1])
    p = evaluate(profile, [plain], [2], host)
    assert r.scenarios == [NOMINAL] and r.period_us.low == r.period_us.high == p.predicted_period_us


def test_an_edited_range_is_refused() -> None:
    profile = _profile()
    p = evaluate(profile, [preset("edgetpu-usb")], [2], host_preset("pycoral"))
    doc = json.loads(p.model_dump_json())
    doc["predicted_range"]["period_us"]["high"] = p.predicted_period_us - 1
    with pytest.raises(TpuplanError, match="predicted_range does not hold"):
        parse_plan(json.dumps(doc).encode(), "edited")


def test_ranges_that_meet_overlap() -> None:
    def r(lo: int, hi: int) -> PredictionRange:
        return PredictionRange(period_us=Span(low=lo, high=hi), latency_us=Span(low=lo, high=hi), scenarios=[NOMINAL])

    assert r(10, 20).overlaps(r(20, 30)) and r(15, 16).overlaps(r(10, 20))
    assert not r(10, 19).overlaps(r(20, 30))


def test_solve_prints_the_range_and_compare_marks_close_plans(tmp_path: Path) -> None:
    solver()
    inputs = make_inputs(tmp_path)
    got = plan("solve", inputs.model, "--tpus", "2")
    assert got.returncode == 0 and "calibration scenarios" in got.stdout, got.stderr
    cmp = plan("compare", inputs.model, "--tpus", "2", "--json")
    doc = json.loads(cmp.stdout)
    assert all(
        e["period_range"]["low"] <= e["predicted_period_us"] <= e["period_range"]["high"] for e in doc["entries"]
    )
    close = [e["name"] for e in doc["entries"][1:] if e["within_ours"]]
    assert all(name in " ".join(doc["notes"]) for name in close)


def test_devices_say_where_their_numbers_come_from() -> None:
    got = plan("devices")
    assert got.returncode == 0
    assert "fitted to" in got.stdout and "ASSUMED" in got.stdout and "scenarios" in got.stdout
    usb2 = preset("edgetpu-usb2").calibration
    assert usb2 is not None and "ASSUMED" in usb2.provenance()
