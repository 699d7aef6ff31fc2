"""State carried between inferences is found in the model (variable tensors, resource variables, input /
output pairs by name), can be declared (--state IN=OUT) or ignored (--no-state), and is priced by the
formula: a stage holding an op of a state loop has its time as its `loop` value, and ops that share a
variable are never cut apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import MODELS
from tests.model_builders import resource_variable_model, state_pair_model
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile, TensorInfo
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import host_preset
from tpuplan.profiles.pricing.stagecost import StagePricer
from tpuplan.profiles.state import loops_of, pairs, summary, with_state
from tpuplan.profiles.tflite.reader import load_model, parse_model

LSTM = MODELS / "keras_lstm_mnist_ptq.tflite"
TRAFFIC = MODELS / "automl_video_ondevice" / "traffic_model.tflite"


def profile_of(data: bytes, name: str) -> Profile:
    return build_profile(parse_model(data, Path(name)), preset("edgetpu-usb"))


def _info(name: str, shape: list[int], dtype: str = "int8") -> TensorInfo:
    return TensorInfo(index=0, name=name, shape=shape, dtype=dtype, bytes=int(np.prod(shape)))


def test_pairs_by_name() -> None:
    ins = [_info("raw_inputs/init_lstm_c", [1, 8]), _info("image", [1, 8]), _info("prev_h", [1, 4])]
    outs = [_info("raw_outputs/lstm_c", [1, 8]), _info("h", [1, 4], "uint8"), _info("logits", [1, 8])]
    assert pairs(ins, outs) == [("raw_inputs/init_lstm_c", "raw_outputs/lstm_c")]  # prev_h: another type
    assert pairs([_info("in/state", [2])], [_info("out/state", [2])]) == [("in/state", "out/state")]
    assert pairs([_info("x", [2])], [_info("x_1", [2])]) == []  # no mark, no shared last part: not state


def test_state_pair_model_loop_runs_to_the_last_op() -> None:
    prof = profile_of(state_pair_model(), "pair.tflite")
    (loop,) = prof.state or []
    assert (loop.kind, loop.names, loop.first_op, loop.last_op) == ("pair", ["init_state", "state"], 1, 14)
    assert not loop.together
    assert "stateful: state pair state -> init_state" in summary(loops_of(prof))


def test_resource_variable_ops_stay_together() -> None:
    prof = profile_of(resource_variable_model(), "resource.tflite")
    (loop,) = prof.state or []
    assert (loop.kind, loop.names, loop.first_op, loop.last_op, loop.together) == ("resource", ["acc"], 4, 7, True)
    pricer = StagePricer(prof, preset("edgetpu-usb"), host_preset("tpuplan"))
    for a in range(len(prof.ops)):
        row = pricer.row(a)
        for j, b in enumerate(range(a, len(prof.ops))):
            cuts_inside = 4 < a <= 7 or 4 <= b < 7
            assert not (row["valid"][j] and cuts_inside), (a, b)
            held = a <= 7 and b >= 4
            assert row["values"]["loop"][j] == (row["values"]["time"][j] if held else 0)


def test_variable_tensors_of_a_real_model() -> None:
    if not LSTM.is_file():
        pytest.skip(f"{LSTM} not found")
    prof = build_profile(load_model(LSTM), preset("edgetpu-usb"))
    assert {(lp.kind, lp.first_op, lp.last_op) for lp in prof.state or []} == {("variable", 1, 1)}


def test_traffic_model_pairs() -> None:
    if not TRAFFIC.is_file():
        pytest.skip(f"{TRAFFIC} not found")
    prof = build_profile(load_model(TRAFFIC), preset("edgetpu-usb"))
    names = sorted(tuple(lp.names) for lp in prof.state or [])
    assert names == [
        ("raw_inputs/init_lstm_c", "raw_outputs/lstm_c"),
        ("raw_inputs/init_lstm_h", "raw_outputs/lstm_h"),
    ]


def test_declared_and_dropped_state() -> None:
    prof = profile_of(state_pair_model(), "pair.tflite")
    assert with_state(prof, none=True).state == []
    again = with_state(prof, ["init_state=state"], none=True)
    assert [lp.declared for lp in again.state or []] == [True]
    with pytest.raises(TpuplanError, match="give IN=OUT"):
        with_state(prof, ["x=state2"])
    with pytest.raises(TpuplanError, match="a state input must take what its output gives"):
        with_state(prof, ["x=head5/out"])  # x is [1, 32], the head [1, 10]
    assert with_state(prof.model_copy(update={"state": None})).state == prof.state  # found again by name
