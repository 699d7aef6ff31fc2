"""Where a segment runs: the backend registry, the one interpreter factory, and the stage runner.

A backend says which segment files its stages need (the CPU model or the Edge TPU compiler's output),
which device each stage gets, and which delegates an interpreter on that device loads. Everything that
creates an interpreter goes through `new_interpreter`, so every model is probed in a child process
first and every failure reads the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tpuplan.profiles.docio import read_bytes
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.edgetpu import load_edgetpu_delegate, parse_device, require_tpus
from tpuplan.runtime.litert import tflite_module
from tpuplan.runtime.probe import require_probed


@dataclass(frozen=True)
class Backend:
    """One way of running segments. `devices(k, asked)` gives one device string (or None) per stage."""

    name: str
    compiled: bool  # stages run the Edge TPU compiler's segments, not the CPU model's
    description: str
    devices: Callable[[int, Sequence[str] | None], list[str | None]]
    delegates: Callable[[str | None], list[Any]]


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    """Make a backend available by name (a third kind of accelerator plugs in here)."""
    _REGISTRY[backend.name] = backend


def backend_names() -> list[str]:
    return list(_REGISTRY)


def get_backend(name: str | Backend) -> Backend:
    if isinstance(name, Backend):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TpuplanError(f"unknown backend {name!r} (known: {', '.join(_REGISTRY)})") from None


def _cpu_devices(k: int, asked: Sequence[str] | None) -> list[str | None]:
    if asked:
        raise TpuplanError("device strings apply to the edgetpu backend only, not to cpu")
    return [None] * k


def _edgetpu_devices(k: int, asked: Sequence[str] | None) -> list[str | None]:
    chosen = [parse_device(d) for d in asked] if asked else require_tpus(k)
    if len(chosen) != k:
        raise TpuplanError(f"{k} stages need {k} Edge TPUs, got {len(chosen)}: {', '.join(chosen)}")
    return list(chosen)


def _edgetpu_delegates(device: str | None) -> list[Any]:
    return [load_edgetpu_delegate(device or "")]


register_backend(Backend("cpu", False, "LiteRT on the host CPU, one thread per stage", _cpu_devices, lambda d: []))
register_backend(Backend("edgetpu", True, "one Coral Edge TPU per stage through libedgetpu", _edgetpu_devices,
                         _edgetpu_delegates))


def new_interpreter(content: bytes, where: str, *, backend: str | Backend = "cpu", device: str | None = None,
                    num_threads: int = 1, default_delegates: bool = True, preserve_all_tensors: bool = False) -> Any:
    """A LiteRT interpreter for `content` on `device` of `backend`, tensors not yet allocated.

    The model is probed in a child process first (once per content per process): the native interpreter
    trusts its input, and a crash could not be caught here. `default_delegates=False` leaves out LiteRT's
    own CPU delegate (XNNPACK), for reading shapes only; `preserve_all_tensors` keeps every intermediate
    tensor readable after invoke (to feed single ops with real values).
    """
    chosen = get_backend(backend)
    require_probed(where, content)  # the same bytes the interpreter gets: no swap after the probe
    module = tflite_module()
    kwargs: dict[str, Any] = {"model_content": content, "num_threads": num_threads}
    delegates = chosen.delegates(device)
    if delegates:
        kwargs["experimental_delegates"] = delegates
    resolver = getattr(getattr(module, "OpResolverType", None), "BUILTIN_WITHOUT_DEFAULT_DELEGATES", None)
    if not default_delegates and resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    try:
        with warnings.catch_warnings():  # LiteRT warns that keeping every tensor costs memory: that is the point
            warnings.simplefilter("ignore", UserWarning)
            return module.Interpreter(**kwargs)
    except (ValueError, RuntimeError, OSError) as exc:
        raise TpuplanError(f"cannot create an interpreter for {where}: {_one_line(exc)}") from None


def make_interpreter(model_path: Path, device: str | None = None) -> Any:
    """pycoral's call: an interpreter for a file, on the CPU when `device` is None, else that Edge TPU."""
    content = read_bytes(Path(model_path), what=".tflite model")
    return new_interpreter(content, str(model_path), backend="cpu" if device is None else "edgetpu", device=device)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class InterpreterStage:
    """Runs one segment model: inputs and outputs by tensor name, as the pipeline routes them."""

    def __init__(self, name: str, content: bytes, *, where: str | None = None, backend: str | Backend = "cpu",
                 device: str | None = None, num_threads: int = 1) -> None:
        label = where or name
        self._interp = new_interpreter(content, label, backend=backend, device=device, num_threads=num_threads)
        try:
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise TpuplanError(f"cannot create an interpreter for {label}: {_one_line(exc)}") from None
        self.name = name
        self.device = device
        self._inputs = {str(d["name"]): int(d["index"]) for d in self._interp.get_input_details()}
        self._outputs = {str(d["name"]): int(d["index"]) for d in self._interp.get_output_details()}
        self.input_names = list(self._inputs)
        self.output_names = list(self._outputs)

    def input_details(self) -> list[dict[str, Any]]:
        details: list[dict[str, Any]] = self._interp.get_input_details()
        return details

    def _failed(self, what: str, exc: Exception) -> TpuplanError:
        """The interpreter's error, with the stage and device: on an Edge TPU it often means the device
        was unplugged or reset, and the user needs to know which one."""
        if self.device is None:
            return TpuplanError(f"stage {self.name}: {what} failed: {_one_line(exc)}")
        return TpuplanError(
            f"stage {self.name}: {what} failed on Edge TPU {self.device} (unplugged or reset?): {_one_line(exc)}"
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
        name = str(d["name"])
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            lo, hi = max(int(info.min), -128), min(int(info.max), 255)
            out[name] = rng.integers(lo, hi + 1, size=shape).astype(dtype)
        elif dtype == np.bool_:
            out[name] = rng.integers(0, 2, size=shape).astype(np.bool_)
        else:
            out[name] = rng.standard_normal(size=shape).astype(dtype)
    return out
