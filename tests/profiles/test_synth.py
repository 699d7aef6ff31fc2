"""Synthetic models of the measured families: they run in LiteRT, parse, profile, and count right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tpuplan.profiles.build import build_profile
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.synth import conv_param_bytes, fc_param_bytes, synth_conv, synth_fc
from tpuplan.profiles.tflite.reader import buffer_size, op_code_name, parse_model


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=data)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.float32 and out["dtype"] in (np.float32, np.int8)
    interp.set_tensor(inp["index"], x.astype(np.float32))
    interp.invoke()
    result: np.ndarray = interp.get_tensor(out["index"])
    if out["dtype"] == np.int8:  # the conv family's int8 output, dequantised for comparison
        scale, zero = out["quantization"]
        return (result.astype(np.float64) - zero) * scale
    return result


def _dequantized_weights(data: bytes) -> list[np.ndarray]:
    """Float weights of every FC/conv layer, read back from the file (int8 values times scales)."""
    model = parse_model(data, Path("m.tflite")).model
    sg = model.subgraphs[0]
    out = []
    for op in sg.operators:
        if len(op.inputs) == 3:
            t = sg.tensors[op.inputs[1]]
            q = np.asarray(model.buffers[t.buffer].data).view(np.int8).reshape(t.shape).astype(np.float64)
            scale = np.asarray(t.quantization.scale).reshape([-1] + [1] * (q.ndim - 1))
            out.append(q * scale)
    return out


def test_fc_runs_and_matches_float_reference() -> None:
    data = synth_fc(200, seed=3)
    x = np.random.default_rng(1).uniform(-1, 1, size=(1, 64))
    y = _run(data, x)
    assert y.shape == (1, 10)
    h = x.astype(np.float64)
    weights = _dequantized_weights(data)
    for i, w in enumerate(weights):
        h = h @ w.T
        h = np.tanh(h) if i < len(weights) - 1 else h
    # int8 rounding only: the outputs follow the float network, they are not saturated garbage
    assert np.corrcoef(y.ravel(), h.ravel())[0, 1] > 0.98
    assert np.abs(y - h).max() < 0.2 * np.abs(h).max() + 1e-3


def test_conv_runs_and_matches_float_reference() -> None:
    data = synth_conv(8, layers=2, size=12, seed=5)
    x = np.random.default_rng(2).uniform(-1, 1, size=(1, 12, 12, 3))
    y = _run(data, x)
    assert y.shape == (1, 12, 12, 8)
    h = x[0].astype(np.float64)
    for w in _dequantized_weights(data):  # SAME 3x3 conv, stride 1, then relu
        p = np.pad(h, ((1, 1), (1, 1), (0, 0)))
        patches = np.stack([p[i : i + 12, j : j + 12] for i in range(3) for j in range(3)], axis=2)
        h = np.maximum(np.einsum("hwkc,fkc->hwf", patches, w.reshape(w.shape[0], 9, -1)), 0)
    assert (y >= 0).all() and 0.1 < (y > 0).mean() < 0.9
    assert np.corrcoef(y.ravel(), h.ravel())[0, 1] > 0.98


def test_structure_matches_the_converter_layout() -> None:
    model = parse_model(synth_fc(100), Path("m.tflite")).model
    sg = model.subgraphs[0]
    names = [op_code_name(model, int(op.opcodeIndex)) for op in sg.operators]
    assert names == ["QUANTIZE"] + ["FULLY_CONNECTED", "TANH"] * 4 + ["FULLY_CONNECTED", "DEQUANTIZE"]
    assert model.version == 3 and model.description
    assert buffer_size(model, 0) == 0
    const = [int(t.buffer) for t in sg.tensors if buffer_size(model, int(t.buffer)) > 0]
    assert len(const) == len(set(const)) == 10  # every constant tensor has its own buffer
    for code in model.operatorCodes:
        assert code.deprecatedBuiltinCode == min(code.builtinCode, 127)
    tanh_out = [sg.tensors[op.outputs[0]] for op in sg.operators if op_code_name(model, int(op.opcodeIndex)) == "TANH"]
    for t in tanh_out:
        assert list(t.quantization.scale) == [pytest.approx(1 / 128)] and list(t.quantization.zeroPoint) == [0]
    conv = parse_model(synth_conv(16, layers=1, size=8), Path("c.tflite")).model
    assert [op_code_name(conv, int(op.opcodeIndex)) for op in conv.subgraphs[0].operators] == ["QUANTIZE", "CONV_2D"]
    assert conv.subgraphs[0].tensors[conv.subgraphs[0].outputs[0]].type == 9  # int8 output, as the study converted
    with_float = parse_model(synth_conv(16, layers=1, size=8, float_output=True), Path("f.tflite")).model
    assert op_code_name(with_float, int(with_float.subgraphs[0].operators[-1].opcodeIndex)) == "DEQUANTIZE"
    w = conv.subgraphs[0].tensors[conv.subgraphs[0].operators[1].inputs[1]]
    assert list(w.shape) == [16, 3, 3, 3] and len(w.quantization.scale) == 16 and w.quantization.quantizedDimension == 0


@pytest.mark.parametrize("n", [100, 150, 1650])
def test_fc_param_bytes_formula_and_macs(n: int) -> None:
    prof = build_profile(parse_model(synth_fc(n, weights="zeros"), Path("m.tflite")), preset("edgetpu-usb"))
    # int8 weights + int32 biases of in->N, 3x N->N, N->10
    assert prof.param_bytes == fc_param_bytes(n) == (64 * n + 3 * n * n + 10 * n) + 4 * (4 * n + 10)
    assert sum(op.macs for op in prof.ops if op.op_class == "fc") == n * (64 + 10 + 3 * n)


@pytest.mark.parametrize("f", [32, 452])
def test_conv_param_bytes_and_macs(f: int) -> None:
    prof = build_profile(parse_model(synth_conv(f, weights="zeros"), Path("m.tflite")), preset("edgetpu-usb"))
    assert prof.param_bytes == conv_param_bytes(f) == 9 * f * (3 + 4 * f) + 4 * 5 * f
    # the CSV's "# MACs": 64 x 64 outputs, 3x3 kernels, 3 -> F then 4 x F -> F
    assert sum(op.macs for op in prof.ops if op.op_class == "conv") == 64 * 64 * 9 * f * (3 + 4 * f)


def test_zeros_and_random_have_the_same_shapes_and_seed_is_deterministic() -> None:
    assert len(synth_fc(301, weights="zeros")) == len(synth_fc(301))
    assert synth_conv(20, seed=7) == synth_conv(20, seed=7) != synth_conv(20, seed=8)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: synth_fc(0), "width"),
        (lambda: synth_conv(16, layers=0), "layers"),
        (lambda: synth_fc(100_000, depth=300), "2 GiB"),
        (lambda: synth_conv(40_000, layers=4), "2 GiB"),
        (lambda: synth_fc(10, weights="ones"), "weights"),  # type: ignore[arg-type]
    ],
)
def test_nonsense_sizes_are_clear_errors(call: object, match: str) -> None:
    with pytest.raises(TpuplanError, match=match):
        call()  # type: ignore[operator]


def test_cli_synth_writes_models(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from tpuplan.cli.synth import register

    app = typer.Typer()
    register(app)
    out = tmp_path / "fc.tflite"
    res = CliRunner().invoke(app, ["synth", "fc", "--width", "50", "--seed", "2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes() == synth_fc(50, seed=2)
    res = CliRunner().invoke(app, ["synth", "conv", "--filters", "8", "--size", "16", "-o", str(tmp_path / "c.tflite")])
    assert res.exit_code == 0 and (tmp_path / "c.tflite").read_bytes() == synth_conv(8, size=16)


def test_cli_synth_nonsense_is_one_line_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "tpuplan", "synth", "fc", "--width", "0", "-o", str(tmp_path / "x.tflite")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 1
    assert res.stderr.strip().startswith("plan: error: synth: width must be")
    assert not (tmp_path / "x.tflite").exists()
