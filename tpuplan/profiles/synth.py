"""Synthetic int8 .tflite models of the two families measured in shared/edgetpu-measurements.

They mirror what TFLiteConverter emits for the Keras models of the measurements' README: float32 input ->
QUANTIZE -> int8 layers, then for FC a DEQUANTIZE to a float32 output, while the conv models were
converted with `inference_output_type = tf.int8` and end in the int8 output of the last convolution.
Written with the LiteRT schema's object API, so the calibration profiles exactly the models that were
timed, without TensorFlow. `weights="zeros"`
skips the random numbers: the profile depends only on shapes, and that keeps 131 models fast.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import flatbuffers  # type: ignore[import-untyped]
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tpuplan.compat import pairwise
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.tflite.reader import MAX_MODEL_BYTES

Weights = Literal["random", "zeros"]

_T = schema.TensorType
_OP = schema.BuiltinOperator
# Versions the converter gives these ops for int8 tensors (the interpreter accepts any registered one).
_VERSIONS = {_OP.QUANTIZE: 2, _OP.DEQUANTIZE: 2, _OP.FULLY_CONNECTED: 4, _OP.CONV_2D: 3, _OP.TANH: 2}
_HEADROOM = 1 << 20  # flatbuffer tables and alignment on top of the constant data
_MAX_DIM = 1 << 24  # any single dimension above this is not a model the sweeps describe
MAX_LAYERS = 1 << 14  # layers of one model: far past the 2,048 ops the planner plans, and built in seconds


class _Graph:
    """Tensors, buffers and operators of the one subgraph being written."""

    def __init__(self) -> None:
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [schema.BufferT()]  # buffer 0: the empty buffer
        self.operators: list[Any] = []
        self.codes: dict[int, int] = {}
        self.data_bytes = 0  # constant data so far: the builder starts this big and never regrows

    def tensor(
        self,
        name: str,
        shape: list[int],
        ttype: int,
        scale: Any = None,
        zero_point: Any = None,
        *,
        axis: int = 0,
        data: np.ndarray | None = None,
    ) -> int:
        t = schema.TensorT()
        t.name, t.shape, t.type, t.buffer = name, np.asarray(shape, dtype=np.int32), ttype, 0
        if scale is not None:
            q = schema.QuantizationParametersT()
            # numpy vectors pack in one copy; per-channel lists would pack element by element
            q.scale = np.asarray(scale, dtype=np.float32)
            q.zeroPoint = np.asarray(zero_point if zero_point is not None else [0] * len(scale), dtype=np.int64)
            q.quantizedDimension = axis
            t.quantization = q
        if data is not None:
            buf = schema.BufferT()
            buf.data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
            t.buffer = len(self.buffers)
            self.data_bytes += int(buf.data.size) + 16
            self.buffers.append(buf)
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code: int, inputs: list[int], outputs: list[int], options_type: int = 0, options: Any = None) -> None:
        if code not in self.codes:
            self.codes[code] = len(self.codes)
        o = schema.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = self.codes[code], inputs, outputs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        self.operators.append(o)

    def finish(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        sg = schema.SubGraphT()
        sg.tensors, sg.inputs, sg.outputs, sg.operators = self.tensors, inputs, outputs, self.operators
        sg.name = "main"
        model = schema.ModelT()
        model.version, model.description = 3, description
        model.subgraphs, model.buffers = [sg], self.buffers
        model.operatorCodes = []
        for code in sorted(self.codes, key=self.codes.__getitem__):
            oc = schema.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode = code, min(code, 127)
            oc.version = _VERSIONS.get(code, 1)
            model.operatorCodes.append(oc)
        builder = flatbuffers.Builder(self.data_bytes + _HEADROOM)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= _MAX_DIM:
            raise TpuplanError(f"synth: {name} must be an integer from 1 to {_MAX_DIM}, got {v!r}")


def _layers(count: int, name: str) -> None:
    if count > MAX_LAYERS:
        raise TpuplanError(f"synth: {name} must be at most {MAX_LAYERS:,} layers, got {count:,}")


def _check_bytes(param_bytes: int, what: str) -> None:
    if param_bytes + _HEADROOM > MAX_MODEL_BYTES:
        raise TpuplanError(
            f"synth: this {what} model would hold {param_bytes:,} bytes of parameters; a .tflite file "
            f"cannot exceed 2 GiB ({MAX_MODEL_BYTES:,} bytes)"
        )


def _layer(
    rng: np.random.Generator, shape: tuple[int, ...], kind: Weights, *, per_channel: bool
) -> tuple[np.ndarray, np.ndarray, float]:
    """int8 weights, their scales (per output channel or one) and E[w^2] of the float weights.

    Untrained Keras-like weights ~ U(-1, 1) / sqrt(fan_in); "zeros" makes shape-only models fast.
    """
    fan_in = math.prod(shape[1:])
    nominal = 1.0 / math.sqrt(fan_in)
    n_scales = shape[0] if per_channel else 1
    if kind == "zeros":
        scales = np.full(n_scales, nominal / 127, dtype=np.float32)
        return np.zeros(shape, dtype=np.int8), scales, nominal * nominal / 3
    if kind != "random":
        raise TpuplanError(f"synth: weights must be 'random' or 'zeros', got {kind!r}")
    w = (rng.uniform(-1.0, 1.0, size=shape) * nominal).astype(np.float32)
    flat = np.abs(w).reshape(n_scales, -1)
    scales = (np.maximum(flat.max(axis=1), nominal * 1e-3) / 127).astype(np.float32)
    q = np.clip(np.rint(w.reshape(n_scales, -1) / scales[:, None]), -127, 127).astype(np.int8)
    return q.reshape(shape), scales, float(np.mean(np.square(w, dtype=np.float64)))


def _pre_std(fan_in: int, mean_sq_in: float, w_sq: float) -> float:
    """Std of a layer's pre-activation for zero-mean weights: its int8 range is 4 of these."""
    return max(math.sqrt(fan_in * mean_sq_in * w_sq), 1e-3)


