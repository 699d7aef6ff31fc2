"""The cost of every contiguous segment a..b as one pipeline stage: dense integer tables for the planner.

A stage runs ops a..b, compiled on their own, on one device. On an Edge TPU the compiler maps the first
partition of supported ops (`profiles.edgetpu.placement`, which depends on where the segment starts) and the
host runs the rest. For one input, in microseconds:

  device  = invoke overhead + sum of its Edge TPU ops' time + streaming of the layers not cached
            + in_us_per_kib x KiB into the TPU part + out_us_per_kib x KiB out of it
  host    = sum of its host ops' time (measured on a CPU when the profile was measured)
  runner  = stage_us + stage_us_per_kib x KiB of the stage's boundary tensors (host work outside invoke)
  T       = device + host + runner (+ stream_extra_us when a layer streams)        the stage's time
  S       = serialized x runner + serialized_device x device                     its serialized share
  V       = bytes over a shared host controller / its rate (0 when not shared)    its bus time
  O       = stream_cold_us when a layer streams + upload_us_per_kib x KiB cached (fresh runs only)

Caching (the compiler's, fitted to all 635 segments of ../shared/edgetpu-measurements within 0.1 MiB):
the budget is onchip_bytes - io_reserve_frac x (bytes into and out of the Edge TPU part); layers are
taken largest first (ties in execution order), each cached when it is no larger than
max_cached_layer_bytes and still fits, else streamed, and the next one is tried.

A stage of a CPU device runs every op on the host: device = invoke overhead + its ops + copies.
Each row (one start a, every end b) is computed by `StagePricer.row`, the single definition; the tables
stack the rows and `stage_parts` reads one entry of a row back with its breakdown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

import numpy as np
import numpy.typing as npt

from tpuplan.compat import zip_strict
from tpuplan.profiles.build import price
from tpuplan.profiles.edgetpu.placement import first_tpu_partition
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_OPS, MAX_STAGE_US, describe  # MAX_OPS: the tables are n x n (140 MB)
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class StageParts:
    """One stage's breakdown; every time in microseconds, every size in bytes."""

    total_us: int
    device_us: int
    compute_us: int
    spill_us: int
    link_us: int
    host_ops_us: int
    runner_us: int
    serial_us: int
    bus_us: int
    oneoff_us: int
    uncalibrated_us: int
    tpu_ops: int
    host_ops: int
    onchip_bytes: int
    offchip_bytes: int
    param_bytes: int
    bytes_in: int
    bytes_out: int
    tpu_in_bytes: int
    tpu_out_bytes: int
    valid: bool
    fits: bool


