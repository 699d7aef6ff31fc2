"""Which ops the Edge TPU compiler maps to the TPU, and why: per-op rules, then its partitioning.

Per-op rules (an op the compiler *can* map):
  R1 the op is on Coral's "Supported operations" list (coral.ai/docs/edgetpu/models-intro), or TILE,
     which the compiler mapped in deeplab_mobilenet_edgetpu_slim_cityscapes (op 76). Any custom op but
     `edgetpu-custom-op` runs on the host.
  R2 "fully 8-bit quantized" (same page): every activation is int8/uint8 and no parameter is float; a
     float->int QUANTIZE at the input stays on the CPU ("the compiler leaves a quantize op at the
     beginning of your graph"). LSTM state tensors are exempt (keras_lstm's int16 cell state is mapped).
  R3 tensor sizes constant at compile time; R4 "only the 3 innermost dimensions may have a size
     greater than 1" (the compiler's status "Tensor has unsupported rank").
  R5 the table's "known limitations" (fused activations on pools/concat, Softmax 1-D <= 16,000
     elements, StridedSlice strides of 1, Squeeze without relayout, no batch reductions/padding, ...).
  R6 RESIZE_*: "depending on input/output size, this operation might not be mapped ... to avoid loss
     in precision". Observed in the compiled files here: x1 and x2 mapped; x15.5 (33->513) and x33
     (1->33) not. We map whole-number factors, and at most 2 for bilinear.
Partitioning (a segment is compiled on its own):
  P1 ops are grouped in execution order into partitions of one kind that respect the dataflow (the
     TFLite delegate mechanism the compiler uses);
  P2 only the first partition of supported ops becomes the Edge TPU subgraph ("More than one subgraph
     is not supported"): a supported op downstream of a host op stays on the host;
  P3 host ops before that partition (an input QUANTIZE) do not stop it.
On all 10 compiled pairs in ../shared/models this gives exactly the compiler's CPU ops
(tests/profiles/test_placement.py).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from tpuplan.profiles.tflite.reader import LoadedModel, buffer_bytes, dtype_name, tensor_name, tensor_shape

EDGETPU_OPS = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "EXPAND_DIMS",
        "FULLY_CONNECTED",
        "L2_NORMALIZATION",
        "LOGISTIC",
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "MAXIMUM",
        "MAX_POOL_2D",
        "MEAN",
        "MINIMUM",
        "MUL",
        "PACK",
        "PAD",
        "PADV2",
        "PRELU",
        "QUANTIZE",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RESHAPE",
        "RESIZE_BILINEAR",
        "RESIZE_NEAREST_NEIGHBOR",
        "RSQRT",
        "SLICE",
        "SOFTMAX",
        "SPACE_TO_DEPTH",
        "SPLIT",
        "SQUEEZE",
        "STRIDED_SLICE",
        "SUB",
        "SUM",
        "SQUARED_DIFFERENCE",
        "TANH",
        "TRANSPOSE",
        "TRANSPOSE_CONV",
        "HARD_SWISH",
        "DEPTH_TO_SPACE",
        "GATHER",
        "UNPACK",
        "LEAKY_RELU",
        "BATCH_MATMUL",
    }
)
OBSERVED_OPS = frozenset({"TILE"})
COMPILED_OP = "edgetpu-custom-op"
EIGHT_BIT = frozenset({"int8", "uint8"})
MAX_RESIZE_FACTOR = 2
SOFTMAX_MAX_ELEMENTS = 16_000

H = TypeVar("H", bound=Hashable)


class OpView:
    """What the rules need to know about one operator of a loaded model."""

    def __init__(
        self,
        loaded: LoadedModel,
        index: int,
        op_type: str,
        custom: bool,
        activations: Sequence[int],
        outputs: Sequence[int],
        params: Sequence[int],
    ) -> None:
        self.loaded, self.index, self.op_type, self.custom = loaded, index, op_type, custom
        self.activations, self.outputs, self.params = list(activations), list(outputs), list(params)
        self.options = loaded.subgraph.operators[index].builtinOptions

    def tensor(self, t: int) -> Any:
        return self.loaded.subgraph.tensors[t]

    def dtype(self, t: int) -> str:
        return dtype_name(self.tensor(t))

    def shape(self, t: int) -> list[int]:
        return tensor_shape(self.tensor(t))

    def name(self, t: int) -> str:
        return tensor_name(self.tensor(t))[:48]

    def dynamic(self, t: int) -> bool:
        sig = self.tensor(t).shapeSignature
        return sig is not None and any(int(d) < 0 for d in sig)

    def constant(self, position: int) -> list[int] | None:
        """The values of the op's int32/int64 constant input at `position` (axes, paddings, strides)."""
        inputs = self.loaded.subgraph.operators[self.index].inputs
        if inputs is None or len(inputs) <= position or int(inputs[position]) < 0:
            return None
        t = int(inputs[position])
        kind = {"int32": np.int32, "int64": np.int64}.get(self.dtype(t))
        data = buffer_bytes(self.loaded, int(self.tensor(t).buffer))
        if kind is None or not data:
            return None
        return [int(v) for v in np.frombuffer(data, dtype=kind)]


