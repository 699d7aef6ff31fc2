"""Checks that keep a hostile .tflite away from the native interpreter, which trusts its input.

Each rule here comes from a file that crashed LiteRT's interpreter (a segfault, not an exception) in
`tests/profiles/test_fuzz_readers.py` while passing the structural checks of `profiles.tflite.reader`: constant data of
the wrong size, a tensor read that nothing writes, a required input marked absent, options of another
operator's type, SPLIT/UNPACK output counts that disagree with their options, and denormal or
non-finite quantisation scales. Real models (all of ../shared/models) pass every rule.
"""

from __future__ import annotations

import math
from typing import Any

from ai_edge_litert import schema_py_generated as schema

from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError

# Inputs that the op defines as optional (index -1 = absent). LSTM: input gate, peepholes, projection
# and layer norm weights; FULLY_CONNECTED: bias; TRANSPOSE_CONV: bias.
_OPTIONAL_INPUTS: dict[str, frozenset[int]] = {
    "FULLY_CONNECTED": frozenset({2}),
    "TRANSPOSE_CONV": frozenset({3}),
    "LSTM": frozenset({1, 5, 9, 10, 11, 12, 16, 17, 20, 21, 22, 23}),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": frozenset({1, 5, 9, 10, 11, 12, 16, 17, 20, 21, 22, 23}),
}
_OPTIONS_NAMES: dict[int, str] = {
    v: k for k, v in vars(schema.BuiltinOptions).items() if isinstance(v, int) and not k.startswith("_")
}
_OPTIONS_BY_KEY: dict[str, int] = {k.lower(): v for v, k in _OPTIONS_NAMES.items()}
_SHARED_OPTIONS = {
    "pool2doptions": ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"),
    "reduceroptions": ("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY"),
}
_SMALLEST_NORMAL_F32 = 1.1754943508222875e-38
_INT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def expected_options(op_name: str) -> int | None:
    """The BuiltinOptions type an op's options must have (or NONE), when the schema's naming tells."""
    for key, ops in _SHARED_OPTIONS.items():
        if op_name in ops:
            return _OPTIONS_BY_KEY[key]
    return _OPTIONS_BY_KEY.get(op_name.replace("_", "").lower() + "options")


def check_tensors(
    model: Any, where: str, data_bytes: list[int], dense_bytes: list[int | None], dtypes: list[str]
) -> None:
    """Constant data must fill its tensor exactly; quantisation parameters must be usable numbers.

    Per tensor: `data_bytes` the size of its constant data (0: none), `dense_bytes` the size its shape
    and type need (None: not fixed, e.g. strings, sparse or unknown dimensions), `dtypes` its type.
    """
    sg = model.subgraphs[0]
    for t_index, t in enumerate(sg.tensors or []):
        size, want, dtype = data_bytes[t_index], dense_bytes[t_index], dtypes[t_index]
        if size and want is not None and want != size:
            shape = [int(d) for d in (t.shape if t.shape is not None else [])]
            raise TpuplanError(
                f"{where}: tensor {t_index} holds {size} bytes of data but its shape {shape} needs {want}"
            )
        q = t.quantization
        if q is None:
            continue
        for scale in q.scale if q.scale is not None else []:
            if not (math.isfinite(float(scale)) and (scale == 0 or abs(float(scale)) >= _SMALLEST_NORMAL_F32)):
                raise TpuplanError(f"{where}: tensor {t_index} has an unusable quantisation scale {scale}")
        bounds = _INT_RANGE.get(dtype)
        zeros = [int(z) for z in q.zeroPoint] if q.zeroPoint is not None else []
        if bounds is not None and any(not bounds[0] <= z <= bounds[1] for z in zeros):
            raise TpuplanError(f"{where}: tensor {t_index} has a zero point outside its type's range")


def check_operators(model: Any, where: str, op_names: list[str], data_bytes: list[int]) -> None:
    """Every input an op reads exists when it runs; options and output counts match the op."""
    sg = model.subgraphs[0]
    tensors = sg.tensors or []
    written = {int(i) for i in (sg.inputs if sg.inputs is not None else [])}
    for op in sg.operators or []:
        written.update(int(i) for i in (op.outputs if op.outputs is not None else []))
    for op_index, (op, name) in enumerate(zip_strict(sg.operators, op_names)):
        inputs = [int(i) for i in (op.inputs if op.inputs is not None else [])]
        for k, i in enumerate(inputs):
            if i == -1:
                if k not in _OPTIONAL_INPUTS.get(name, frozenset()):
                    raise TpuplanError(
                        f"{where}: operator {op_index} ({name}) has input {k} marked absent, which that operator needs"
                    )
            elif i not in written and not data_bytes[i] and not tensors[i].isVariable:
                raise TpuplanError(
                    f"{where}: operator {op_index} ({name}) reads tensor {i}, which no operator "
                    "writes, is not a model input and holds no data"
                )
        want = expected_options(name)
        got = int(op.builtinOptionsType or 0)
        if want is not None and got not in (0, want):
            raise TpuplanError(
                f"{where}: operator {op_index} ({name}) carries {_OPTIONS_NAMES.get(got, got)} "
                f"instead of {_OPTIONS_NAMES[want]}"
            )
        _check_output_count(op, name, where, op_index)


def _check_output_count(op: Any, name: str, where: str, op_index: int) -> None:
    """SPLIT, SPLIT_V and UNPACK write as many outputs as their options say; the kernels trust that."""
    field = {"SPLIT": "numSplits", "SPLIT_V": "numSplits", "UNPACK": "num"}.get(name)
    if field is None:
        return
    count = getattr(op.builtinOptions, field, None) if op.builtinOptions is not None else None
    outputs = len(op.outputs) if op.outputs is not None else 0
    if count is None or int(count) != outputs:
        raise TpuplanError(
            f"{where}: operator {op_index} ({name}) has {outputs} outputs but its options say "
            f"{count if count is not None else 'nothing'}"
        )
