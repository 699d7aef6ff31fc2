"""Stages measured on hardware in a plan: a profile's measured stage keeps its invoke time in the stage
tables and in the plan (`measured_invoke_us`), the plan's own check accepts it and refuses it edited, and
the plan still matches its model when split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import solver
from tpuplan.planner.matching import check_plan_matches
from tpuplan.planner.plan import Plan, parse_plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import dump_json
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import MeasuredStage, Profile
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import resolve_host
from tpuplan.profiles.synth import synth_conv
from tpuplan.profiles.tflite.reader import LoadedModel, parse_model

DEVICE, HOST = preset("edgetpu-usb"), resolve_host(None)


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return parse_model(synth_conv(96, size=48), Path("conv96.tflite"))


@pytest.fixture(scope="module")
def profile(model: LoadedModel) -> Profile:
    return build_profile(model, DEVICE, HOST)


def _measured(profile: Profile, a: int, b: int, us: float, device: str = DEVICE.name) -> Profile:
    stage = MeasuredStage(device=device, host=HOST.name, first_op=a, last_op=b, invoke_us=us)
    return profile.model_copy(update={"measured_stages": [stage]})


def test_a_measured_stage_keeps_its_invoke_and_the_rest_is_predicted(profile: Profile) -> None:
    before = evaluate(profile, None, [2], HOST)
    s0, s1 = before.stages
    after = evaluate(_measured(profile, s0.first_op, s0.last_op, 3 * s0.invoke_us + 0.4), None, [2], HOST)
    m0, m1 = after.stages
    assert m0.measured_invoke_us == formula.whole_us(3 * s0.invoke_us + 0.4) and m1.measured_invoke_us is None
    assert m0.invoke_us == m0.measured_invoke_us
    assert m0.predicted_us == m0.measured_invoke_us + s0.part_us("runner")  # the runner stays predicted
    assert m0.predicted_terms == s0.predicted_terms  # the terms stay the prediction
    assert m1 == s1
    assert after.predicted_period_us >= m0.predicted_us
    assert any("MEASURED" in n for n in after.notes)


def test_a_measured_stage_of_another_device_or_host_is_not_used(profile: Profile) -> None:
    plain = evaluate(profile, None, [2], HOST)
    other = evaluate(_measured(profile, 0, 2, 99_999, device="edgetpu-pci"), None, [2], HOST)
    assert other.stages == plain.stages


def test_the_plan_check_accepts_measured_stages_and_refuses_them_edited(profile: Profile) -> None:
    plan = evaluate(_measured(profile, 0, 2, 5000), None, [2], HOST)
    assert parse_plan(dump_json(plan).encode(), "p.json") == plan
    doc = json.loads(dump_json(plan))
    doc["stages"][0]["measured_invoke_us"] += 10
    with pytest.raises(TpuplanError, match="its terms and measured invoke"):
        parse_plan(json.dumps(doc).encode(), "edited.json")
    doc = json.loads(dump_json(plan))
    doc["stages"][0]["measured_invoke_us"] = None  # a measured time dropped, the values left as they were
    with pytest.raises(TpuplanError, match="predicted_values"):
        parse_plan(json.dumps(doc).encode(), "dropped.json")


def test_the_solver_plans_with_the_measured_time(profile: Profile) -> None:
    """A stage measured far slower than predicted is avoided when another plan is better."""
    solve = solver().solve
    plain: Plan = solve(profile, 2, host=HOST)
    assert len(plain.stages) == 2
    s0 = plain.stages[0]
    slow = _measured(profile, s0.first_op, s0.last_op, 50 * plain.predicted_period_us)
    again = solve(slow, 2, host=HOST)
    assert again.cuts != plain.cuts
    assert again.predicted_period_us < 50 * plain.predicted_period_us


def test_a_plan_with_measured_stages_matches_its_model(profile: Profile, model: LoadedModel) -> None:
    plan = evaluate(_measured(profile, 0, 2, 5000), None, [2], HOST)
    check_plan_matches(plan, model)  # the split's check: the measured invoke is the plan's own fact
    doc = json.loads(dump_json(plan))
    doc["stages"][1]["param_bytes"] += 1
    edited = parse_plan(json.dumps(doc).encode(), "x.json")  # consistent in itself, not with the model
    with pytest.raises(TpuplanError, match="param_bytes"):
        check_plan_matches(edited, model)
