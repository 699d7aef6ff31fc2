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
