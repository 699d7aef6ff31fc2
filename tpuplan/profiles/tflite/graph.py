"""Static analysis of subgraph 0: ops in execution order, parameters, MACs, tensors live across cuts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tpuplan.compat import zip_strict
from tpuplan.profiles.edgetpu.placement import OpView, blocking_host_op, first_tpu_partition, op_support
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import BIG, describe
from tpuplan.profiles.tflite.reader import (
    LoadedModel,
    buffer_size,
    is_custom,
    op_code_name,
    tensor_bytes,
    tensor_name,
    tensor_shape,
)

ELEMENTWISE_OPS = frozenset(
    {
        "ADD",
        "SUB",
        "MUL",
        "DIV",
        "MAXIMUM",
        "MINIMUM",
        "SQUARED_DIFFERENCE",
        "LOGISTIC",
        "TANH",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "LEAKY_RELU",
        "HARD_SWISH",
        "PRELU",
        "RSQRT",
        "SQRT",
        "EXP",
        "ABS",
        "NEG",
        "QUANTIZE",
        "DEQUANTIZE",
        "POW",
        "SQUARE",
        "ELU",
        "GELU",
    }
)


@dataclass
class OpInfo:
    index: int
    op_type: str
    op_class: str
    inputs: list[int]  # activation inputs (produced by an op or a model input)
    outputs: list[int]
    params: list[int]  # constant tensors this op reads
    own: list[int]  # variable (state) and intermediate tensors that belong to this op
    param_bytes: int = 0  # constant buffers first read by this op
    param_shapes: list[list[int]] = field(default_factory=list)
    per_channel: bool = False  # a weight tensor quantised per output channel
    macs: int = 0
    supported: bool = False  # the compiler can map this op on its own (profiles.edgetpu.placement rules R1-R6)
    support_reason: str = ""
    edgetpu: bool = False  # mapped when the whole model is one compiled segment (partitioning P1-P3 too)
    edgetpu_reason: str = ""


@dataclass
class Graph:
    loaded: LoadedModel
    ops: list[OpInfo]
    model_inputs: list[int]
    model_outputs: list[int]
    crossing: list[list[int]]  # crossing[i]: tensors live across cut i (between op i and op i+1)
    last_use: dict[int, int]  # activation tensor -> index of its last reader

    def name(self, t: int) -> str:
        return tensor_name(self.loaded.subgraph.tensors[t])

    @cached_property
    def _name_counts(self) -> Counter[str]:
        return Counter(tensor_name(t) for t in self.loaded.subgraph.tensors or [])

    def key(self, t: int) -> str:
        """A name that identifies tensor t in a profile: its own, or with #index when it is empty or shared."""
        name = self.name(t)
        return name if name and self._name_counts[name] == 1 else f"{name or 'tensor'}#{t}"

    def nbytes(self, t: int) -> int:
        return tensor_bytes(self.loaded.subgraph.tensors[t])

    def shape(self, t: int) -> list[int]:
        return tensor_shape(self.loaded.subgraph.tensors[t])


REDUCE_OPS = frozenset(
    {
        "ARG_MAX",
        "ARG_MIN",
        "MEAN",
        "SUM",
        "REDUCE_MAX",
        "REDUCE_MIN",
        "REDUCE_PROD",
        "REDUCE_ANY",
        "L2_NORMALIZATION",
        "SOFTMAX",
        "LOG_SOFTMAX",
    }
)


def op_class(op_type: str, custom: bool = False) -> str:
    """The cost class of an op: MAC-bound layers, per-element work, reductions, resizes, custom ops."""
    if custom and op_type != "edgetpu-custom-op":
        return "custom"
    if op_type == "FULLY_CONNECTED" or op_type == "BATCH_MATMUL" or op_type.endswith("LSTM"):
        return "fc"
    if op_type in ("CONV_2D", "TRANSPOSE_CONV"):
        return "conv"
    if op_type == "DEPTHWISE_CONV_2D":
        return "depthwise"
    if op_type in ELEMENTWISE_OPS:
        return "elementwise"
    if op_type in REDUCE_OPS:
        return "reduce"
    if op_type.startswith("RESIZE_"):
        return "resize"
    return "other"