def _big_dims(shape: Sequence[int]) -> int:
    return sum(1 for d in shape if d > 1)


def op_support(op: OpView) -> tuple[bool, str]:
    """Rules R1-R6 for one op on its own: (the compiler can map it, why not)."""
    if op.op_type == COMPILED_OP:
        return True, "already compiled for the Edge TPU"
    if op.custom:
        return False, f"custom op {op.op_type!r} runs on the host"
    if op.op_type == "QUANTIZE" and op.activations and op.dtype(op.activations[0]) not in EIGHT_BIT:
        return False, f"QUANTIZE from {op.dtype(op.activations[0])}: the compiler leaves it on the CPU"
    if op.op_type not in EDGETPU_OPS | OBSERVED_OPS:
        return False, f"{op.op_type} is not on Coral's supported-operations list"
    for t in op.activations + op.outputs:
        if op.dtype(t) not in EIGHT_BIT:
            return False, f"tensor {op.name(t)!r} is {op.dtype(t)}, not 8-bit quantised"
        if op.dynamic(t):
            return False, f"tensor {op.name(t)!r} has a dynamic shape"
        if _big_dims(op.shape(t)) > 3:
            return False, f"tensor {op.name(t)!r} {op.shape(t)} has more than 3 dimensions above 1"
    for t in op.params:
        if op.dtype(t).startswith("float"):
            return False, f"parameter {op.name(t)!r} is {op.dtype(t)}, not quantised"
    return _limitations(op)


def _limitations(op: OpView) -> tuple[bool, str]:
    """R5, the documented limitations, and R6, resizing."""
    t, o = op.op_type, op.options
    if t in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION") and int(getattr(o, "fusedActivationFunction", 0) or 0):
        return False, f"{t} with a fused activation function"
    if t == "CONCATENATION" and op.params:
        return False, "CONCATENATION with a constant input"
    if t in ("CONV_2D", "DEPTHWISE_CONV_2D") and o is not None and o.dilationHFactor != o.dilationWFactor:
        return False, f"{t} with different x and y dilation"
    if t == "FULLY_CONNECTED" and (int(getattr(o, "weightsFormat", 0) or 0) or _big_dims(op.shape(op.outputs[0])) > 1):
        return False, "FULLY_CONNECTED with a non-default weights format or a multi-dimensional output"
    if t == "SOFTMAX" and op.activations:
        shape = op.shape(op.activations[0])
        if _big_dims(shape) > 1 or int(np.prod(shape or [1])) > SOFTMAX_MAX_ELEMENTS:
            return False, f"SOFTMAX input {shape} is not 1-D with at most {SOFTMAX_MAX_ELEMENTS:,} elements"
    if t in ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "PAD", "PADV2"):
        return _reduction_or_pad(op)
    if t == "STRIDED_SLICE":
        strides = op.constant(3)
        if (
            (strides is not None and any(s != 1 for s in strides))
            or int(getattr(o, "ellipsisMask", 0) or 0)
            or int(getattr(o, "newAxisMask", 0) or 0)
        ):
            return False, "STRIDED_SLICE with a stride other than 1 or an ellipsis/new-axis mask"
    if t == "SQUEEZE" and op.activations:
        shape = op.shape(op.activations[0])
        first_big = next((k for k, d in enumerate(shape) if d > 1), len(shape))
        dims = [int(d) % max(len(shape), 1) for d in (getattr(o, "squeezeDims", None) or [])]
        if any(k > first_big for k in dims):
            return False, f"SQUEEZE of {shape} needs a relayout"
    if t in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR") and op.activations:
        return _resize(op)
    return True, ""


