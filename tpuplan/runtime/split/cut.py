"""Cut a model into contiguous segments, each a standalone .tflite built with the LiteRT object API.

Tensors keep their original names because the pipeline routes them by name: a tensor may skip stages,
so positions mean nothing across segments. Only activations cross a cut; constants are copied into every
segment that reads them, and an op's variable (state) and intermediate tensors stay with the op.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flatbuffers  # type: ignore[import-untyped,unused-ignore]
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.tflite.graph import Graph, analyse
from tpuplan.profiles.tflite.reader import LoadedModel, buffer_bytes

if TYPE_CHECKING:
    pass

BUFFER_ALIGNMENT = 16  # what the TFLite converter guarantees and kernels reading weights in place expect
_MAX_DEPRECATED_CODE = 127  # deprecated_builtin_code is an int8; larger ops store 127 (placeholder) there


@dataclass(frozen=True)
class Segment:
    """One contiguous run of ops as a packed .tflite file; inputs/outputs are tensor names."""

    index: int
    first_op: int
    last_op: int
    inputs: list[str]
    outputs: list[str]
    data: bytes = field(repr=False)

    @property
    def num_ops(self) -> int:
        return self.last_op - self.first_op + 1


def segment_file_name(model_stem: str, index: int, count: int) -> str:
    """The name the Edge TPU compiler gives segments, so tools that know its layout find ours."""
    return f"{model_stem}_segment_{index}_of_{count}.tflite"


def validate_cuts(cuts: Sequence[int], num_ops: int) -> list[int]:
    """Cut c ends a stage at op c: strictly increasing, each in 0..num_ops-2 (the last op ends the model)."""
    out: list[int] = []
    for c in cuts:
        if isinstance(c, bool) or not isinstance(c, int):
            raise TpuplanError(f"cut {c!r} is not an integer op index")
        if not 0 <= c <= num_ops - 2:
            raise TpuplanError(f"cut {c} is outside 0..{num_ops - 2} (the model has {num_ops} ops)")
        if out and c <= out[-1]:
            raise TpuplanError(f"cuts must be strictly increasing, got {list(cuts)}")
        out.append(c)
    return out


def stage_ranges(cuts: Sequence[int], num_ops: int) -> list[tuple[int, int]]:
    """(first_op, last_op) of each stage for validated cuts."""
    starts = [0, *(c + 1 for c in cuts)]
    ends = [*cuts, num_ops - 1]
    return list(zip_strict(starts, ends))


def _producers(graph: Graph) -> dict[int, int]:
    return {t: info.index for info in graph.ops for t in info.outputs}


def _default_io(graph: Graph, first: int, last: int) -> tuple[list[int], list[int]]:
    """Activations read from before `first` (model inputs first, in model order), and tensors made in
    first..last that a later op reads or that are model outputs (model outputs first, in model order)."""
    producer = _producers(graph)
    external: list[int] = []
    for info in graph.ops[first : last + 1]:
        for t in info.inputs:
            if producer.get(t, -1) < first and t not in external:
                external.append(t)
    inputs = [t for t in graph.model_inputs if t in external]
    inputs += [t for t in external if t not in inputs]
    made = [t for info in graph.ops[first : last + 1] for t in info.outputs]
    outputs = [t for t in graph.model_outputs if t in made]
    outputs += [t for t in made if graph.last_use.get(t, -1) > last and t not in outputs]
    if not outputs and made:  # a dead-end op group: expose what the last op makes so it can be run
        outputs = list(graph.ops[last].outputs)
    return inputs, outputs


def _resolve(graph: Graph, names: Sequence[str], candidates: list[int], what: str) -> list[int]:
    by_name = {graph.name(t): t for t in candidates}
    out: list[int] = []
    for n in names:
        if n not in by_name:
            raise TpuplanError(f"{what} {n!r} is not one of {sorted(by_name)}")
        out.append(by_name[n])
    return out


def _io_for(
    graph: Graph, first: int, last: int, inputs: Sequence[str] | None, outputs: Sequence[str] | None
) -> tuple[list[int], list[int]]:
    n = len(graph.ops)
    if not 0 <= first <= last < n:
        raise TpuplanError(f"bad op range {first}..{last} for a model with {n} ops")
    ins, outs = _default_io(graph, first, last)
    if inputs is not None:
        chosen = _resolve(graph, inputs, ins, f"input of ops {first}..{last}")
        missing = [graph.name(t) for t in ins if t not in chosen]
        if missing:
            raise TpuplanError(f"ops {first}..{last} also read {missing}; list them as inputs")
        ins = chosen
    if outputs is not None:
        made = [t for info in graph.ops[first : last + 1] for t in info.outputs]
        outs = _resolve(graph, outputs, made, f"output of ops {first}..{last}")
    return ins, outs


class _AlignedBuffer:
    """Stands in for BufferT in ModelT.Pack: the stock Pack aligns uint8 data to 1 byte only."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def Pack(self, builder: Any) -> int:
        vector = None
        if self.data:
            builder.Prep(BUFFER_ALIGNMENT, len(self.data))  # data start lands on a 16-byte boundary
            vector = builder.CreateNumpyVector(np.frombuffer(self.data, dtype=np.uint8))
        schema.BufferStart(builder)
        if vector is not None:
            schema.BufferAddData(builder, vector)
        return int(schema.BufferEnd(builder))


