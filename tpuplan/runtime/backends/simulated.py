"""A SIMULATED Edge TPU: what `plan verify` and `plan tune` measure when there is no hardware, for tests and
benchmarks. Nothing it produces is a measurement, and every report, table and picture made with it says so.

The simulated device runs each segment's CPU model (so that outputs flow and can be compared with the
unsplit model), and says its invoke took the time that a hidden "true" device and host give that segment:
the planner's cost formula priced on the segment file alone (as hardware sees only the segment), with the
current specs perturbed per term of the formula by known factors (`TRUE_FACTORS`: the link and the
streaming of parameters 3x slower than the presets say, the rest off by less). Time is a virtual clock:
an invoke advances it by the true time (times a seeded noise factor when asked), so the "measured" times
do not depend on this machine's load. The pipeline's period and latency in a simulated report are the
same true model's (`pipeline_formula.pipeline` over the true stage values), not the CPU's wall clock.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tpuplan.profiles.build import build_profile
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.device import DeviceSpec, resolve_device
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.scenarios import perturbed
from tpuplan.profiles.pricing.stagecost import StagePricer
from tpuplan.profiles.tflite.reader import parse_model

SIMULATED = "SIMULATED"
# The hidden truth: each term of the cost formula off by a known factor (1: as the specs say).
TRUE_FACTORS: dict[str, float] = {
    "overhead": 1.5,
    "compute": 0.8,
    "spill": 3.0,
    "link": 3.0,
    "host_ops": 1.25,
}


class VirtualClock:
    """Nanoseconds that pass only when a simulated invoke says so (thread-safe)."""

    def __init__(self) -> None:
        self._ns = 0
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            return self._ns

    def advance(self, ns: int) -> None:
        with self._lock:
            self._ns += ns


@dataclass(frozen=True)
class TrueStage:
    """A segment as the hidden truth prices it: its invoke (us) and the formula's stage values."""

    invoke_us: float
    values: dict[str, float]


class Simulator:
    """The hidden true device and host, the virtual clock, and the true time of any segment file."""

    def __init__(self, device: DeviceSpec, host: HostSpec, *, noise: float = 0.0, seed: int = 0) -> None:
        self.device, self.host, self.noise = device, host, noise
        self.clock = VirtualClock()
        self._rng = np.random.default_rng(seed)
        self._stages: dict[str, TrueStage] = {}
        self._lock = threading.Lock()

    def stage(self, content: bytes) -> TrueStage:
        """The true invoke and values of a segment file (priced on its own, cached by its sha256)."""
        key = hashlib.sha256(content).hexdigest()
        with self._lock:
            found = self._stages.get(key)
        if found is None:
            profile = build_profile(parse_model(content, Path(f"segment-{key[:12]}.tflite")), self.device, self.host)
            row = StagePricer(profile, self.device, self.host).row(0)
            k = len(profile.ops) - 1
            terms = {name: v[k] for name, v in row["terms"].items()}
            found = TrueStage(
                float(formula.invoke_part(terms)), {name: float(v[k]) for name, v in row["values"].items()}
            )
            with self._lock:
                self._stages[key] = found
        return found

    def ticker(self, content: bytes) -> Callable[[], None]:
        """What one invoke of this segment does to the clock: its true time passes (with the noise)."""
        us = self.stage(content).invoke_us

        def tick() -> None:
            factor = 1.0
            if self.noise > 0:
                with self._lock:
                    factor = float(1.0 + self.noise * self._rng.standard_normal())
            self.clock.advance(max(0, round(us * max(factor, 0.0) * 1000)))

        return tick


def true_specs(factors: Mapping[str, float] = TRUE_FACTORS) -> tuple[DeviceSpec, HostSpec]:
    """The default simulated truth: the edgetpu-usb preset and the default host, perturbed."""
    return perturbed(resolve_device("edgetpu-usb"), resolve_host(None), factors)


@lru_cache(maxsize=1)
def default_simulator() -> Simulator:
    """The simulator behind `--backend edgetpu-sim` (one per process)."""
    device, host = true_specs()
    return Simulator(device, host)