def fc_param_bytes(width: int, depth: int = 4, in_features: int = 64, out_features: int = 10) -> int:
    """int8 weights plus int32 biases of synth_fc (what the profile must report)."""
    dims = [in_features] + [width] * depth + [out_features]
    return sum(o * i + 4 * o for i, o in pairwise(dims))


def conv_param_bytes(filters: int, layers: int = 5, channels: int = 3, kernel: int = 3) -> int:
    chans = [channels] + [filters] * layers
    return sum(o * kernel * kernel * i + 4 * o for i, o in pairwise(chans))


def synth_fc(
    width: int,
    depth: int = 4,
    in_features: int = 64,
    out_features: int = 10,
    seed: int = 0,
    *,
    weights: Weights = "random",
) -> bytes:
    """Dense(width, tanh) x depth then Dense(out_features), int8 per-tensor, float32 in and out."""
    _positive(width=width, depth=depth, in_features=in_features, out_features=out_features)
    _layers(depth, "depth")
    _check_bytes(fc_param_bytes(width, depth, in_features, out_features), "fully connected")
    rng = np.random.default_rng(seed)
    g = _Graph()
    x = g.tensor("input", [1, in_features], _T.FLOAT32)
    q = g.tensor("input_int8", [1, in_features], _T.INT8, [1 / 127], [0])
    g.op(_OP.QUANTIZE, [x], [q])
    s_in, mean_sq = 1 / 127, 1 / 3  # inputs in [-1, 1] like the representative data set
    dims = [in_features] + [width] * depth + [out_features]
    for i, (fan_in, units) in enumerate(pairwise(dims)):
        wq, scales, w_sq = _layer(rng, (units, fan_in), weights, per_channel=False)
        w_scale = float(scales[0])
        std = _pre_std(fan_in, mean_sq, w_sq)
        tw = g.tensor(f"dense_{i}/kernel", [units, fan_in], _T.INT8, [w_scale], [0], data=wq)
        tb = g.tensor(f"dense_{i}/bias", [units], _T.INT32, [s_in * w_scale], [0], data=np.zeros(units, dtype=np.int32))
        y = g.tensor(f"dense_{i}/out", [1, units], _T.INT8, [4 * std / 127], [0])
        opts = schema.FullyConnectedOptionsT()
        opts.fusedActivationFunction = schema.ActivationFunctionType.NONE
        g.op(_OP.FULLY_CONNECTED, [q, tw, tb], [y], schema.BuiltinOptions.FullyConnectedOptions, opts)
        if i < depth:  # int8 TANH: output scale 1/128, zero point 0, as the kernel requires
            q = g.tensor(f"dense_{i}/tanh", [1, units], _T.INT8, [1 / 128], [0])
            g.op(_OP.TANH, [y], [q])
            s_in, mean_sq = 1 / 128, std * std / (1 + std * std)
        else:
            q = y
    out = g.tensor("output", [1, out_features], _T.FLOAT32)
    g.op(_OP.DEQUANTIZE, [q], [out])
    desc = f"tpuplan synth_fc width={width} depth={depth} in={in_features} out={out_features} seed={seed}"
    return g.finish([x], [out], desc)


