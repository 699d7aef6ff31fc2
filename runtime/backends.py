"""Stage runners: one LiteRT interpreter per segment, on the CPU or on one Edge TPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from profiles.errors import TpuplanError
from runtime.edgetpu import load_edgetpu_delegate, tflite_module

BACKENDS = ("cpu", "edgetpu")


def _tensor_name(detail: dict[str, Any]) -> str:
    return str(detail["name"])


class InterpreterStage:
    """Runs one segment model: inputs and outputs by tensor name, as the pipeline routes them."""

    def __init__(
        self,
        name: str,
        *,
        path: Path | None = None,
        content: bytes | None = None,
        device: str | None = None,
        num_threads: int = 1,
    ) -> None:
        module = tflite_module()
        kwargs: dict[str, Any] = {"num_threads": num_threads}
        if content is not None:
            kwargs["model_content"] = content
        elif path is not None:
            kwargs["model_path"] = str(path)
        else:
            raise TpuplanError(f"stage {name}: no model given")
        if device is not None:
            kwargs["experimental_delegates"] = [load_edgetpu_delegate(device)]
        where = str(path) if path is not None else name
        try:
            self._interp = module.Interpreter(**kwargs)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise TpuplanError(f"cannot create an interpreter for {where}: {exc}") from None
        self.name = name
        self._inputs = {_tensor_name(d): int(d["index"]) for d in self._interp.get_input_details()}
        self._outputs = {_tensor_name(d): int(d["index"]) for d in self._interp.get_output_details()}
        self.input_names = list(self._inputs)
        self.output_names = list(self._outputs)

    def input_details(self) -> list[dict[str, Any]]:
        details: list[dict[str, Any]] = self._interp.get_input_details()
        return details

    def set_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        for name, index in self._inputs.items():
            try:
                value = inputs[name]
            except KeyError:
                raise TpuplanError(f"stage {self.name}: input tensor {name!r} is missing") from None
            self._interp.set_tensor(index, value)

    def invoke(self) -> None:
        self._interp.invoke()

    def get_outputs(self) -> dict[str, np.ndarray]:
        return {name: np.array(self._interp.get_tensor(index)) for name, index in self._outputs.items()}

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.set_inputs(inputs)
        self.invoke()
        return self.get_outputs()

    def close(self) -> None:
        self._interp = None


def random_inputs(details: list[dict[str, Any]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random tensors matching the interpreter's input details (int types over their full range)."""
    out: dict[str, np.ndarray] = {}
    for d in details:
        dtype = np.dtype(d["dtype"])
        shape = tuple(int(x) for x in d["shape"])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            lo, hi = max(int(info.min), -128), min(int(info.max), 255)
            out[_tensor_name(d)] = rng.integers(lo, hi + 1, size=shape).astype(dtype)
        elif dtype == np.bool_:
            out[_tensor_name(d)] = rng.integers(0, 2, size=shape).astype(np.bool_)
        else:
            out[_tensor_name(d)] = rng.standard_normal(size=shape).astype(dtype)
    return out