def _opcode(code: Any) -> Any:
    """Both code fields written consistently: builtin the larger, deprecated capped at 127."""
    out = copy.deepcopy(code)
    builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
    out.builtinCode = builtin
    out.deprecatedBuiltinCode = min(builtin, _MAX_DEPRECATED_CODE)
    return out


def _build(loaded: LoadedModel, first: int, last: int, ins: list[int], outs: list[int], label: str) -> Any:
    """A ModelT with ops first..last, their tensors, constants and op codes, indices remapped."""
    src, sg = loaded.model, loaded.subgraph
    if src.externalBuffers:
        raise TpuplanError(f"{loaded.path}: external buffers are not supported by the splitter")
    orig_buffer0_empty = len(buffer_bytes(loaded, 0)) == 0 if src.buffers else True
    buffers: list[Any] = [_AlignedBuffer(b"")]
    buffer_map: dict[int, int] = {0: 0} if orig_buffer0_empty else {}
    tensors: list[Any] = []
    tensor_map: dict[int, int] = {}
    codes: list[Any] = []
    code_map: dict[int, int] = {}

    def buffer(b: int) -> int:
        if b not in buffer_map:
            buffer_map[b] = len(buffers)
            buffers.append(_AlignedBuffer(buffer_bytes(loaded, b)))
        return buffer_map[b]

    def tensor(t: int) -> int:
        if t < 0:
            return -1  # an omitted optional input
        if t not in tensor_map:
            copied = copy.deepcopy(sg.tensors[t])
            copied.buffer = buffer(int(copied.buffer))
            tensor_map[t] = len(tensors)
            tensors.append(copied)
        return tensor_map[t]

    new_inputs = [tensor(t) for t in ins]
    ops: list[Any] = []
    for op in sg.operators[first : last + 1]:
        new = copy.deepcopy(op)
        if int(op.opcodeIndex) not in code_map:
            code_map[int(op.opcodeIndex)] = len(codes)
            codes.append(_opcode(src.operatorCodes[int(op.opcodeIndex)]))
        new.opcodeIndex = code_map[int(op.opcodeIndex)]
        new.inputs = [tensor(int(t)) for t in (op.inputs if op.inputs is not None else [])]
        new.outputs = [tensor(int(t)) for t in (op.outputs if op.outputs is not None else [])]
        if op.intermediates is not None:
            new.intermediates = [tensor(int(t)) for t in op.intermediates]
        if op.largeCustomOptionsOffset and int(op.largeCustomOptionsOffset) > 1:
            start, size = int(op.largeCustomOptionsOffset), int(op.largeCustomOptionsSize)
            new.customOptions = np.frombuffer(loaded.data[start : start + size], dtype=np.uint8).copy()
            new.largeCustomOptionsOffset, new.largeCustomOptionsSize = 0, 0
        new.debugMetadataIndex = -1
        ops.append(new)
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.operators = tensors, ops
    subgraph.inputs, subgraph.outputs = new_inputs, [tensor(t) for t in outs]
    subgraph.name = sg.name
    model = schema.ModelT()
    model.version = int(src.version or 3)
    model.description = label
    model.operatorCodes, model.subgraphs, model.buffers = codes, [subgraph], buffers
    # Signature defs and metadata (TFLITE_METADATA, min_runtime_version) describe the whole model: dropped.
    return model


