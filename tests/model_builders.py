"""Small .tflite models the real set lacks, written with the synthetic-model writer of profiles.synth:
huge shapes (8-D, 2^28 per dimension), a float model, a model with a custom op no LiteRT has."""

from __future__ import annotations

import flatbuffers  # type: ignore[import-untyped]
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tpuplan.profiles.synth import _Graph

T = schema.TensorType
OP = schema.BuiltinOperator


def shaped_model(op: str, shape: list[int]) -> bytes:
    """One op on int8 tensors of `shape` (inputs are model inputs, nothing constant): ADD of two tensors,
    or BATCH_MATMUL of a tensor with itself, whose MAC count is elements x last dimension."""
    g = _Graph()
    a = g.tensor("a", shape, T.INT8, [0.1], [0])
    b = g.tensor("b", shape, T.INT8, [0.1], [0])
    out = g.tensor("out", shape, T.INT8, [0.1], [0])
    if op == "ADD":
        g.op(OP.ADD, [a, b], [out], schema.BuiltinOptions.AddOptions, schema.AddOptionsT())
    else:
        g.op(OP.BATCH_MATMUL, [a, b], [out], schema.BuiltinOptions.BatchMatMulOptions, schema.BatchMatMulOptionsT())
    return g.finish([a, b], [out], f"tpuplan test {op} {shape}")


def float_model() -> bytes:
    """FULLY_CONNECTED then TANH on float32: a model that was never quantised, so no op is an Edge TPU op."""
    g = _Graph()
    x = g.tensor("input", [1, 64], T.FLOAT32)
    w = g.tensor("w", [32, 64], T.FLOAT32, data=np.full((32, 64), 0.01, np.float32))
    b = g.tensor("b", [32], T.FLOAT32, data=np.zeros(32, np.float32))
    y = g.tensor("y", [1, 32], T.FLOAT32)
    g.op(
        OP.FULLY_CONNECTED, [x, w, b], [y], schema.BuiltinOptions.FullyConnectedOptions, schema.FullyConnectedOptionsT()
    )
    z = g.tensor("z", [1, 32], T.FLOAT32)
    g.op(OP.TANH, [y], [z])
    return g.finish([x], [z], "tpuplan test float model")


def custom_op_model() -> bytes:
    """QUANTIZE, then a custom op no interpreter knows, then DEQUANTIZE: plannable, not runnable here."""
    g = _Graph()
    x = g.tensor("input", [1, 16], T.FLOAT32)
    q = g.tensor("q", [1, 16], T.INT8, [0.1], [0])
    g.op(OP.QUANTIZE, [x], [q])
    c = g.tensor("c", [1, 16], T.INT8, [0.1], [0])
    g.op(OP.CUSTOM, [q], [c])
    y = g.tensor("output", [1, 16], T.FLOAT32)
    g.op(OP.DEQUANTIZE, [c], [y])
    data = g.finish([x], [y], "tpuplan test custom op")
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for code in model.operatorCodes:
        if code.builtinCode == OP.CUSTOM:
            code.customCode = "NoSuchCustomOp"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _fc(g: _Graph, name: str, x: int, width: int, units: int | None = None) -> int:
    """FULLY_CONNECTED width -> units (default width) on int8 (zero weights), then its int8 output."""
    units = units or width
    w = g.tensor(f"{name}/w", [units, width], T.INT8, [0.01], [0], data=np.zeros((units, width), np.int8))
    b = g.tensor(f"{name}/b", [units], T.INT32, [1e-3], [0], data=np.zeros(units, np.int32))
    y = g.tensor(f"{name}/out", [1, units], T.INT8, [0.1], [0])
    opts = schema.FullyConnectedOptionsT()
    g.op(OP.FULLY_CONNECTED, [x, w, b], [y], schema.BuiltinOptions.FullyConnectedOptions, opts)
    return y


def _add(g: _Graph, name: str, a: int, b: int, width: int) -> int:
    y = g.tensor(name, [1, width], T.INT8, [0.1], [0])
    g.op(OP.ADD, [a, b], [y], schema.BuiltinOptions.AddOptions, schema.AddOptionsT())
    return y


def state_pair_model(width: int = 32, layers: int = 6) -> bytes:
    """A recurrent cell as a video model ships it: the state comes in as the input `init_state` and goes
    out as the output `state` (the caller feeds it back), after `layers` FC layers; more FC layers make
    the model's other output `y` (of 10 values)."""
    g = _Graph()
    x = g.tensor("x", [1, width], T.INT8, [0.1], [0])
    s_in = g.tensor("init_state", [1, width], T.INT8, [0.1], [0])
    h = _fc(g, "enc", x, width)
    h = _add(g, "mix", h, s_in, width)
    for k in range(layers):
        h = _fc(g, f"cell{k}", h, width)
    state = g.tensor("state", [1, width], T.INT8, [0.1], [0])
    g.op(OP.RELU, [h], [state])
    y = state
    for k in range(layers):
        y = _fc(g, f"head{k}", y, width, 10 if k == layers - 1 else width)
    return g.finish([x, s_in], [y, state], "tpuplan test state pair")


def resource_variable_model(width: int = 32, layers: int = 4) -> bytes:
    """An accumulator kept in a resource variable: FC layers, then VAR_HANDLE, READ_VARIABLE, ADD,
    ASSIGN_VARIABLE (the sum is the next input's starting value), then more FC layers."""
    g = _Graph()
    x = g.tensor("x", [1, width], T.INT8, [0.1], [0])
    h = x
    for k in range(layers):
        h = _fc(g, f"pre{k}", h, width)
    handle = g.tensor("acc_handle", [], T.RESOURCE)
    opts = schema.VarHandleOptionsT()
    opts.sharedName = "acc"
    g.op(OP.VAR_HANDLE, [], [handle], schema.BuiltinOptions.VarHandleOptions, opts)
    old = g.tensor("acc_old", [1, width], T.INT8, [0.1], [0])
    g.op(OP.READ_VARIABLE, [handle], [old])
    total = _add(g, "acc_new", h, old, width)
    g.op(OP.ASSIGN_VARIABLE, [handle, total], [])
    y = total
    for k in range(layers):
        y = _fc(g, f"post{k}", y, width)
    return g.finish([x], [y], "tpuplan test resource variable")