class StagePricer:
    """Prices segments of one profile on one device and host, row by row (one start, every end)."""

    def __init__(self, profile: Profile, device: DeviceSpec, host: HostSpec) -> None:
        if len(profile.ops) > MAX_OPS:
            raise TpuplanError(f"the model has {len(profile.ops):,} ops; tpuplan plans models of up to {MAX_OPS:,}")
        prof = price(profile, device, host)  # always: the per-op prices follow from the profile's facts
        self.device, self.host, self.n = device, host, len(prof.ops)
        self.where = profile.model.path
        ops = prof.ops
        self.cpu = device.backend == "cpu"
        self.tpu_us = np.array([op.tpu_us for op in ops], dtype=np.int64)
        self.host_us = np.array([op.host_us for op in ops], dtype=np.int64)
        self.stream_us = np.array([op.stream_us for op in ops], dtype=np.int64)
        self.cached = np.array([op.cached_bytes for op in ops], dtype=np.int64)
        self.params = np.array([op.param_bytes for op in ops], dtype=np.int64)
        self.tpu_uncal = np.array([op.tpu_cost == "uncalibrated" for op in ops])
        self.host_uncal = np.array([op.host_cost == "uncalibrated" for op in ops])
        self.supported = [op.supported for op in ops]
        self.inputs = [op.inputs for op in ops]
        self.outputs = [op.outputs for op in ops]
        self.producer = {t: op.index for op in ops for t in op.outputs}
        self._tensor_arrays(prof)
        host_ops = [op.index for op in ops if not op.supported]
        feeds_tpu = [h for h in host_ops if any(self.supported[c] for c in self._consumers_of_op(h))]
        self.last_barrier = max(feeds_tpu, default=-1)

    def _tensor_arrays(self, prof: Profile) -> None:
        names = [t.name for t in prof.tensors]
        index = {name: k for k, name in enumerate(names)}
        self.t_bytes = np.array([t.bytes for t in prof.tensors], dtype=np.int64)
        self.t_prod = np.array([self.producer.get(name, -1) for name in names], dtype=np.int64)
        outs = {t.name for t in prof.outputs}
        self.t_out = np.array([name in outs for name in names])
        edges = sorted((index[t], op.index) for op in prof.ops for t in set(op.inputs))
        self.e_t = np.array([e[0] for e in edges], dtype=np.int64)
        self.e_c = np.array([e[1] for e in edges], dtype=np.int64)
        self.t_last = np.full(len(names), -1, dtype=np.int64)
        if len(edges):
            np.maximum.at(self.t_last, self.e_t, self.e_c)
        self._op_consumers: dict[int, set[int]] = {}
        for t, c in edges:
            p = int(self.t_prod[t])
            if p >= 0:
                self._op_consumers.setdefault(p, set()).add(c)

    def _consumers_of_op(self, k: int) -> set[int]:
        return self._op_consumers.get(k, set())

    def placement(self, a: int) -> Mask:
        """Which ops of a..n-1 the Edge TPU runs when a segment starts at a (all False on a CPU device)."""
        if self.cpu:
            return np.zeros(self.n - a, dtype=np.bool_)
        if a > self.last_barrier:
            return np.array(self.supported[a:], dtype=np.bool_)
        return np.array(first_tpu_partition(self.supported, self.inputs, self.outputs, self.producer, a))

    def _boundary(self, a: int, tpu_full: Mask) -> dict[str, I64]:
        """Bytes crossing into and out of the segment, and into and out of its Edge TPU part, per end b."""
        n, m = self.n, self.n - a
        diff = {k: np.zeros(m + 1, dtype=np.int64) for k in ("seg_in", "seg_out", "tpu_in", "tpu_out")}
        live = self.e_c >= a
        outside = self.t_prod[self.e_t] < a
        host_made = ~tpu_full[np.maximum(self.t_prod[self.e_t], 0)]
        for key, mask in (("seg_in", live & outside), ("tpu_in", live & tpu_full[self.e_c] & (outside | host_made))):
            tensors, first = np.unique(self.e_t[mask], return_index=True)
            np.add.at(diff[key], self.e_c[mask][first] - a, self.t_bytes[tensors])
        made = self.t_prod >= a
        host_use = np.zeros(len(self.t_bytes), dtype=np.bool_)
        host_use[np.unique(self.e_t[live & ~tpu_full[self.e_c]])] = True
        for key, mask, keep in (
            ("seg_out", made, self.t_out),
            ("tpu_out", made & tpu_full[np.maximum(self.t_prod, 0)], self.t_out | host_use),
        ):
            end = np.where(keep, n - 1, self.t_last - 1)[mask]
            start = self.t_prod[mask]
            ok = end >= start
            np.add.at(diff[key], start[ok] - a, self.t_bytes[mask][ok])
            np.add.at(diff[key], end[ok] + 1 - a, -self.t_bytes[mask][ok])
        return {k: np.cumsum(v[:m]) for k, v in diff.items()}

    def _caching(self, a: int, tpu: Mask, budget: I64) -> tuple[I64, I64, I64]:
        """(on-chip bytes, off-chip bytes, streaming us) per end b: largest layer first, skip what does not fit."""
        m = self.n - a
        sizes = np.where(tpu, self.cached[a:], 0)
        total = np.cumsum(sizes)
        largest = np.maximum.accumulate(sizes) if m else sizes
        limit = self.device.max_cached_layer_bytes
        fits = (total <= budget) & (largest <= limit)
        on, off, spill = np.where(fits, total, 0), np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
        cols = np.flatnonzero(~fits)
        if cols.size:
            order = sorted((j for j in range(m) if sizes[j] > 0 and j <= cols[-1]), key=lambda j: (-sizes[j], j))
            cum = np.zeros(cols.size, dtype=np.int64)
            for j in order:
                inside = cols >= j
                take = inside & (sizes[j] <= limit) & (cum + sizes[j] <= budget[cols])
                cum[take] += sizes[j]
                miss = inside & ~take
                off[cols[miss]] += sizes[j]
                spill[cols[miss]] += self.stream_us[a + j]
            on[cols] = cum
        return on, off, spill

    def row(self, a: int) -> dict[str, Any]:
        """Every quantity of the segments a..b for b = a..n-1 (arrays of length n - a)."""
        tpu = self.placement(a)
        tpu_full = np.zeros(self.n, dtype=np.bool_)
        tpu_full[a:] = tpu
        io = self._boundary(a, tpu_full)
        dev, host = self.device, self.host
        if self.cpu:
            return self._cpu_row(a, io)
        compute = np.cumsum(np.where(tpu, self.tpu_us[a:], 0))
        host_ops = np.cumsum(np.where(tpu, 0, self.host_us[a:]))
        io_tpu = io["tpu_in"] + io["tpu_out"]
        budget = np.floor(np.clip(dev.onchip_bytes - dev.io_reserve_frac * io_tpu, -(2.0**62), 2.0**62)).astype(
            np.int64
        )
        on, off, spill = self._caching(a, tpu, budget)
        link = self._us(
            (dev.link.in_us_per_kib * io["tpu_in"] + dev.link.out_us_per_kib * io["tpu_out"]) / 1024,
            a,
            "tensor transfers",
        )
        device_us = math.ceil(dev.invoke_overhead_us - 1e-9) + compute + spill + link
        runner = self._runner(io, a)
        streams = off > 0
        total = device_us + host_ops + runner + np.where(streams, math.ceil(host.stream_extra_us - 1e-9), 0)
        bus = self._us((io_tpu + off) / host.bus_bytes_per_us, a, "the shared bus") if host.bus_shared else 0 * total
        upload = dev.link.upload_us_per_kib * on / 1024 if host.fresh_upload else 0 * on
        oneoff = self._us(np.where(streams, host.stream_cold_us, 0) + upload, a, "one-off uploads")
        uncal = np.cumsum(np.where(tpu, self.tpu_us[a:] * self.tpu_uncal[a:], self.host_us[a:] * self.host_uncal[a:]))
        return self._checked(
            a,
            {
                **io,
                "total": total,
                "device": device_us,
                "compute": compute,
                "spill": spill,
                "link": link,
                "host_ops": host_ops,
                "runner": runner,
                "serial": self._serial(runner, device_us, a),
                "bus": bus,
                "oneoff": oneoff,
                "uncal": uncal,
                "tpu_ops": np.cumsum(tpu),
                "on": on,
                "off": off,
                "params": np.cumsum(self.params[a:]),
                "valid": np.cumsum(tpu) > 0,
                "fits": off == 0,
            },
        )

    def _runner(self, io: dict[str, I64], a: int) -> I64:
        kib = (io["seg_in"] + io["seg_out"]) / 1024
        return self._us(self.host.stage_us + self.host.stage_us_per_kib * kib, a, "the runner's host work")

    def _serial(self, runner: I64, device_us: I64, a: int) -> I64:
        h = self.host
        return self._us(h.serialized * runner + h.serialized_device * device_us, a, "serialized host work")

    def _us(self, x: F64 | I64 | float, a: int, what: str) -> I64:
        """Microseconds rounded up, refused past MAX_STAGE_US before the conversion to int64 could wrap."""
        us = np.ceil(np.asarray(x, dtype=np.float64) - 1e-9)
        if us.size and not (np.isfinite(us).all() and us.max() <= MAX_STAGE_US):  # NaN fails too
            self._refuse(a, what, float(np.nanmax(us)) if not np.isnan(us).all() else math.nan)
        return us.astype(np.int64)

    def _checked(self, a: int, row: dict[str, Any]) -> dict[str, Any]:
        """Sums of bounded parts stay far inside int64; their totals must stay within MAX_STAGE_US."""
        for key in ("total", "serial", "bus", "oneoff"):
            top = int(np.max(row[key], initial=0))
            if top > MAX_STAGE_US:
                self._refuse(a, f"its {key} time", top)
        return row

    def _refuse(self, a: int, what: str, us: float) -> NoReturn:
        raise TpuplanError(
            f"{self.where}: a stage from op {a} on {self.device.name} would take {describe(us)} us for {what}, "
            f"beyond tpuplan's bound of {MAX_STAGE_US:,} us; the model's sizes or the device's or host's costs "
            "are out of range"
        )

    def _cpu_row(self, a: int, io: dict[str, I64]) -> dict[str, Any]:
        dev = self.device
        ops = np.cumsum(self.host_us[a:])
        copies = self._us(
            (dev.link.in_us_per_kib * io["seg_in"] + dev.link.out_us_per_kib * io["seg_out"]) / 1024, a, "tensor copies"
        )
        device_us = math.ceil(dev.invoke_overhead_us - 1e-9) + ops + copies
        runner = self._runner(io, a)
        zero = np.zeros(self.n - a, dtype=np.int64)
        return self._checked(
            a,
            {
                **io,
                "total": device_us + runner,
                "device": device_us,
                "compute": ops,
                "spill": zero,
                "link": copies,
                "host_ops": zero,
                "runner": runner,
                "serial": self._serial(runner, device_us, a),
                "bus": zero,
                "oneoff": zero,
                "uncal": np.cumsum(self.host_us[a:] * self.host_uncal[a:]),
                "tpu_ops": zero,
                "on": zero,
                "off": zero,
                "params": np.cumsum(self.params[a:]),
                "valid": np.ones(self.n - a, dtype=np.bool_),
                "fits": np.ones(self.n - a, dtype=np.bool_),
            },
        )


