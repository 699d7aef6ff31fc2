"""Models that would crash the native interpreter are refused before this process's interpreter sees them.

Two layers: structural rules (profiles.tflite.safety), each found by a fuzzed file that segfaulted LiteRT, and
the probe (runtime.backends.probe), which runs a model once in a child process for what no rule foresees.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flatbuffers
import pytest
from ai_edge_litert import schema_py_generated as schema

import tpuplan.runtime.backends.probe as probe
from tests.shared_data import MODELS, needs
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.tflite.reader import load_model, op_code_name, parse_model
from tpuplan.runtime.backends.registry import InterpreterStage, make_interpreter

LSTM = MODELS / "keras_lstm_mnist_ptq.tflite"
SPLIT_CONCAT = MODELS / "tools" / "split_concat.tflite"

pytestmark = needs(LSTM, SPLIT_CONCAT)


def _pack(model: Any) -> bytes:
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _mutated(path: Path, change: Callable[[Any], None]) -> bytes:
    model = load_model(path).model
    change(model)
    return _pack(model)


def _op(model: Any, name: str) -> Any:
    sg = model.subgraphs[0]
    return next(op for op in sg.operators if op_code_name(model, int(op.opcodeIndex)) == name)


def _constant(model: Any) -> Any:
    """The first tensor with constant data."""
    return next(t for t in model.subgraphs[0].tensors if model.buffers[t.buffer].data is not None)


def _short_data(m: Any) -> None:
    buf = m.buffers[_constant(m).buffer]
    buf.data = buf.data[:-4]


def _no_data(m: Any) -> None:
    _constant(m).buffer = 0


def _absent_input(m: Any) -> None:
    _op(m, "SPLIT").inputs[1] = -1


def _other_options(m: Any) -> None:
    op = _op(m, "SPLIT")
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()


def _fewer_outputs(m: Any) -> None:
    op = _op(m, "SPLIT")
    op.outputs = op.outputs[:1]


def _denormal_scale(m: Any) -> None:
    t = next(t for t in m.subgraphs[0].tensors if t.quantization is not None and t.quantization.scale is not None)
    t.quantization.scale[0] = 1.9e-41


def _wide_zero_point(m: Any) -> None:
    t = next(
        t
        for t in m.subgraphs[0].tensors
        if t.type == schema.TensorType.INT8 and t.quantization is not None and t.quantization.zeroPoint is not None
    )
    t.quantization.zeroPoint[0] = -16512


@pytest.mark.parametrize(
    ("path", "change", "message"),
    [
        (LSTM, _short_data, "bytes of data but its shape"),
        (LSTM, _no_data, "which no operator writes, is not a model input and holds no data"),
        (SPLIT_CONCAT, _absent_input, "(SPLIT) has input 1 marked absent"),
        (SPLIT_CONCAT, _other_options, "(SPLIT) carries AddOptions instead of SplitOptions"),
        (SPLIT_CONCAT, _fewer_outputs, "(SPLIT) has 1 outputs but its options say"),
        (LSTM, _denormal_scale, "unusable quantisation scale"),
        (LSTM, _wide_zero_point, "zero point outside its type's range"),
    ],
)
def test_structural_rules(path: Path, change: Callable[[Any], None], message: str) -> None:
    parse_model(_pack(load_model(path).model), Path("same.tflite"))  # the repacked original passes
    with pytest.raises(TpuplanError, match=r"^bad\.tflite: ") as info:
        parse_model(_mutated(path, change), Path("bad.tflite"))
    assert message in str(info.value)


def _crasher() -> bytes:
    """The LSTM with its output tensor emptied: every structural rule passes, the interpreter segfaults
    (found by the fuzzer as a one-byte change to the file)."""

    def empty_output(m: Any) -> None:
        m.subgraphs[0].tensors[_op(m, "UNIDIRECTIONAL_SEQUENCE_LSTM").outputs[0]] = schema.TensorT()

    return _mutated(LSTM, empty_output)


def test_probe_refuses_what_crashes_the_interpreter(tmp_path: Path) -> None:
    data = _crasher()
    parse_model(data, Path("crasher.tflite"))  # passes the structural rules: only the probe stops it
    with pytest.raises(TpuplanError, match=r"crasher: the TFLite interpreter crashed on this model \(killed by SIG"):
        probe.probe_models([("fine", LSTM.read_bytes()), ("crasher", data)])
    path = tmp_path / "crasher.tflite"
    path.write_bytes(data)
    for make in (lambda: InterpreterStage("s", path.read_bytes(), where=str(path)), lambda: make_interpreter(path)):
        with pytest.raises(TpuplanError, match=r"crasher\.tflite: the TFLite interpreter crashed") as info:
            make()
        assert "\n" not in str(info.value)


def test_probe_runs_each_model_once(monkeypatch: pytest.MonkeyPatch) -> None:
    data = LSTM.read_bytes()
    probe.require_probed("lstm", data)

    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("probed twice")

    monkeypatch.setattr(probe.subprocess, "run", no_child)
    probe.require_probed("lstm again", data)
    InterpreterStage("s", data).close()


def test_probe_timeout_names_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(argv: list[str], **kwargs: Any) -> None:
        raise subprocess.TimeoutExpired(argv, 1.0, output=b"start 0\nok 0\nstart 1\n")

    monkeypatch.setattr(probe.subprocess, "run", hang)
    with pytest.raises(TpuplanError, match=r"^second: the TFLite interpreter did not finish within"):
        probe.probe_models([("first", b"TFL3 one"), ("second", b"TFL3 two")])
