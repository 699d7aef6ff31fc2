"""The cost of every contiguous segment a..b as one pipeline stage, one start at a time.

A stage runs ops a..b, compiled on their own, on one device. On an Edge TPU the compiler maps the first
partition of supported ops (`profiles.edgetpu.placement`, which depends on where the segment starts) and
the host runs the rest. `StagePricer.row(a)` works out, for every end b, the stage quantities the cost
formula reads (`profiles.pricing.formula.STAGE_QUANTITIES`: op-price sums, bytes across its boundary and
its Edge TPU part's, on- and off-chip bytes), then the formula's terms and stage values (T, S, V, O),
each rounded up to whole microseconds. The pricer knows what a stage holds; the formula what it costs.

Caching (the compiler's, fitted to all 635 segments of ../shared/edgetpu-measurements within 0.1 MiB):
the budget is onchip_bytes - io_reserve_frac x (bytes into and out of the Edge TPU part); layers are
taken largest first (ties in execution order), each cached when it is no larger than
max_cached_layer_bytes and still fits, else streamed, and the next one is tried.

A stage of a CPU device runs every op on the host CPU: its "compute" is the host prices of all its ops
and its "link" the copies of its boundary tensors; nothing streams and nothing crosses a shared bus.
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from tpuplan.profiles.build import price
from tpuplan.profiles.edgetpu.placement import first_tpu_partition
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_OPS, MAX_STAGE_US, describe  # MAX_OPS: the tables are n x n (140 MB)
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.formula import stream_passes
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.profiles.pricing.opcost import out_pixels

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
KIB = formula.KIB


class StagePricer:
    """Prices segments of one profile on one device and host, row by row (one start, every end)."""

    def __init__(self, profile: Profile, device: DeviceSpec, host: HostSpec) -> None:
        if len(profile.ops) > MAX_OPS:
            raise TpuplanError(f"the model has {len(profile.ops):,} ops; tpuplan plans models of up to {MAX_OPS:,}")
        prof = price(profile, device, host)  # always: the per-op prices follow from the profile's facts
        self.device, self.host, self.n = device, host, len(prof.ops)
        self.coef = formula.spec_coefficients(device, host)
        self.where = profile.model.path
        ops = prof.ops
        self.cpu = device.backend == "cpu"
        self.tpu_us = np.array([op.tpu_us for op in ops], dtype=np.int64)
        self.host_us = np.array([op.host_us for op in ops], dtype=np.int64)
        self.stream_us = np.array([op.stream_us for op in ops], dtype=np.int64)
        shapes = {t.name: t.shape for t in prof.tensors}
        tile = device.stream_tile_pixels
        self.stream_bytes = np.array(  # bytes over the link per input when the layer streams
            [op.cached_bytes * stream_passes(out_pixels([shapes[t] for t in op.outputs]), tile) for op in ops],
            dtype=np.int64,
        )
        self.cached = np.array([op.cached_bytes for op in ops], dtype=np.int64)
        self.params = np.array([op.param_bytes for op in ops], dtype=np.int64)
        self.tpu_uncal = np.array([op.tpu_cost == "uncalibrated" for op in ops])
        self.host_uncal = np.array([op.host_cost == "uncalibrated" for op in ops])
        self.supported = [op.supported for op in ops]
        self.inputs = [op.inputs for op in ops]
        self.outputs = [op.outputs for op in ops]
        self.producer = {t: op.index for op in ops for t in op.outputs}
        self._tensor_arrays(prof)
        self.measured = {  # stages timed on this device and host (plan verify): whole us, kept as measured
            (m.first_op, m.last_op): formula.whole_us(m.invoke_us)
            for m in profile.measured_stages
            if m.device == device.name and m.host == host.name
        }
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

    def _caching(self, a: int, tpu: Mask, budget: I64) -> tuple[I64, I64, I64, I64]:
        """(on-chip bytes, off-chip bytes, streaming us, bytes streamed per input) per end b: largest layer
        first, skip what does not fit."""
        m = self.n - a
        sizes = np.where(tpu, self.cached[a:], 0)
        total = np.cumsum(sizes)
        largest = np.maximum.accumulate(sizes) if m else sizes
        limit = self.device.max_cached_layer_bytes
        fits = (total <= budget) & (largest <= limit)
        on, off, spill = np.where(fits, total, 0), np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
        streamed = np.zeros(m, dtype=np.int64)
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
                streamed[cols[miss]] += self.stream_bytes[a + j]
            on[cols] = cum
        return on, off, spill, streamed

    def row(self, a: int) -> dict[str, Any]:
        """Every quantity of the segments a..b for b = a..n-1 (arrays of length n - a): the boundary
        bytes, "terms" and "values" (the formula's, whole microseconds) and what the stage holds."""
        tpu = self.placement(a)
        tpu_full = np.zeros(self.n, dtype=np.bool_)
        tpu_full[a:] = tpu
        io = self._boundary(a, tpu_full)
        m = self.n - a
        zero = np.zeros(m, dtype=np.int64)
        if self.cpu:  # every op on the host CPU, priced by the host; the boundary tensors are copied
            tpu_count, on, off, spill, streamed = zero, zero, zero, zero, zero
            compute, host_ops = np.cumsum(self.host_us[a:]), zero
            tpu_in, tpu_out, bus_in, bus_out = io["seg_in"], io["seg_out"], zero, zero
        else:
            tpu_count = np.cumsum(tpu)
            compute = np.cumsum(np.where(tpu, self.tpu_us[a:], 0))
            host_ops = np.cumsum(np.where(tpu, 0, self.host_us[a:]))
            tpu_in, tpu_out = io["tpu_in"], io["tpu_out"]
            dev = self.device
            reserve = dev.io_reserve_frac * (tpu_in + tpu_out)
            budget = np.floor(np.clip(dev.onchip_bytes - reserve, -(2.0**62), 2.0**62)).astype(np.int64)
            on, off, spill, streamed = self._caching(a, tpu, budget)
            bus_in, bus_out = tpu_in + streamed, tpu_out
        q = {
            "one": np.ones(m),
            "edgetpu": (tpu_count > 0).astype(np.float64),
            "tpu_ops": tpu_count.astype(np.float64),
            "edgetpu_io_kib": zero if self.cpu else (tpu_in + tpu_out) / KIB,
            "compute": compute,
            "spill": spill,
            "host_ops": host_ops,
            "tpu_in_kib": tpu_in / KIB,
            "tpu_out_kib": tpu_out / KIB,
            "seg_kib": (io["seg_in"] + io["seg_out"]) / KIB,
            "onchip_kib": on / KIB,
            "bus_in_kib": bus_in / KIB,
            "bus_out_kib": bus_out / KIB,
            "streams": (off > 0).astype(np.float64),
            "stream_kib": streamed / KIB,
        }
        terms = formula.stage_terms(self.coef, q, lambda name, x: self._us(x, a, name))
        measured = self._measured_row(a, m)
        values = formula.stage_values(terms, self.coef, lambda name, x: self._us(x, a, name), measured)
        uncal = np.where(tpu, self.tpu_us[a:] * self.tpu_uncal[a:], self.host_us[a:] * self.host_uncal[a:])
        return self._checked(
            a,
            {
                **io,
                "q": q,
                "terms": terms,
                "values": values,
                "uncal": np.cumsum(self.host_us[a:] * self.host_uncal[a:]) if self.cpu else np.cumsum(uncal),
                "tpu_ops": tpu_count,
                "host_ops": host_ops,
                "on": on,
                "off": off,
                "params": np.cumsum(self.params[a:]),
                "valid": np.ones(m, dtype=np.bool_) if self.cpu else tpu_count > 0,
                "fits": off == 0,
                "measured": measured,
            },
        )

    def _measured_row(self, a: int, m: int) -> F64 | None:
        """The measured invoke of every stage a..b that was timed (NaN where not); None when none was."""
        ends = {b: us for (first, b), us in self.measured.items() if first == a}
        if not ends:
            return None
        out = np.full(m, np.nan)
        for b, us in ends.items():
            out[b - a] = us
        return out

    def _us(self, x: F64 | I64 | float, a: int, what: str) -> I64:
        """Microseconds rounded up, refused past MAX_STAGE_US before the conversion to int64 could wrap."""
        us = np.ceil(np.asarray(x, dtype=np.float64) - 1e-9)
        if us.size and not (np.isfinite(us).all() and us.max() <= MAX_STAGE_US):  # NaN fails too
            self._refuse(a, f"its {what} time", float(np.nanmax(us)) if not np.isnan(us).all() else math.nan)
        out: I64 = np.maximum(us, 0).astype(np.int64)
        return out

    def _checked(self, a: int, row: dict[str, Any]) -> dict[str, Any]:
        """Sums of bounded parts stay far inside int64; the stage values must stay within MAX_STAGE_US."""
        for key, value in row["values"].items():
            top = int(np.max(value, initial=0))
            if top > MAX_STAGE_US:
                self._refuse(a, f"its {key} time", top)
        return row

    def _refuse(self, a: int, what: str, us: float) -> NoReturn:
        raise TpuplanError(
            f"{self.where}: a stage from op {a} on {self.device.name} would take {describe(us)} us for {what}, "
            f"beyond tpuplan's bound of {MAX_STAGE_US:,} us; the model's sizes or the device's or host's costs "
            "are out of range"
        )
