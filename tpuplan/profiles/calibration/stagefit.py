"""Refit a device and host to stage times measured on the user's own hardware (`plan verify` reports).

Each stage a verify report timed alone is one calibration row: one invoke of a known segment of a known
model on a known device and host, the formula's invoke part (`formula.invoke_part`). The fit is the
calibration's own (`calibration.params`, `calibration.timing`): the same parameters with their physical
ranges, the same linear forms of the formula's terms (`calibration.segments`). What differs is how much
a handful of stage times may move:

- a segment timed more than once (the same report given twice, or the same stage in two plans) is one
  point, at the median of its times: repeating evidence does not make it stronger;
- the parameters are freed one at a time, each time the one that explains most of what is still
  unexplained among those the points can tell apart from the ones already freed (a parameter whose
  plausible change moves no prediction, or moves them only as the freed ones already do, is not
  identified), never more than one fewer than the points, and no more once the stages are predicted
  within measurement noise;
- every freed parameter keeps a wide prior at its current value (it only steadies the fit), and every
  other one stays exactly where it was, reported as not identified by these times (never set to 0);
- fewer than two distinct points: no fit at all (`TooFewPoints`).

The specs written back are validated by the same reader that will load them.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from tpuplan.compat import zip_strict
from tpuplan.profiles.calibration.params import (
    CHIP,
    CHIP_PARAMS,
    Param,
    device_link_params,
    host_ops_params,
    machine_params,
)
from tpuplan.profiles.calibration.paramspace import ParamSpace
from tpuplan.profiles.calibration.segments import PricedOps, check_segment, priced, segment_forms
from tpuplan.profiles.calibration.specs import apply_params
from tpuplan.profiles.calibration.timing import RowTerms, TimeModel, fit_times
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.device import Calibration, DeviceSpec, device_json
from tpuplan.profiles.pricing.host import HostSpec, host_json
from tpuplan.profiles.pricing.stagecost import StagePricer

F64 = npt.NDArray[np.float64]
PRIOR_REL = 1.0  # a parameter's plausible change: this share of its current value ...
PRIOR_RANGE = 0.1  # ... or this share of its plausible range, when that is more (a parameter now at 0)
PRIOR_WIDTH = 10.0  # a freed parameter's prior: its current value, give or take this many plausible changes
LEAST_SQUARES = 10.0  # the fit's soft-L1 scale: relative errors this large still count squared
IDENTIFIABLE = 0.02  # a plausible change must move the predictions by 2% beyond what the others do
NOISE = 0.01  # stages predicted within 1% (RMS) need no further parameter
MIN_GAIN = 0.02  # a parameter that explains less than 2% of what is left is not freed
Status = Literal["fitted", "not identified", "no data"]


class TooFewPoints(TpuplanError):
    """Fewer distinct stage times than a fit of one parameter needs (two)."""


@dataclass(frozen=True)
class TimedSegment:
    """Ops first_op..last_op of `profile` on a device and host (names), and its measured time."""

    profile: Profile
    first_op: int
    last_op: int
    device: str
    host: str
    measured_us: float


@dataclass(frozen=True)
class StageTime(TimedSegment):
    """One stage timed alone on hardware, and where the time was read."""

    source: str

    @property
    def key(self) -> tuple[str, int, int, str, str]:
        return (self.profile.model.sha256, self.first_op, self.last_op, self.device, self.host)


@dataclass(frozen=True)
class Point(TimedSegment):
    """Distinct stage times: a segment on a device and host, at the median of every time it was given."""

    sources: tuple[str, ...]


@dataclass(frozen=True)
class ParamResult:
    name: str
    before: float
    after: float
    low: float
    high: float
    status: Status
    why: str

    @property
    def at_edge(self) -> Literal["", "low", "high"]:
        if self.status != "fitted":
            return ""
        return (
            "low"
            if self.after <= self.low * (1 + 1e-6) + 1e-9
            else "high"
            if self.after >= self.high * (1 - 1e-6)
            else ""
        )


@dataclass(frozen=True)
class StageFit:
    """The refitted specs (by name; unchanged ones too), every parameter's fate, and each point predicted
    by the planner before and after (whole microseconds, its own pricer)."""

    devices: dict[str, DeviceSpec]
    hosts: dict[str, HostSpec]
    params: list[ParamResult]
    points: list[Point]
    before_us: list[int]
    after_us: list[int]

    def median_error(self, predicted: Sequence[int]) -> float:
        return float(statistics.median(abs(p - q.measured_us) / q.measured_us for p, q in zip(predicted, self.points)))

    @property
    def fitted(self) -> list[str]:
        return [p.name for p in self.params if p.status == "fitted"]


def distinct_points(times: Sequence[StageTime]) -> list[Point]:
    """One point per segment, device and host: the median of its times (duplicates counted once)."""
    groups: dict[tuple[str, int, int, str, str], list[StageTime]] = {}
    for t in times:
        check_segment(len(t.profile.ops), (t.first_op, t.last_op), t.source)
        if not t.measured_us > 0:
            raise TpuplanError(f"{t.source}: a stage time of {t.measured_us} us cannot be fitted")
        groups.setdefault(t.key, []).append(t)
    return [
        Point(
            g[0].profile,
            g[0].first_op,
            g[0].last_op,
            g[0].device,
            g[0].host,
            float(statistics.median(t.measured_us for t in g)),
            tuple(t.source for t in g),
        )
        for g in groups.values()
    ]


def _space(devices: Mapping[str, DeviceSpec], hosts: Mapping[str, HostSpec]) -> ParamSpace:
    """The parameters of these specs, each starting at its current value with a prior there."""
    tpus = [name for name, d in devices.items() if d.backend == "edgetpu"]
    params: list[Param] = [*CHIP_PARAMS, *(p for d in tpus for p in device_link_params(d))]
    params += [p for h in hosts for p in (*machine_params(h), *host_ops_params(h))]
    space = ParamSpace(params, devices, hosts)
    now = space.base_theta()
    adjusted = [
        replace(p, init=float(v), prior=(float(v), PRIOR_WIDTH * _scale(p, float(v))), tie=None)
        for p, v in zip_strict(space.params, now)
    ]
    return ParamSpace(adjusted, devices, hosts)


def _scale(p: Param, value: float) -> float:
    return max(PRIOR_REL * abs(value), PRIOR_RANGE * (p.high - p.low), 1e-9)


def _model(points: Sequence[Point], space: ParamSpace) -> TimeModel:
    cache: dict[tuple[str, str, str], tuple[StagePricer, PricedOps]] = {}
    rows = []
    for p in points:
        key = (p.profile.model.sha256, p.device, p.host)
        if key not in cache:
            cache[key] = priced(p.profile, space.devices[p.device], space.hosts[p.host])
        pricer, ops = cache[key]
        tile = space.devices[p.device].stream_tile_pixels
        forms = segment_forms(pricer, ops, space, (p.device, p.host), (p.first_op, p.last_op), tile, p.sources[0])
        rows.append(RowTerms([forms], p.device, p.host, False, 1, p.measured_us, 1.0))
    return TimeModel(space, rows)


def select_free(jac: F64, resid: F64, used: npt.NDArray[np.bool_], most: int) -> list[int]:
    """The parameters to free, in order (forward selection on the linearised relative errors): each time the
    identifiable column that removes most of the remaining squared error, while it removes at least
    MIN_GAIN of it, the rest is above NOISE and fewer than `most` are free."""
    n = len(resid)
    free: list[int] = []
    basis = np.zeros((n, 0))
    left = resid.copy()
    while len(free) < most and np.sqrt(np.mean(left**2)) > NOISE:
        best, gain, best_col = -1, 0.0, np.zeros(n)
        for j in np.flatnonzero(used):
            if j in free:
                continue
            col = jac[:, j] - basis @ (basis.T @ jac[:, j])
            norm = float(np.linalg.norm(col))
            if norm < IDENTIFIABLE:
                continue
            g = float(col @ left) ** 2 / norm**2
            if g > gain * (1 + 1e-9):  # on a tie the first: the device's before the host's
                best, gain, best_col = int(j), g, col / norm
        if best < 0 or gain < MIN_GAIN * float(left @ left):
            break
        free.append(best)
        basis = np.column_stack([basis, best_col])
        left = left - best_col * float(best_col @ left)
    return free


def _statuses(space: ParamSpace, used: npt.NDArray[np.bool_], free: Sequence[int]) -> list[Status]:
    return ["fitted" if i in free else "not identified" if used[i] else "no data" for i in range(space.n)]


def fit_stage_times(
    times: Sequence[StageTime], devices: Mapping[str, DeviceSpec], hosts: Mapping[str, HostSpec], source: str
) -> StageFit:
    """The specs refitted to the stage times (see the module); `source` says where the times came from."""
    points = distinct_points(times)
    if len(points) < 2:
        raise TooFewPoints(
            f"{len(points)} distinct stage time{'s' if len(points) != 1 else ''}: a refit needs at least one more "
            "than the parameters it moves (2 for one); verify another plan, or one with more stages"
        )
    for p in points:
        if p.device not in devices or p.host not in hosts:
            raise TpuplanError(f"{p.sources[0]}: no spec given for device {p.device!r} or host {p.host!r}")
    space = _space(devices, hosts)
    model = _model(points, space)
    now = space.base_theta()
    pred, jac = model.evaluate(now)
    used = model.used()
    sigma = np.array([_scale(p, float(v)) for p, v in zip_strict(space.params, now)])
    free = select_free(jac * sigma / model.y[:, None], (model.y - pred) / model.y, used, len(points) - 1)
    mask = np.zeros(space.n, dtype=bool)
    mask[free] = True
    theta = fit_times(model, mask, now, soft=LEAST_SQUARES) if free else now
    new_devices, new_hosts = apply_params(theta, space, mask, devices, hosts)
    statuses = _statuses(space, used, free)
    params = [
        ParamResult(p.name, float(b), float(a), p.low, p.high, s, p.why)
        for p, b, a, s in zip_strict(space.params, now, theta, statuses)
    ]
    note = _note(points, params, source)
    targets = [t for p, s in zip_strict(space.params, statuses) if s == "fitted" for t in p.targets]
    out_devices = {
        n: _validated_device(_noted(d, note, len(points), _paths(targets, f"device:{n}", d.backend == "edgetpu")))
        for n, d in new_devices.items()
    }
    out_hosts = {
        n: _validated_host(_noted(h, note, len(points), _paths(targets, f"host:{n}", False)))
        for n, h in new_hosts.items()
    }
    return StageFit(
        out_devices,
        out_hosts,
        params,
        points,
        _planner_invoke(points, devices, hosts),
        _planner_invoke(points, out_devices, out_hosts),
    )


def _paths(targets: Sequence[tuple[str, str]], spec: str, chip: bool) -> set[str]:
    """The coefficient paths of one spec that the fit set (the chip's too, on an Edge TPU device)."""
    return {path for where, path in targets if where == spec or (chip and where == CHIP)}


def _planner_invoke(
    points: Sequence[Point], devices: Mapping[str, DeviceSpec], hosts: Mapping[str, HostSpec]
) -> list[int]:
    """The planner's own prediction of each point: stage a..b's invoke part, whole microseconds."""
    cache: dict[tuple[str, str, str], StagePricer] = {}
    out = []
    for p in points:
        key = (p.profile.model.sha256, p.device, p.host)
        if key not in cache:
            cache[key] = priced(p.profile, devices[p.device], hosts[p.host])[0]
        row = cache[key].row(p.first_op)
        k = p.last_op - p.first_op
        out.append(int(formula.invoke_part({name: v[k] for name, v in row["terms"].items()})))
    return out


def _note(points: Sequence[Point], params: Sequence[ParamResult], source: str) -> str:
    fitted = [f"{p.name} {p.before:.4g} -> {p.after:.4g}" for p in params if p.status == "fitted"]
    held = [p.name for p in params if p.status == "not identified"]
    return (
        f"refitted to {len(points)} distinct stage time(s) from {source}: "
        + ("; ".join(fitted) if fitted else "nothing moved")
        + (f"; not identified by these times, kept: {', '.join(held)}" if held else "")
    )


def _noted(spec: DeviceSpec | HostSpec, note: str, points: int, fitted: set[str]) -> DeviceSpec | HostSpec:
    """The spec with the refit in its calibration (its scenarios no longer vary what was refitted); as it
    was when nothing of it was refitted."""
    if not fitted:
        return spec
    old = spec.calibration
    scenarios = []
    for s in old.scenarios if old is not None else []:
        kept = {k: v for k, v in s.values.items() if k not in fitted}
        if kept:
            scenarios.append(s.model_copy(update={"values": kept}))
    before = f" (before: {old.source})" if old is not None and old.source else ""
    cal = Calibration(source=(note + before)[:4000], points=points, scenarios=scenarios)
    return spec.model_copy(update={"calibration": cal})


def _validated_device(spec: DeviceSpec | HostSpec) -> DeviceSpec:
    """Read back as `resolve_device` reads a file: a spec tpuplan would refuse is never handed on."""
    assert isinstance(spec, DeviceSpec)
    return DeviceSpec.model_validate_json(device_json(spec))


def _validated_host(spec: DeviceSpec | HostSpec) -> HostSpec:
    assert isinstance(spec, HostSpec)
    return HostSpec.model_validate_json(host_json(spec))