def synth_conv(
    filters: int,
    layers: int = 5,
    size: int = 64,
    channels: int = 3,
    kernel: int = 3,
    seed: int = 0,
    *,
    weights: Weights = "random",
    float_output: bool = False,
) -> bytes:
    """Conv2D(filters, kernel, SAME, relu) x layers on a size x size x channels image, int8 per channel.

    The output is the last convolution's int8 tensor, as in the measured models; `float_output` adds a
    DEQUANTIZE to float32 instead.
    """
    _positive(filters=filters, layers=layers, size=size, channels=channels, kernel=kernel)
    _layers(layers, "layers")
    _check_bytes(conv_param_bytes(filters, layers, channels, kernel), "convolution")
    rng = np.random.default_rng(seed)
    g = _Graph()
    x = g.tensor("input", [1, size, size, channels], _T.FLOAT32)
    q = g.tensor("input_int8", [1, size, size, channels], _T.INT8, [1 / 127], [0])
    g.op(_OP.QUANTIZE, [x], [q])
    s_in, mean_sq, cin = 1 / 127, 1 / 3, channels
    for i in range(layers):
        fan_in = kernel * kernel * cin
        wq, w_scale, w_sq = _layer(rng, (filters, kernel, kernel, cin), weights, per_channel=True)
        std = _pre_std(fan_in, mean_sq, w_sq)
        tw = g.tensor(
            f"conv2d_{i}/kernel",
            [filters, kernel, kernel, cin],
            _T.INT8,
            w_scale,
            np.zeros(filters, dtype=np.int64),
            data=wq,
        )
        tb = g.tensor(
            f"conv2d_{i}/bias",
            [filters],
            _T.INT32,
            s_in * w_scale.astype(np.float64),
            np.zeros(filters, dtype=np.int64),
            data=np.zeros(filters, dtype=np.int32),
        )
        # fused RELU: the output range is [0, 4 std], all 256 int8 levels
        y = g.tensor(f"conv2d_{i}/relu", [1, size, size, filters], _T.INT8, [4 * std / 255], [-128])
        opts = schema.Conv2DOptionsT()
        opts.padding, opts.strideW, opts.strideH = schema.Padding.SAME, 1, 1
        opts.dilationWFactor, opts.dilationHFactor = 1, 1
        opts.fusedActivationFunction = schema.ActivationFunctionType.RELU
        g.op(_OP.CONV_2D, [q, tw, tb], [y], schema.BuiltinOptions.Conv2DOptions, opts)
        q, s_in, mean_sq, cin = y, 4 * std / 255, std * std / 2, filters
    out = q
    if float_output:
        out = g.tensor("output", [1, size, size, filters], _T.FLOAT32)
        g.op(_OP.DEQUANTIZE, [q], [out])
    desc = f"tpuplan synth_conv filters={filters} layers={layers} size={size} channels={channels} seed={seed}"
    return g.finish([x], [out], desc)
