"""Stage runners: one LiteRT interpreter per segment, on the CPU or on one Edge TPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from profiles.docio import read_bytes
from profiles.errors import TpuplanError
from runtime.edgetpu import load_edgetpu_delegate, tflite_module
from runtime.probe import require_probed

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
        if content is None:
            if path is None:
                raise TpuplanError(f"stage {name}: no model given")
            content = read_bytes(path, what=".tflite model")
        where = str(path) if path is not None else name
        require_probed(where, content)  # the same bytes the interpreter gets: no swap after the probe
        module = tflite_module()
        kwargs: dict[str, Any] = {"num_threads": num_threads, "model_content": content}
        if device is not None:
            kwargs["experimental_delegates"] = [load_edgetpu_delegate(device)]
        try:
            self._interp = module.Interpreter(**kwargs)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise TpuplanError(f"cannot create an interpreter for {where}: {exc}") from None
        self.name = name
        self.device = device
        self._inputs = {_tensor_name(d): int(d["index"]) for d in self._interp.get_input_details()}
        self._outputs = {_tensor_name(d): int(d["index"]) for d in self._interp.get_output_details()}
        self.input_names = list(self._inputs)
        self.output_names = list(self._outputs)

    def input_details(self) -> list[dict[str, Any]]:
        details: list[dict[str, Any]] = self._interp.get_input_details()
        return details

    def _failed(self, what: str, exc: Exception) -> TpuplanError:
        """The interpreter's error, with the stage and device: on an Edge TPU it often means the device
        was unplugged or reset, and the user needs to know which one."""
        if self.device is None:
            return TpuplanError(f"stage {self.name}: {what} failed: {exc}")
        return TpuplanError(
            f"stage {self.name}: {what} failed on Edge TPU {self.device} (unplugged or reset?): {exc}"
        )

    def set_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        for name, index in self._inputs.items():
            try:
                value = inputs[name]
            except KeyError:
                raise TpuplanError(f"stage {self.name}: input tensor {name!r} is missing") from None
            try:
                self._interp.set_tensor(index, value)
            except (ValueError, RuntimeError) as exc:
                raise self._failed(f"setting input {name!r}", exc) from exc

    def invoke(self) -> None:
        try:
            self._interp.invoke()
        except (ValueError, RuntimeError) as exc:
            raise self._failed("invoke", exc) from exc

    def get_outputs(self) -> dict[str, np.ndarray]:
        try:
            return {name: np.array(self._interp.get_tensor(index)) for name, index in self._outputs.items()}
        except (ValueError, RuntimeError) as exc:
            raise self._failed("reading outputs", exc) from exc

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