def _reduction_or_pad(op: OpView) -> tuple[bool, str]:
    t = op.op_type
    rank = len(op.shape(op.activations[0])) if op.activations else 0
    values = op.constant(1)
    if values is None or rank != 4:
        return True, ""
    if t in ("PAD", "PADV2"):
        return (False, f"{t} pads the batch dimension") if len(values) == 8 and (values[0] or values[1]) else (True, "")
    if any(a % rank == 0 for a in values):
        return False, f"{t} reduces the batch dimension"
    depth = op.shape(op.activations[0])[-1]
    if t == "MEAN" and any(a % rank == rank - 1 for a in values) and depth % 4:
        return False, f"MEAN over a depth of {depth}, not a multiple of 4"
    return True, ""


def _resize(op: OpView) -> tuple[bool, str]:
    t = op.op_type
    si, so = op.shape(op.activations[0]), op.shape(op.outputs[0])
    if len(si) != 4 or len(so) != 4 or si[0] != 1 or min(si[1:3]) < 1:
        return False, f"{t} input {si} is not one image"
    factors = [so[k] / si[k] for k in (1, 2)]
    size = f"{si[1]}x{si[2]}->{so[1]}x{so[2]}"
    if any(f != int(f) for f in factors):
        return False, f"{t} {size}: a scale that is not a whole number is not mapped (seen compiled)"
    if t == "RESIZE_BILINEAR" and max(factors) > MAX_RESIZE_FACTOR:
        return False, f"RESIZE_BILINEAR {size}: a scale above {MAX_RESIZE_FACTOR} is not mapped (seen compiled)"
    return True, ""


def first_tpu_partition(
    supported: Sequence[bool],
    inputs: Sequence[Sequence[H]],
    outputs: Sequence[Sequence[H]],
    producer: Mapping[H, int],
    start: int = 0,
    stop: int | None = None,
) -> list[bool]:
    """Placement of ops[start:stop] when a compiled segment starts at op `start` (True: on the Edge TPU).

    P1-P3: if the first op is a host op, the host partition takes every host op whose inputs are ready;
    the earliest op left is then a supported one, and the Edge TPU partition takes every supported op
    whose inputs are ready. Every later op stays on the host. A tensor made before `start` is an input of
    the segment. The placement of ops[start:b] does not depend on the ops after b, so `stop` (default:
    every op) only saves the work of the ops after it.
    """
    n = len(supported) if stop is None else min(stop, len(supported))
    done = [False] * n
    made: set[H] = set()

    def ready(k: int) -> bool:
        return all(producer.get(t, -1) < start or t in made for t in inputs[k])

    if start >= n:
        return []
    for kind in [True] if supported[start] else [False, True]:
        members = []
        for k in range(start, n):
            if not done[k] and supported[k] == kind and ready(k):
                done[k] = True
                made.update(outputs[k])
                members.append(k)
        if kind:
            tpu = set(members)
            return [k in tpu for k in range(start, n)]
    return [False] * (n - start)


def blocking_host_op(
    k: int, supported: Sequence[bool], inputs: Sequence[Sequence[H]], producer: Mapping[H, int], start: int = 0
) -> int | None:
    """The host op a supported op left on the host waits for (directly or through other ops), if any."""
    seen: set[int] = set()
    stack = [k]
    while stack:
        for t in inputs[stack.pop()]:
            p = producer.get(t, -1)
            if p < start or p in seen:
                continue
            if not supported[p]:
                return p
            seen.add(p)
            stack.append(p)
    return None