@dataclass(frozen=True)
class StageCostTable:
    """Everything the planner needs about one (profile, device, host), as n x n integer matrices indexed
    [a, b] for the stage of ops a..b (entries with b < a are never valid)."""

    device_name: str
    backend: str
    n: int
    time_us: I64
    serial_us: I64
    bus_us: I64
    oneoff_us: I64
    valid: Mask
    onchip: Mask
    pricer: StagePricer | None = field(default=None, compare=False, repr=False)

    def copied_time_us(self, a: int, b: int, copies: int) -> int:
        """The stage's time per input with `copies` devices taking inputs in turn, each copy with its own
        device and runner thread: its work divides among the copies except its serialized share (work
        under the one lock, which no number of threads shortens)."""
        total = int(self.time_us[a, b])
        if copies == 1:
            return total
        fixed = min(int(self.serial_us[a, b]), total)
        return -(-(total - fixed) // copies) + fixed

    def stage_time_us(self, a: int, b: int) -> int:
        self._check(a, b)
        return int(self.time_us[a, b])

    def fits_on_chip(self, a: int, b: int) -> bool:
        self._check(a, b)
        return bool(self.onchip[a, b])

    def _check(self, a: int, b: int) -> None:
        if not 0 <= a <= b < self.n:
            raise ValueError(f"bad stage {a}..{b} for {self.n} ops")

    def stage_parts(self, a: int, b: int) -> StageParts:
        """The breakdown of stage a..b, read from the same row the tables were built from."""
        self._check(a, b)
        if self.pricer is None:
            t = int(self.time_us[a, b])
            return StageParts(
                t,
                t,
                t,
                0,
                0,
                0,
                0,
                int(self.serial_us[a, b]),
                int(self.bus_us[a, b]),
                int(self.oneoff_us[a, b]),
                0,
                b - a + 1,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                bool(self.valid[a, b]),
                bool(self.onchip[a, b]),
            )
        r, k = self.pricer.row(a), b - a

        def at(key: str) -> int:
            return int(r[key][k])

        return StageParts(
            total_us=at("total"),
            device_us=at("device"),
            compute_us=at("compute"),
            spill_us=at("spill"),
            link_us=at("link"),
            host_ops_us=at("host_ops"),
            runner_us=at("runner"),
            serial_us=at("serial"),
            bus_us=at("bus"),
            oneoff_us=at("oneoff"),
            uncalibrated_us=at("uncal"),
            tpu_ops=at("tpu_ops"),
            host_ops=b - a + 1 - at("tpu_ops"),
            onchip_bytes=at("on"),
            offchip_bytes=at("off"),
            param_bytes=at("params"),
            bytes_in=at("seg_in"),
            bytes_out=at("seg_out"),
            tpu_in_bytes=at("tpu_in"),
            tpu_out_bytes=at("tpu_out"),
            valid=bool(r["valid"][k]),
            fits=bool(r["fits"][k]),
        )


@dataclass(frozen=True)
class PipelineCost:
    """The pipeline-level numbers of one cut list (all integer us); see planner.costs for the formulas."""

    period_us: int
    latency_us: int
    oneoff_us: int
    bound: Literal["stage", "serialized", "bus"]  # what sets the period

    def per_input_us(self, batch: int) -> float:
        """Time per input of a batch pushed at once into a fresh pipeline: (O + L + (N - 1) P) / N."""
        return (self.oneoff_us + self.latency_us + (batch - 1) * self.period_us) / batch


def start_us(tables: Sequence[StageCostTable]) -> int:
    pricer = tables[0].pricer
    return math.ceil(pricer.host.start_us - 1e-9) if pricer is not None else 0


def pipeline_cost(
    tables: Sequence[StageCostTable], cuts: Sequence[int], copies: Sequence[int] | None = None
) -> PipelineCost:
    """Period P = max(slowest stage, sum of serialized shares, sum of bus times), latency L = sum of stage
    times, one-off O = start + sum of stage one-offs, for the plan `cuts` (stage k on tables[k]).

    With copies, a stage's time in the period is its time with its copies taking inputs in turn
    (`copied_time_us`); one input still goes through one copy of each stage (the latency), the serialized
    and bus work of every input is still done, and each copy pays the stage's one-off (its own upload).
    """
    ends = [*cuts, tables[0].n - 1]
    pairs = list(zip_strict([0, *(c + 1 for c in cuts)], ends))
    reps = list(copies) if copies is not None else [1] * len(pairs)
    each = [
        (
            t.copied_time_us(a, b, r),
            int(t.time_us[a, b]),
            int(t.serial_us[a, b]),
            int(t.bus_us[a, b]),
            r * int(t.oneoff_us[a, b]),
        )
        for t, (a, b), r in zip_strict(tables, pairs, reps)
    ]
    slowest = max(e[0] for e in each)
    serial, bus = sum(e[2] for e in each), sum(e[3] for e in each)
    period = max(slowest, serial, bus)
    bound: Literal["stage", "serialized", "bus"] = (
        "stage" if period == slowest else ("serialized" if period == serial else "bus")
    )
    return PipelineCost(period, sum(e[1] for e in each), start_us(tables) + sum(e[4] for e in each), bound)


def stage_table(profile: Profile, device: DeviceSpec | None = None, host: HostSpec | None = None) -> StageCostTable:
    """The dense tables of a profile on one device and host (the profile's own when None)."""
    dev = device or profile.device
    pricer = StagePricer(profile, dev, host or resolve_host(profile.host))
    n = pricer.n
    mats = {k: np.zeros((n, n), dtype=np.int64) for k in ("total", "serial", "bus", "oneoff")}
    masks = {k: np.zeros((n, n), dtype=np.bool_) for k in ("valid", "fits")}
    for a in range(n):
        r = pricer.row(a)
        for k, mat in mats.items():
            mat[a, a:] = r[k]
        for k, msk in masks.items():
            msk[a, a:] = r[k]
    return StageCostTable(
        dev.name,
        dev.backend,
        n,
        mats["total"],
        mats["serial"],
        mats["bus"],
        mats["oneoff"],
        masks["valid"],
        masks["fits"],
        pricer,
    )
