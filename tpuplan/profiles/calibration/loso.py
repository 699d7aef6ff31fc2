"""Leave one source out: how far the calibrated model carries to data it was not fitted to, and the
plausible variants of it that tell how sure we are.

- One file (or published column) out: the rest refitted, the file predicted. Each refit is a plausible
  parameter set: kept as a scenario of the presets (`pricing.scenarios`), and its spread over the refits
  is each coefficient's uncertainty.
- One group out (the study's files, or the published columns): the device (the chip and its links) is
  fitted on the other group alone; the left-out group's own hosts (its machine's side of an invoke, its
  runners) are then fitted to its rows with that device frozen, because no other source can say anything
  about a machine; its rows are predicted. This is the check that the device model carries over.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tpuplan.compat import zip_strict
from tpuplan.profiles.calibration.fit import Fitted, fit_specs, predict_rows
from tpuplan.profiles.calibration.measurements import MeasuredFile
from tpuplan.profiles.calibration.result import CalibrationPoint
from tpuplan.profiles.pricing.coefficients import get_coefficient
from tpuplan.profiles.pricing.device import DeviceSpec, Scenario
from tpuplan.profiles.pricing.host import HostSpec


@dataclass(frozen=True)
class Holdout:
    """One refit without `left_out` and its prediction of what was left out."""

    left_out: str
    points: list[CalibrationPoint]
    fit: Fitted

    @property
    def median(self) -> float:
        return statistics.median(p.rel_error for p in self.points)

    def value(self, name: str) -> float | None:
        i = self.fit.space.index.get(name)
        return None if i is None or not self.fit.used[i] else float(self.fit.theta[i])


def _device_params(fit: Fitted) -> dict[str, float]:
    """The refit's device parameters (those setting a device coefficient), by name."""
    return {
        p.name: float(v)
        for p, v, u in zip_strict(fit.space.params, fit.theta, fit.used)
        if u and any(spec.startswith("device:") for spec, _ in p.targets)
    }


def leave_one_file_out(
    files: Sequence[MeasuredFile], devices: Mapping[str, DeviceSpec], hosts: Mapping[str, HostSpec], tile: int
) -> list[Holdout]:
    """Every file left out in turn (the chip's memory layout still fitted to every memory report)."""
    out = []
    for f in files:
        rest = [g for g in files if g.name != f.name]
        fit = fit_specs(rest, devices, hosts, tiles=(tile,), memory_from=files)
        out.append(Holdout(f.name, predict_rows([f], {**devices, **fit.devices}, {**hosts, **fit.hosts}), fit))
    return out


def leave_one_group_out(
    files: Sequence[MeasuredFile], devices: Mapping[str, DeviceSpec], hosts: Mapping[str, HostSpec], tile: int
) -> list[Holdout]:
    """Every group (`RunSpec.group`) left out in turn: the device from the others, the group's hosts fitted
    to its own rows with that device frozen, the group predicted."""
    out = []
    for group in dict.fromkeys(f.run.group for f in files):
        inside = [f for f in files if f.run.group != group]
        held = [f for f in files if f.run.group == group]
        device_fit = fit_specs(inside, devices, hosts, tiles=(tile,), memory_from=files)
        frozen = _device_params(device_fit)
        base_devices = {**devices, **device_fit.devices}
        host_fit = fit_specs(held, base_devices, hosts, frozen=frozen, tiles=(tile,), memory_from=files)
        points = predict_rows(held, {**base_devices, **host_fit.devices}, {**hosts, **host_fit.hosts})
        out.append(Holdout(group, points, host_fit))
    return out


def scenarios_of(spec: DeviceSpec | HostSpec, kind: str, holdouts: Sequence[Holdout]) -> list[Scenario]:
    """A spec's coefficients in every refit that fitted some of them: one scenario per left-out source."""
    out = []
    chip = "device:*" if isinstance(spec, DeviceSpec) and spec.backend == "edgetpu" else ""
    for h in holdouts:
        fitted = h.fit.devices.get(spec.name) if kind == "device" else h.fit.hosts.get(spec.name)
        if fitted is None:
            continue
        paths = {
            path
            for p, u in zip_strict(h.fit.space.params, h.fit.used)
            if u
            for target, path in p.targets
            if target in (f"{kind}:{spec.name}", chip)
        }
        if paths:
            values = {path: round(get_coefficient(fitted, path), 4) for path in sorted(paths)}
            out.append(Scenario(name=f"without {h.left_out}", values=values))
    return out