def pack_model(model: Any) -> bytes:
    """Serialise a ModelT with every constant buffer 16-byte aligned, and prove it by reading back."""
    size = sum(len(b.data) for b in model.buffers if b.data is not None) + (1 << 16)
    builder = flatbuffers.Builder(size)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    data = bytes(builder.Output())
    for index, offset, length in buffer_offsets(data):
        if length and offset % BUFFER_ALIGNMENT:
            raise TpuplanError(f"internal error: buffer {index} of a segment is at unaligned offset {offset}")
    return data


def buffer_offsets(data: bytes) -> list[tuple[int, int, int]]:
    """(buffer index, file offset of its data, length) of every buffer of a packed model."""
    root = schema.Model.GetRootAs(data, 0)
    base = np.frombuffer(data, dtype=np.uint8).__array_interface__["data"][0]
    out = []
    for i in range(root.BuffersLength()):
        buf = root.Buffers(i)
        length = int(buf.DataLength())
        offset = int(buf.DataAsNumpy().__array_interface__["data"][0] - base) if length else 0
        out.append((i, offset, length))
    return out


def _check_routing(graph: Graph, ranges: list[tuple[int, int]], ios: list[tuple[list[int], list[int]]]) -> None:
    """Routing by name needs unique, non-empty names; state shared by two segments would fork."""
    seen: dict[str, int] = {}
    routed = set(graph.model_inputs) | set(graph.model_outputs)
    for ins, outs in ios:
        routed |= set(ins) | set(outs)
    for t in sorted(routed):
        name = graph.name(t)
        if not name:
            raise TpuplanError(f"{graph.loaded.path}: tensor {t} crosses a cut but has no name to route by")
        if seen.setdefault(name, t) != t:
            raise TpuplanError(
                f"{graph.loaded.path}: tensors {seen[name]} and {t} are both named {name!r}; "
                "routing between segments needs unique names"
            )
    owner: dict[int, int] = {}
    tensors = graph.loaded.subgraph.tensors
    for s, (first, last) in enumerate(ranges):
        for info in graph.ops[first : last + 1]:
            for t in info.own:
                if tensors[t].isVariable and owner.setdefault(t, s) != s:
                    raise TpuplanError(
                        f"{graph.loaded.path}: variable tensor {graph.name(t)!r} is used in segments "
                        f"{owner[t]} and {s}; a cut may not separate ops that share state"
                    )


def split_model(loaded: LoadedModel, cuts: list[int]) -> list[Segment]:
    """One Segment per stage of `cuts` (empty cuts: the whole model as a single segment)."""
    graph = analyse(loaded)
    ranges = stage_ranges(validate_cuts(cuts, len(graph.ops)), len(graph.ops))
    ios = [_default_io(graph, first, last) for first, last in ranges]
    _check_routing(graph, ranges, ios)
    stem = Path(loaded.path).stem
    segments = []
    for index, ((first, last), (ins, outs)) in enumerate(zip_strict(ranges, ios)):
        label = f"tpuplan segment {index} of {len(ranges)} of {stem}: ops {first}..{last}"
        data = pack_model(_build(loaded, first, last, ins, outs, label))
        names_in = [graph.name(t) for t in ins]
        segments.append(Segment(index, first, last, names_in, [graph.name(t) for t in outs], data))
    return segments


def segment_bytes(
    loaded: LoadedModel,
    first_op: int,
    last_op: int,
    *,
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
) -> bytes:
    """A standalone model of ops first_op..last_op, e.g. to time one op or op group on the CPU.

    By default its inputs are what the ops read from earlier ops or the model inputs, and its outputs
    what later ops read plus model outputs; `inputs` may reorder the former, `outputs` choose any
    tensors the ops make.
    """
    graph = analyse(loaded)
    ins, outs = _io_for(graph, first_op, last_op, inputs, outputs)
    label = f"tpuplan ops {first_op}..{last_op} of {Path(loaded.path).stem}"
    return pack_model(_build(loaded, first_op, last_op, ins, outs, label))
