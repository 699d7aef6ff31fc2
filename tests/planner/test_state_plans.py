"""Plans of stateful models (`profiles.state`): no stage of a state loop is copied, the period is never
below the loop's latency (the stages holding its ops, one input after another), ops that share a variable
stay in one stage, and the plan says the model is stateful; --no-state plans it as stateless."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.common import MODELS
from tests.model_builders import resource_variable_model, state_pair_model
from tpuplan.cli.plantable import plan_table
from tpuplan.planner.plan import Plan, parse_plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.planner.solve import solve, solve_auto, solve_with_copies
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import dump_json
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.state import with_state
from tpuplan.profiles.tflite.reader import load_model, parse_model

TRAFFIC = MODELS / "automl_video_ondevice" / "traffic_model.tflite"
LSTM = MODELS / "keras_lstm_mnist_ptq.tflite"


def profile_of(data: bytes, name: str) -> Profile:
    return build_profile(parse_model(data, Path(name)), preset("edgetpu-usb"))


def check_stateful(plan: Plan) -> None:
    """What every plan of a stateful model must show."""
    assert plan.state
    held = [s for s in plan.stages if s.in_state_loop]
    assert held and all(s.copies == 1 for s in held)
    assert plan.predicted_period_us >= sum(s.predicted_us for s in held)
    assert plan.predicted_bounds["state"] == sum(s.predicted_us for s in held)
    assert "stateful:" in plan_table(plan)
    assert parse_plan(dump_json(plan).encode(), "again") == plan


@pytest.mark.parametrize("tpus", [2, 4, 6])
def test_state_pair_copies_only_outside_the_loop(tpus: int) -> None:
    prof = profile_of(state_pair_model(), "pair.tflite")
    plan = solve_with_copies(prof, tpus)
    check_stateful(plan)
    free = solve_with_copies(with_state(prof, none=True), tpus)
    assert not free.state and free.predicted_period_us <= plan.predicted_period_us


def test_resource_variable_ops_in_one_stage() -> None:
    prof = profile_of(resource_variable_model(), "resource.tflite")
    for k in (2, 3, 5):
        plan = solve(prof, k)
        assert not any(4 <= c < 7 for c in plan.cuts)
        check_stateful(plan)
    copied = solve_with_copies(prof, 5)
    check_stateful(copied)
    auto = solve_auto(prof, None, 4)
    check_stateful(auto)


def test_copies_of_a_stateful_stage_are_refused() -> None:
    prof = profile_of(resource_variable_model(), "resource.tflite")
    with pytest.raises(TpuplanError, match=r"holds state .* but runs on 2 copies"):
        evaluate(prof, None, [3, 7], copies=[1, 2, 1])
    plan = evaluate(with_state(prof, none=True), None, [3, 7], copies=[1, 2, 1])  # stateless: priced
    assert plan.stages[1].copies == 2 and not plan.state


def test_traffic_model_replicated_keeps_the_state_loop() -> None:
    """The issue's case: the LSTM state pairs make every stage from op 0 on part of the loop: no copies,
    and the period is the latency (the next frame waits for this one's state)."""
    if not TRAFFIC.is_file():
        pytest.skip(f"{TRAFFIC} not found")
    prof = build_profile(load_model(TRAFFIC), preset("edgetpu-usb"))
    plan = solve_with_copies(prof, 4)
    check_stateful(plan)
    assert plan.predicted_period_us == plan.predicted_latency_us
    free = solve_with_copies(with_state(prof, none=True), 4)
    assert free.predicted_period_us < plan.predicted_period_us


def test_lstm_state_stays_on_one_copy() -> None:
    """R18: keras_lstm's variable tensors (the LSTM's state) are in op 1: its stage is never copied."""
    if not LSTM.is_file():
        pytest.skip(f"{LSTM} not found")
    prof = build_profile(load_model(LSTM), preset("edgetpu-usb"))
    for tpus in (2, 4):
        check_stateful(solve_with_copies(prof, tpus))


def test_plans_written_before_state_read_it_as_zero() -> None:
    """A schema-3 plan from before the state loop has no `loop` value and no `state` bound: 0 (it knew of
    no state), and it checks out."""
    prof = profile_of(state_pair_model(), "pair.tflite")
    plan = solve(with_state(prof, none=True), 3)
    doc = json.loads(dump_json(plan))
    for stage in doc["stages"]:
        del stage["predicted_values"]["loop"]
        del stage["in_state_loop"]
    del doc["predicted_bounds"]["state"]
    del doc["state"]
    assert parse_plan(json.dumps(doc).encode(), "old") == plan
