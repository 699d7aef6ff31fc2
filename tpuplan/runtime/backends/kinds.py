"""The kinds of backend a segment can run on, by name: a registry light enough for `plan --help`.

A backend says which segment files its stages need (the CPU model or the Edge TPU compiler's output),
which device each stage gets, and which delegates an interpreter on that device loads. The interpreter
factory that uses them is `registry.new_interpreter`; this module imports neither numpy nor LiteRT, so
the CLI can name the backends in its help without loading them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.backends.edgetpu import load_edgetpu_delegate, parse_device, require_tpus


@dataclass(frozen=True)
class Backend:
    """One way of running segments. `devices(k, asked)` gives one device string (or None) per stage.
    `predicts`: the device backend whose predictions a run on it checks (its own name when None).
    `simulator`: for a SIMULATED device, the factory of what times its invokes (`backends.simulated`)."""

    name: str
    compiled: bool  # stages run the Edge TPU compiler's segments, not the CPU model's
    description: str
    devices: Callable[[int, Sequence[str] | None], list[str | None]]
    delegates: Callable[[str | None], list[Any]]
    predicts: str | None = None
    simulator: Callable[[], Any] | None = None

    @property
    def simulated(self) -> bool:
        return self.simulator is not None

    @property
    def checks(self) -> str:
        """The device backend whose predictions a run on this one is compared with."""
        return self.predicts or self.name


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
register_backend(
    Backend("edgetpu", True, "one Coral Edge TPU per stage through libedgetpu", _edgetpu_devices, _edgetpu_delegates)
)


def _sim_devices(k: int, asked: Sequence[str] | None) -> list[str | None]:
    if asked:
        raise TpuplanError("the simulated backend has no devices to choose: drop --devices")
    return [f"simulated-tpu{i}" for i in range(k)]


def _default_simulator() -> Any:
    """The simulator behind edgetpu-sim, found by name when first used: listing the backends (`plan --help`)
    stays light, while the simulator needs numpy and the pricer."""
    return importlib.import_module("tpuplan.runtime.backends.simulated").default_simulator()


register_backend(
    Backend(
        "edgetpu-sim",
        False,
        "a SIMULATED Edge TPU for tests and benchmarks: each segment's CPU model runs, its invoke takes the "
        "time of a hidden true device model on a virtual clock (no hardware; never a measurement)",
        _sim_devices,
        lambda d: [],
        predicts="edgetpu",
        simulator=_default_simulator,
    )
)
