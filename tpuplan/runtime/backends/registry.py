"""Where a segment runs: the one interpreter factory and the stage runner, for the backends of `kinds`.

Everything that creates an interpreter goes through `new_interpreter`, so every model is probed in a
child process first and every failure reads the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.profiles.docio import read_bytes
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.backends.kinds import Backend, get_backend
from tpuplan.runtime.backends.litert import tflite_module
from tpuplan.runtime.backends.nativelog import one_line, quiet_native_logs
from tpuplan.runtime.backends.probe import require_probed
from tpuplan.runtime.tensors.inputs import InputSpec, random_input


def new_interpreter(
    content: bytes,
    where: str,
    *,
    backend: str | Backend = "cpu",
    device: str | None = None,
    num_threads: int = 1,
    default_delegates: bool = True,
    preserve_all_tensors: bool = False,
    probe: bool = True,
) -> Any:
    """A LiteRT interpreter for `content` on `device` of `backend`, tensors not yet allocated.

    The model is probed in a child process first (once per content per process): the native interpreter
    trusts its input, and a crash could not be caught here. `probe=False` is for a caller that is itself
    such a disposable process (a stage process of `--workers processes`, whose parent probed the same
    bytes and reports its death). `default_delegates=False` leaves out LiteRT's own CPU delegate
    (XNNPACK), for reading shapes only; `preserve_all_tensors` keeps every intermediate tensor readable
    after invoke (to feed single ops with real values). LiteRT's INFO banner is filtered out.
    """
    chosen = get_backend(backend)
    if probe:
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
        with warnings.catch_warnings(), quiet_native_logs():  # keeping every tensor costs memory: that is the point
            warnings.simplefilter("ignore", UserWarning)
            return module.Interpreter(**kwargs)
    except (ValueError, RuntimeError, OSError) as exc:
        raise TpuplanError(f"cannot create an interpreter for {where}: {one_line(exc)}") from None


def allocate(interp: Any, where: str) -> None:
    """`allocate_tensors`, where LiteRT prints its delegate banner and reports unresolved ops: quietly,
    and any failure as one line naming `where`."""
    try:
        with quiet_native_logs():
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise TpuplanError(f"cannot create an interpreter for {where}: {one_line(exc)}") from None


def make_interpreter(model_path: Path, device: str | None = None) -> Any:
    """pycoral's call: an interpreter for a file, on the CPU when `device` is None, else that Edge TPU."""
    content = read_bytes(Path(model_path), what=".tflite model")
    return new_interpreter(content, str(model_path), backend="cpu" if device is None else "edgetpu", device=device)


class InterpreterStage:
    """Runs one segment model: by tensor name (`run`), or positionally on the pipeline's hot path
    (`run_arrays`: inputs in `input_names` order, outputs in `output_names` order, no dicts).

    Inputs are copied into the interpreter's own preallocated tensors with `set_tensor`, outputs come back
    as exactly one copy each (`get_tensor` already copies; it is handed downstream while this interpreter
    runs the next input, so a view of its buffer would not be safe). Measured here, a `tensor()` view plus
    `np.copyto` is slower than `set_tensor` for small tensors and no faster for 100 KiB ones.
    """

    def __init__(
        self,
        name: str,
        content: bytes,
        *,
        where: str | None = None,
        backend: str | Backend = "cpu",
        device: str | None = None,
        num_threads: int = 1,
        probe: bool = True,
    ) -> None:
        label = where or name
        self._interp = new_interpreter(
            content, label, backend=backend, device=device, num_threads=num_threads, probe=probe
        )
        chosen = get_backend(backend)
        # a simulated device: each invoke advances its virtual clock by the segment's simulated time
        self._tick = chosen.simulator().ticker(content) if chosen.simulator is not None else None
        allocate(self._interp, label)
        self.name = name
        self.device = device
        self._inputs = {str(d["name"]): int(d["index"]) for d in self._interp.get_input_details()}
        self._outputs = {str(d["name"]): int(d["index"]) for d in self._interp.get_output_details()}
        self.input_names = list(self._inputs)
        self.output_names = list(self._outputs)
        self._in_index, self._out_index = list(self._inputs.values()), list(self._outputs.values())
        self._set, self._invoke, self._get = self._interp.set_tensor, self._interp.invoke, self._interp.get_tensor
        self._views = [self._interp.tensor(index) for index in self._out_index]

    def input_details(self) -> list[dict[str, Any]]:
        details: list[dict[str, Any]] = self._interp.get_input_details()
        return details

    def output_details(self) -> list[dict[str, Any]]:
        details: list[dict[str, Any]] = self._interp.get_output_details()
        return details

    def _failed(self, what: str, exc: Exception) -> TpuplanError:
        """The interpreter's error, with the stage and device: on an Edge TPU it often means the device
        was unplugged or reset, and the user needs to know which one."""
        if self.device is None:
            return TpuplanError(f"stage {self.name}: {what} failed: {one_line(exc)}")
        return TpuplanError(
            f"stage {self.name}: {what} failed on Edge TPU {self.device} (unplugged or reset?): {one_line(exc)}"
        )

    def feed(self, values: Sequence[np.ndarray]) -> None:
        """Set every input (positionally) and invoke."""
        for name, index, value in zip_strict(self.input_names, self._in_index, values):
            try:
                self._set(index, value)
            except (ValueError, RuntimeError) as exc:
                raise self._failed(f"setting input {name!r}", exc) from exc
        self.invoke()

    def run_arrays(self, values: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The hot path of the threads runner: feed, then one copy of every output, positionally."""
        self.feed(values)
        try:
            return [self._get(index) for index in self._out_index]
        except (ValueError, RuntimeError) as exc:
            raise self._failed("reading outputs", exc) from exc

    def read_into(self, dests: Sequence[np.ndarray | None]) -> None:
        """Copy the outputs straight into `dests` (shared memory of a process pipeline; None: not needed)
        through `tensor()` views: safe here, as each view lives only for its copy, in this thread,
        between two invokes."""
        try:
            for view, dest in zip_strict(self._views, dests):
                if dest is not None:
                    np.copyto(dest, view(), casting="no")
        except (ValueError, RuntimeError, TypeError) as exc:
            raise self._failed("reading outputs", exc) from exc

    def set_inputs(self, inputs: dict[str, np.ndarray]) -> None:
        for name, index in self._inputs.items():
            try:
                value = inputs[name]
            except KeyError:
                raise TpuplanError(f"stage {self.name}: input tensor {name!r} is missing") from None
            try:
                self._set(index, value)
            except (ValueError, RuntimeError) as exc:
                raise self._failed(f"setting input {name!r}", exc) from exc

    def invoke(self) -> None:
        try:
            self._invoke()
        except (ValueError, RuntimeError) as exc:
            raise self._failed("invoke", exc) from exc
        if self._tick is not None:
            self._tick()

    def get_outputs(self) -> dict[str, np.ndarray]:
        try:
            return {name: self._get(index) for name, index in self._outputs.items()}
        except (ValueError, RuntimeError) as exc:
            raise self._failed("reading outputs", exc) from exc

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.set_inputs(inputs)
        self.invoke()
        return self.get_outputs()

    def close(self) -> None:
        """Drop the interpreter (and the bound methods that would keep it alive)."""
        self._interp = self._set = self._invoke = self._get = None
        self._views = []


def random_inputs(details: list[dict[str, Any]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random tensors matching the interpreter's input details (int types over their full range)."""
    return random_input([InputSpec.from_details(d) for d in details], rng)
