"""A zoo-size int8 model for the benchmarks: MobileNet v2's inverted-residual blocks, repeated to ~600 ops.

Each block is a 1x1 expansion CONV_2D (relu6), a 3x3 DEPTHWISE_CONV_2D (relu6, stride 2 at the first block
of a stage), a 1x1 projection CONV_2D, and an ADD of the block's input when the shapes match (the skip
connection: a tensor live across the block, as in the real model). Stages halve the image and widen the
channels as MobileNet v2 does; the number of blocks per stage is scaled to reach the op count asked for,
so the parameters (about 30 MiB at 600 ops) need several Edge TPUs, like the larger zoo models. Written with
the synthetic-model writer of `tpuplan.profiles.synth` (zero weights: the profile depends only on
shapes), no TensorFlow needed. The shared models stop at 251 ops; the issue's zoo models go to ~600.
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tpuplan.profiles.synth import _Graph

T = schema.TensorType
OP = schema.BuiltinOperator
# (expansion, output channels, stride of the first block) per stage, as MobileNet v2
STAGES = [(1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2), (6, 96, 1), (6, 160, 2), (6, 320, 1)]


def _q(g: _Graph, name: str, shape: list[int]) -> int:
    return g.tensor(name, shape, T.INT8, [0.05], [-128])


def _conv(
    g: _Graph, name: str, x: int, shape: list[int], cout: int, kernel: int, stride: int, relu: bool
) -> tuple[int, list[int]]:
    h = (shape[1] + stride - 1) // stride
    cin = shape[3]
    w = g.tensor(
        f"{name}/w",
        [cout, kernel, kernel, cin],
        T.INT8,
        np.full(cout, 0.01, np.float32),
        np.zeros(cout, np.int64),
        data=np.zeros((cout, kernel, kernel, cin), np.int8),
    )
    b = g.tensor(
        f"{name}/b",
        [cout],
        T.INT32,
        np.full(cout, 5e-4, np.float32),
        np.zeros(cout, np.int64),
        data=np.zeros(cout, np.int32),
    )
    out_shape = [1, h, h, cout]
    y = _q(g, f"{name}/out", out_shape)
    opts = schema.Conv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH, opts.dilationWFactor, opts.dilationHFactor = (
        schema.Padding.SAME,
        stride,
        stride,
        1,
        1,
    )
    opts.fusedActivationFunction = schema.ActivationFunctionType.RELU6 if relu else schema.ActivationFunctionType.NONE
    g.op(OP.CONV_2D, [x, w, b], [y], schema.BuiltinOptions.Conv2DOptions, opts)
    return y, out_shape


def _depthwise(g: _Graph, name: str, x: int, shape: list[int], stride: int) -> tuple[int, list[int]]:
    c, h = shape[3], (shape[1] + stride - 1) // stride
    w = g.tensor(
        f"{name}/w",
        [1, 3, 3, c],
        T.INT8,
        np.full(c, 0.01, np.float32),
        np.zeros(c, np.int64),
        axis=3,
        data=np.zeros((1, 3, 3, c), np.int8),
    )
    b = g.tensor(
        f"{name}/b", [c], T.INT32, np.full(c, 5e-4, np.float32), np.zeros(c, np.int64), data=np.zeros(c, np.int32)
    )
    out_shape = [1, h, h, c]
    y = _q(g, f"{name}/out", out_shape)
    opts = schema.DepthwiseConv2DOptionsT()
    opts.padding, opts.strideW, opts.strideH, opts.depthMultiplier = schema.Padding.SAME, stride, stride, 1
    opts.dilationWFactor, opts.dilationHFactor = 1, 1
    opts.fusedActivationFunction = schema.ActivationFunctionType.RELU6
    g.op(OP.DEPTHWISE_CONV_2D, [x, w, b], [y], schema.BuiltinOptions.DepthwiseConv2DOptions, opts)
    return y, out_shape


def mobilenet_like(ops: int = 600, size: int = 224) -> bytes:
    """An int8 model of about `ops` ops: QUANTIZE, a stem convolution, inverted-residual blocks, a head."""
    g = _Graph()
    x = g.tensor("input", [1, size, size, 3], T.FLOAT32)
    q = _q(g, "input_int8", [1, size, size, 3])
    g.op(OP.QUANTIZE, [x], [q])
    y, shape = _conv(g, "stem", q, [1, size, size, 3], 32, 3, 2, True)
    per_block = 4  # expand, depthwise, project, add (most blocks)
    repeat = max(1, (ops - 6) // (per_block * len(STAGES)))
    k = 0
    for expand, cout, stride in STAGES:
        for r in range(repeat):
            k += 1
            inp, in_shape = y, shape
            h, hs = _conv(g, f"b{k}/expand", inp, in_shape, in_shape[3] * expand, 1, 1, True)
            h, hs = _depthwise(g, f"b{k}/dw", h, hs, stride if r == 0 else 1)
            y, shape = _conv(g, f"b{k}/project", h, hs, cout, 1, 1, False)
            if shape == in_shape:
                s = _q(g, f"b{k}/add", shape)
                g.op(OP.ADD, [inp, y], [s], schema.BuiltinOptions.AddOptions, schema.AddOptionsT())
                y = s
    y, shape = _conv(g, "head", y, shape, 1280, 1, 1, True)
    out = g.tensor("output", shape, T.FLOAT32)
    g.op(OP.DEQUANTIZE, [y], [out])
    return g.finish([x], [out], f"tpuplan benchmark mobilenet_like ops={ops}")
