"""Read and check a .tflite file with the LiteRT flatbuffer schema (object API); no hand parser."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tpuplan.profiles.docio import read_bytes
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import BIG, MAX_DIM, describe
from tpuplan.profiles.tflite.safety import check_operators, check_tensors

MAX_MODEL_BYTES = 2**31 - 1  # flatbuffers cannot address more

_BUILTIN_NAMES: dict[int, str] = {
    v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int) and not k.startswith("_")
}
_TYPE_NAMES: dict[int, str] = {
    v: k.lower() for k, v in vars(schema.TensorType).items() if isinstance(v, int) and not k.startswith("_")
}
_TYPE_BYTES: dict[str, float] = {
    "float32": 4,
    "float16": 2,
    "int32": 4,
    "uint8": 1,
    "int64": 8,
    "string": 1,
    "bool": 1,
    "int16": 2,
    "complex64": 8,
    "int8": 1,
    "float64": 8,
    "complex128": 16,
    "uint64": 8,
    "resource": 0,
    "variant": 0,
    "uint32": 4,
    "uint16": 2,
    "int4": 0.5,
    "bfloat16": 2,
    "int2": 0.25,
}


@dataclass(frozen=True)
class LoadedModel:
    """A parsed model: the object-API tree plus facts every later step needs."""

    path: Path
    data: bytes
    sha256: str
    model: Any  # schema.ModelT; the generated schema has no type hints

    @property
    def subgraph(self) -> Any:
        return self.model.subgraphs[0]


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def op_code_name(model: Any, opcode_index: int) -> str:
    """Operator name; old files keep the real builtin in `deprecated_builtin_code` (take the larger)."""
    code = model.operatorCodes[opcode_index]
    builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
    if builtin == schema.BuiltinOperator.CUSTOM:
        raw = code.customCode
        name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        return name or "CUSTOM"
    return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")


def is_custom(model: Any, opcode_index: int) -> bool:
    code = model.operatorCodes[opcode_index]
    return bool(max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0)) == schema.BuiltinOperator.CUSTOM)


def dtype_name(tensor: Any) -> str:
    return _TYPE_NAMES.get(int(tensor.type), f"type{int(tensor.type)}")


def tensor_name(tensor: Any) -> str:
    raw = tensor.name
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")


def tensor_shape(tensor: Any) -> list[int]:
    return [int(d) for d in (tensor.shape if tensor.shape is not None else [])]


def tensor_bytes(tensor: Any) -> int:
    """Bytes of a dense tensor of this shape and type (unknown dimensions count as 1)."""
    n = 1
    for d in tensor_shape(tensor):
        n *= max(d, 1)
    return int(n * _TYPE_BYTES.get(dtype_name(tensor), 1) + 0.5)


def buffer_size(model: Any, buffer_index: int) -> int:
    """Bytes of constant data held by a buffer (inline or at an offset past the flatbuffer)."""
    buf = model.buffers[buffer_index]
    if buf.data is not None and len(buf.data) > 0:
        return len(buf.data)
    if buf.offset and buf.offset > 1 and buf.size:
        return int(buf.size)
    return 0


def buffer_bytes(loaded: LoadedModel, buffer_index: int) -> bytes:
    buf = loaded.model.buffers[buffer_index]
    if buf.data is not None and len(buf.data) > 0:
        return bytes(np.asarray(buf.data, dtype=np.uint8).tobytes())
    if buf.offset and buf.offset > 1 and buf.size:
        return loaded.data[int(buf.offset) : int(buf.offset) + int(buf.size)]
    return b""


def load_model(path: Path, *, allow_edgetpu: bool = True) -> LoadedModel:
    """Parse and check a model; every problem becomes one TpuplanError naming the file."""
    path = Path(path)
    data = read_bytes(path, what=".tflite model", max_bytes=MAX_MODEL_BYTES)
    return parse_model(data, path, allow_edgetpu=allow_edgetpu)


def parse_model(data: bytes, path: Path, *, allow_edgetpu: bool = True) -> LoadedModel:
    where = str(path)
    if len(data) < 16:
        raise TpuplanError(f"{where}: not a .tflite model ({len(data)} bytes is too short)")
    if data[4:8] != b"TFL3":
        raise TpuplanError(f"{where}: not a .tflite model (no TFL3 file identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # the generated reader raises anything on corrupt input
        raise TpuplanError(f"{where}: corrupt .tflite model ({type(exc).__name__}: {exc})") from None
    check_model(model, where, len(data), allow_edgetpu=allow_edgetpu)
    return LoadedModel(path=path, data=data, sha256=sha256_of(data), model=model)


def require_cpu_model(loaded: LoadedModel) -> None:
    """Planning needs the model before compilation: a compiled file hides its ops in one custom op."""
    model = loaded.model
    for op in loaded.subgraph.operators or []:
        if op_code_name(model, int(op.opcodeIndex)) == "edgetpu-custom-op":
            raise TpuplanError(
                f"{loaded.path}: is already compiled for the Edge TPU (edgetpu-custom-op); give the CPU model"
            )


def check_model(model: Any, where: str, size: int, *, allow_edgetpu: bool) -> None:
    """Reject structures that would make our analysis, or the native interpreter, misbehave."""
    subgraphs = model.subgraphs or []
    if len(subgraphs) != 1:
        raise TpuplanError(f"{where}: has {len(subgraphs)} subgraphs; tpuplan plans models with exactly one")
    codes = model.operatorCodes or []
    buffers = model.buffers or []
    sg = subgraphs[0]
    tensors = sg.tensors or []
    ops = sg.operators or []
    if not ops:
        raise TpuplanError(f"{where}: subgraph 0 has no operators")
    nt = len(tensors)
    for t_index, t in enumerate(tensors):
        if not 0 <= int(t.buffer) < max(len(buffers), 1):
            raise TpuplanError(f"{where}: tensor {t_index} points at missing buffer {t.buffer}")
        shape = tensor_shape(t)
        if len(shape) > 8 or any(d < -1 or d > MAX_DIM for d in shape):
            raise TpuplanError(f"{where}: tensor {t_index} has an impossible shape {shape}")
        if tensor_bytes(t) > BIG:
            raise TpuplanError(
                f"{where}: tensor {t_index} of shape {shape} would hold {describe(tensor_bytes(t))} "
                f"bytes, more than tpuplan handles ({BIG:,})"
            )
    for buf_index, buf in enumerate(buffers):
        if buf.offset and buf.offset > 1 and (buf.offset + (buf.size or 0) > size):
            raise TpuplanError(f"{where}: buffer {buf_index} points past the end of the file")
    for name, idx_list in (("input", sg.inputs), ("output", sg.outputs)):
        for i in idx_list if idx_list is not None else []:
            if not 0 <= int(i) < nt:
                raise TpuplanError(f"{where}: model {name} refers to missing tensor {int(i)}")
    produced: set[int] = set()
    for op_index, op in enumerate(ops):
        if not 0 <= int(op.opcodeIndex) < len(codes):
            raise TpuplanError(f"{where}: operator {op_index} has an unknown operator code")
        for role, idx_list in (
            ("input", op.inputs),
            ("output", op.outputs),
            ("intermediate", op.intermediates),
        ):
            for i in idx_list if idx_list is not None else []:
                if int(i) != -1 and not 0 <= int(i) < nt:
                    raise TpuplanError(f"{where}: operator {op_index} {role} refers to missing tensor {int(i)}")
        for i in op.outputs if op.outputs is not None else []:
            if int(i) in produced:
                raise TpuplanError(f"{where}: tensor {int(i)} is written by two operators")
            produced.add(int(i))
        if is_custom(model, int(op.opcodeIndex)):
            name = op_code_name(model, int(op.opcodeIndex))
            if name == "edgetpu-custom-op" and not allow_edgetpu:
                raise TpuplanError(
                    f"{where}: is already compiled for the Edge TPU (edgetpu-custom-op); give the CPU model"
                )
    _check_order(ops, sg, where)
    data_bytes = [buffer_size(model, int(t.buffer)) if buffers else 0 for t in tensors]
    dense = [
        None if dtype_name(t) == "string" or t.sparsity is not None or -1 in tensor_shape(t) else tensor_bytes(t)
        for t in tensors
    ]
    check_tensors(model, where, data_bytes, dense, [dtype_name(t) for t in tensors])
    check_operators(model, where, [op_code_name(model, int(op.opcodeIndex)) for op in ops], data_bytes)


def _check_order(ops: list[Any], sg: Any, where: str) -> None:
    """An activation must not be read before the operator that writes it (no cycles)."""
    producers: dict[int, int] = {}
    for op_index, op in enumerate(ops):
        for i in op.outputs if op.outputs is not None else []:
            producers[int(i)] = op_index
    for op_index, op in enumerate(ops):
        for i in op.inputs if op.inputs is not None else []:
            writer = producers.get(int(i))
            if writer is not None and writer >= op_index:
                raise TpuplanError(
                    f"{where}: operator {op_index} reads tensor {int(i)} before operator {writer} writes it"
                )