def analyse(loaded: LoadedModel) -> Graph:
    """Build the op list and the crossing sets of every cut."""
    model, sg = loaded.model, loaded.subgraph
    tensors = sg.tensors
    model_inputs = [int(i) for i in (sg.inputs if sg.inputs is not None else [])]
    model_outputs = [int(i) for i in (sg.outputs if sg.outputs is not None else [])]
    produced: set[int] = set(model_inputs)
    seen_buffers: set[int] = set()
    ops: list[OpInfo] = []
    for index, op in enumerate(sg.operators):
        op_type = op_code_name(model, int(op.opcodeIndex))
        custom = is_custom(model, int(op.opcodeIndex))
        info = OpInfo(index, op_type, op_class(op_type, custom), [], [], [], [])
        for raw in op.inputs if op.inputs is not None else []:
            t = int(raw)
            if t == -1:
                continue
            tensor = tensors[t]
            if t in produced:
                if t not in info.inputs:
                    info.inputs.append(t)
            elif tensor.isVariable or buffer_size(model, int(tensor.buffer)) == 0:
                info.own.append(t)  # state, or an empty optional input: never crosses a cut
            else:
                info.params.append(t)
                info.param_shapes.append(tensor_shape(tensor))
                q = tensor.quantization
                info.per_channel |= bool(q is not None and q.scale is not None and len(q.scale) > 1)
                if int(tensor.buffer) not in seen_buffers:
                    seen_buffers.add(int(tensor.buffer))
                    info.param_bytes += buffer_size(model, int(tensor.buffer))
        info.own.extend(int(t) for t in (op.intermediates if op.intermediates is not None else []))
        info.outputs = [int(t) for t in (op.outputs if op.outputs is not None else []) if int(t) != -1]
        produced.update(info.outputs)
        info.macs = count_macs(loaded, op, info)
        if info.macs > BIG:
            raise TpuplanError(
                f"{loaded.path}: operator {index} ({op_type}) does {describe(info.macs)} "
                f"multiply-accumulates, more than tpuplan can price ({BIG:,})"
            )
        view = OpView(loaded, index, op_type, custom, info.inputs, info.outputs, info.params)
        info.supported, info.support_reason = op_support(view)
        ops.append(info)
    place(ops)
    last_use: dict[int, int] = {}
    for info in ops:
        for t in info.inputs:
            last_use[t] = info.index
    crossing = crossing_sets(ops, model_inputs, last_use)
    return Graph(loaded, ops, model_inputs, model_outputs, crossing, last_use)


def crossing_sets(ops: list[OpInfo], model_inputs: list[int], last_use: dict[int, int]) -> list[list[int]]:
    """Tensors produced at or before op i (or model inputs) and read after op i, for each cut i."""
    n = len(ops)
    start: dict[int, int] = {t: -1 for t in model_inputs}
    for info in ops:
        for t in info.outputs:
            start[t] = info.index
    crossing: list[list[int]] = [[] for _ in range(max(n - 1, 0))]
    for t, last in last_use.items():
        first = start.get(t, -1)
        for cut in range(max(first, 0), min(last, n - 1)):
            crossing[cut].append(t)
    for c in crossing:
        c.sort()
    return crossing


def _prod(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= max(d, 1)
    return n


def count_macs(loaded: LoadedModel, op: Any, info: OpInfo) -> int:
    """Multiply-accumulates of the op; 0 where the op does none or shapes are unknown."""
    tensors = loaded.subgraph.tensors
    ins = [int(t) for t in (op.inputs if op.inputs is not None else [])]
    outs = info.outputs
    if not outs:
        return 0
    out_elems = _prod(tensor_shape(tensors[outs[0]]))

    def shape_of(pos: int) -> list[int]:
        return tensor_shape(tensors[ins[pos]]) if len(ins) > pos and ins[pos] != -1 else []

    t = info.op_type
    if t == "CONV_2D":
        w = shape_of(1)  # [cout, kh, kw, cin]
        return out_elems * _prod(w[1:]) if len(w) == 4 else 0
    if t == "DEPTHWISE_CONV_2D":
        w = shape_of(1)  # [1, kh, kw, cout]
        return out_elems * _prod(w[1:3]) if len(w) == 4 else 0
    if t == "FULLY_CONNECTED":
        w = shape_of(1)  # [units, in]
        return out_elems * w[-1] if len(w) >= 2 else 0
    if t == "TRANSPOSE_CONV":
        w, x = shape_of(1), shape_of(2)  # w [cout, kh, kw, cin], x [n, h, w, cin]
        return _prod(x) * _prod(w[:3]) if len(w) == 4 and x else 0
    if t == "BATCH_MATMUL":
        a = shape_of(0)
        adj_x = bool(getattr(op.builtinOptions, "adjX", False))
        k = (a[-2] if adj_x else a[-1]) if len(a) >= 2 else 0
        return out_elems * k
    if t.endswith("LSTM"):
        return sum(_prod(s) for s in info.param_shapes if len(s) == 2) * max(_prod(shape_of(0)[:-1]), 1)
    if t in ELEMENTWISE_OPS:
        return out_elems
    return 0


def place(ops: list[OpInfo]) -> None:
    """Where each op runs when the whole model is compiled as one segment, and why (P1-P3)."""
    supported = [op.supported for op in ops]
    inputs = [op.inputs for op in ops]
    producer = {t: op.index for op in ops for t in op.outputs}
    on_tpu = first_tpu_partition(supported, inputs, [op.outputs for op in ops], producer)
    for op, tpu in zip_strict(ops, on_tpu):
        op.edgetpu = tpu
        if tpu or not op.supported:
            op.edgetpu_reason = op.support_reason
            continue
        blocker = blocking_host_op(op.index, supported, inputs, producer)
        after = f"depends on host op {blocker} ({ops[blocker].op_type})" if blocker is not None else "comes later"
        op.edgetpu_reason = f"supported, but {after}: the compiler maps one Edge TPU subgraph per segment"
