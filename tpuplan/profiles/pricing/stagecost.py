"""The cost of every contiguous segment a..b as one pipeline stage, one start at a time.

A stage runs ops a..b, compiled on their own, on one device. On an Edge TPU the compiler maps the first
partition of supported ops (`profiles.edgetpu.placement`, which depends on where the segment starts) and
the host runs the rest. `StagePricer.row(a, hi)` works out, for every end b = a..hi, the stage quantities
the cost formula reads (`profiles.pricing.formula.STAGE_QUANTITIES`: op-price sums, bytes across its
boundary and its Edge TPU part's, on- and off-chip bytes), then the formula's terms and stage values (T,
S, V, ...), each rounded up to whole microseconds. The pricer knows what a stage holds; the formula what
it costs. A row costs the work of its own ops only (placement, edges and tensors are sliced to a..hi), so
the planner prices the stages it can use, never every n x n segment.

`floors` (`profiles.pricing.stagefloor`) bounds T from below, so that the planner extends a row only
until its floor passes the period it is looking at.

Caching is the compiler's greedy, largest layer first (`profiles.pricing.caching`), within the budget
onchip_bytes - io_reserve_frac x (bytes into and out of the Edge TPU part).

A stage of a CPU device runs every op on the host CPU: its "compute" is the host prices of all its ops
and its "link" the copies of its boundary tensors; nothing streams and nothing crosses a shared bus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from tpuplan.compat import pairwise, zip_strict
from tpuplan.profiles.build import price
from tpuplan.profiles.edgetpu.placement import first_tpu_partition
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_MODEL_SUM, MAX_OPS, MAX_STAGE_US, describe
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.caching import Caching, greedy_caching
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.formula import stream_passes
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.profiles.pricing.opcost import out_pixels
from tpuplan.profiles.pricing.stageblock import Block, SteadyPlacement
from tpuplan.profiles.pricing.stagefloor import StageFloors
from tpuplan.profiles.state import loops_of, spans

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
KIB = formula.KIB
BLOCK_ARCS = 1 << 16  # stages priced together: large enough to share the work, small enough to stay in cache


class StagePricer:
    """Prices segments of one profile on one device and host, row by row (one start, ends up to hi)."""

    value_keys: tuple[str, ...] = tuple(formula.STAGE_VALUES)  # the stage values a block gives (planner.robust adds)

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
        feeds_tpu = [h for h in host_ops if any(self.supported[c] for c in self._op_consumers.get(h, ()))]
        self.last_barrier = max(feeds_tpu, default=-1)
        self._big = self.cached > device.max_cached_layer_bytes  # layers never cached
        self._params = np.concatenate([[0], np.cumsum(self.params)]).astype(np.int64)
        self.loops, self.together = spans(loops_of(profile))
        self._steady: SteadyPlacement | None = None
        self._floors: StageFloors | None = None
        self._check_sums()

    def _tensor_arrays(self, prof: Profile) -> None:
        """Tensors sorted by producer and edges by consumer, so that a row reads only its own slice."""
        names = [t.name for t in prof.tensors]
        prod = np.array([self.producer.get(name, -1) for name in names], dtype=np.int64)
        order = np.argsort(prod, kind="stable")
        names = [names[k] for k in order]
        index = {name: k for k, name in enumerate(names)}
        self.t_prod = prod[order]
        self.t_bytes = np.array([t.bytes for t in prof.tensors], dtype=np.int64)[order]
        outs = {t.name for t in prof.outputs}
        self.t_out = np.array([name in outs for name in names], dtype=np.bool_)
        edges = sorted((op.index, index[t]) for op in prof.ops for t in set(op.inputs))
        self.e_c = np.array([e[0] for e in edges], dtype=np.int64)
        self.e_t = np.array([e[1] for e in edges], dtype=np.int64)
        self.t_last = np.full(len(names), -1, dtype=np.int64)
        if len(edges):
            np.maximum.at(self.t_last, self.e_t, self.e_c)
        self._op_consumers: dict[int, set[int]] = {}
        for c, t in edges:
            p = int(self.t_prod[t])
            if p >= 0:
                self._op_consumers.setdefault(p, set()).add(c)

    def _check_sums(self) -> None:
        """Every sum a stage can take (bytes of its tensors and layers) stays far inside int64."""
        total = int(self.t_bytes.sum()) + int(self.cached.sum()) + int(self.params.sum())
        if total > MAX_MODEL_SUM:
            raise TpuplanError(
                f"{self.where}: the model's tensors and parameters add up to {describe(total)} bytes, beyond "
                f"tpuplan's bound of {MAX_MODEL_SUM:,}"
            )

    def placement(self, a: int, hi: int | None = None) -> Mask:
        """Which ops of a..hi the Edge TPU runs when a segment starts at a (all False on a CPU device)."""
        stop = self.n if hi is None else hi + 1
        if self.cpu:
            return np.zeros(stop - a, dtype=np.bool_)
        if a > self.last_barrier:
            return np.array(self.supported[a:stop], dtype=np.bool_)
        return np.array(first_tpu_partition(self.supported, self.inputs, self.outputs, self.producer, a, stop))

    def _boundary(self, a: int, tpu: Mask) -> dict[str, I64]:
        """Bytes crossing into and out of the segment, and into and out of its Edge TPU part, per end b."""
        m = len(tpu)
        hi = a + m - 1
        diff = {k: np.zeros(m + 1, dtype=np.int64) for k in ("seg_in", "seg_out", "tpu_in", "tpu_out")}
        lo_e, hi_e = np.searchsorted(self.e_c, [a, hi + 1])
        ec, et = self.e_c[lo_e:hi_e], self.e_t[lo_e:hi_e]
        prod = self.t_prod[et]
        outside = prod < a
        on_tpu = tpu[ec - a]
        host_made = ~outside & ~tpu[np.clip(prod - a, 0, m - 1)]
        for key, mask in (("seg_in", outside), ("tpu_in", on_tpu & (outside | host_made))):
            tensors, first = np.unique(et[mask], return_index=True)  # edges by consumer: the first reader
            np.add.at(diff[key], ec[mask][first] - a, self.t_bytes[tensors])
        host_use = np.unique(et[~on_tpu])
        lo_t, hi_t = np.searchsorted(self.t_prod, [a, hi + 1])
        made = np.arange(lo_t, hi_t)
        start = self.t_prod[made] - a
        keep_tpu = self.t_out[made] | np.isin(made, host_use)
        for key, mask, keep in (
            ("seg_out", np.ones(len(made), dtype=np.bool_), self.t_out[made]),
            ("tpu_out", tpu[start], keep_tpu),
        ):
            end = np.minimum(np.where(keep, self.n - 1, self.t_last[made] - 1), hi) - a
            ok = mask & (end >= start)
            np.add.at(diff[key], start[ok], self.t_bytes[made][ok])
            np.add.at(diff[key], end[ok] + 1, -self.t_bytes[made][ok])
        return {k: np.cumsum(v[:m]) for k, v in diff.items()}

    def _caching(self, a: int, tpu: Mask, budget: I64) -> Caching:
        """(on-chip bytes, off-chip bytes, streaming us, bytes streamed per input) per end b of a row."""
        m = len(tpu)
        return greedy_caching(
            np.where(tpu, self.cached[a : a + m], 0),
            np.where(tpu, self.stream_us[a : a + m], 0),
            np.where(tpu, self.stream_bytes[a : a + m], 0),
            budget,
            self.device.max_cached_layer_bytes,
        )

    def _row_quantities(self, a: int, hi: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """(formula quantities, what the stage holds) of a..b for b = a..hi, placing the row on its own."""
        tpu = self.placement(a, hi)
        io = self._boundary(a, tpu)
        ends = np.arange(a, hi + 1, dtype=np.int64)
        zero = np.zeros(len(ends), dtype=np.int64)
        host_part = self.host_us[a : hi + 1] * self.host_uncal[a : hi + 1]
        if self.cpu:  # every op on the host CPU, priced by the host; the boundary tensors are copied
            compute = np.cumsum(self.host_us[a : hi + 1])
            return self._quantities(io, compute, zero, zero, (zero, zero, zero, zero), np.cumsum(host_part), a, ends)
        uncal = np.where(tpu, self.tpu_us[a : hi + 1] * self.tpu_uncal[a : hi + 1], host_part)
        compute = np.cumsum(np.where(tpu, self.tpu_us[a : hi + 1], 0))
        host_ops = np.cumsum(np.where(tpu, 0, self.host_us[a : hi + 1]))
        caching = self._caching(a, tpu, self._budget(io))
        return self._quantities(io, compute, host_ops, np.cumsum(tpu), caching, np.cumsum(uncal), a, ends)

    def _budget(self, io: dict[str, I64]) -> I64:
        dev = self.device
        reserve = dev.io_reserve_frac * (io["tpu_in"] + io["tpu_out"])
        out: I64 = np.floor(np.clip(dev.onchip_bytes - reserve, -(2.0**62), 2.0**62)).astype(np.int64)
        return out

    def _quantities(
        self,
        io: dict[str, I64],
        compute: I64,
        host_ops: I64,
        tpu_ops: I64,
        caching: Caching,
        uncal: I64,
        a: int | I64,
        b: int | I64,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The formula's stage quantities and what the stage holds, from its parts (arrays over arcs)."""
        on, off, spill, streamed = caching
        tpu_in, tpu_out = (io["seg_in"], io["seg_out"]) if self.cpu else (io["tpu_in"], io["tpu_out"])
        zero = np.zeros_like(off)
        bus_in, bus_out = (zero, zero) if self.cpu else (tpu_in + streamed, tpu_out)
        q = {
            "one": np.ones(len(compute)),
            "edgetpu": (tpu_ops > 0).astype(np.float64),
            "tpu_ops": tpu_ops.astype(np.float64),
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
        a_, b_ = np.broadcast_to(np.asarray(a), np.shape(b)), np.asarray(b)
        q["in_loop"] = self._in_loop(a_, b_).astype(np.float64)
        params = self._params[b_ + 1] - self._params[a_]
        held = {
            **io,
            "uncal": uncal,
            "tpu_ops": tpu_ops,
            "host_ops": host_ops,
            "on": on,
            "off": off,
            "params": params,
            "end": b_,
            "valid": (np.ones(len(compute), dtype=np.bool_) if self.cpu else tpu_ops > 0)
            & self._keeps_together(a_, b_),
            "fits": off == 0,
        }
        return q, held

    def _in_loop(self, a: I64, b: I64) -> Mask:
        """Stages a..b that hold an op of a state loop (`profiles.state`)."""
        out = np.zeros(len(b), dtype=np.bool_)
        for lo, hi in self.loops:
            out |= (a <= hi) & (b >= lo)
        return out

    def _keeps_together(self, a: I64, b: I64) -> Mask:
        """Stages a..b whose ends cut no span of ops that must stay in one stage (variables: their state
        lives inside one interpreter)."""
        out = np.ones(len(b), dtype=np.bool_)
        for lo, hi in self.together:
            out &= ~((a > lo) & (a <= hi)) & ~((b >= lo) & (b < hi))
        return out

    def _steady_quantities(self, starts: I64, los: I64, his: I64) -> tuple[dict[str, Any], dict[str, Any], I64]:
        """Quantities of every arc of starts past the last barrier, at once (`profiles.pricing.stageblock`)."""
        st = self.steady
        blk = Block.of(starts, los, his)
        a, b = blk.a, blk.b
        io = st.boundary(blk)
        comp, host = st.comp[b + 1] - st.comp[a], st.host[b + 1] - st.host[a]
        count, uncal = st.count[b + 1] - st.count[a], st.uncal[b + 1] - st.uncal[a]
        if self.cpu:
            zero = np.zeros(len(a), dtype=np.int64)
            q, held = self._quantities(io, comp, zero, zero, (zero, zero, zero, zero), uncal, a, b)
        else:
            caching = st.caching(a, b, self._budget(io), self.device.max_cached_layer_bytes)
            q, held = self._quantities(io, comp, host, count, caching, uncal, a, b)
        return q, held, a

    @property
    def steady(self) -> SteadyPlacement:
        if self._steady is None:
            self._steady = SteadyPlacement(self)
        return self._steady

    @property
    def floors(self) -> StageFloors:
        """Lower bounds of the stage time and how far a row may reach (`profiles.pricing.stagefloor`)."""
        if self._floors is None:
            self._floors = StageFloors(self)
        return self._floors

    def block(
        self,
        starts: Sequence[int] | I64,
        his: Sequence[int] | I64,
        keep: Sequence[str] | None = None,
        los: Sequence[int] | I64 | None = None,
    ) -> dict[str, Any]:
        """Every quantity of the stages a..b, b = los[k]..his[k] (los: a), for each a = starts[k]
        (ascending, distinct), as flat arrays with the arcs of each start together (`row` for one start);
        only the keys `keep` when given. Priced in chunks of about BLOCK_ARCS stages, so that the
        temporaries stay small."""
        starts, his = np.asarray(starts, dtype=np.int64), np.asarray(his, dtype=np.int64)
        los = starts.copy() if los is None else np.asarray(los, dtype=np.int64)
        count = np.cumsum(his - los + 1)
        cuts = np.searchsorted(count, np.arange(BLOCK_ARCS, int(count[-1]) if len(count) else 0, BLOCK_ARCS))
        bounds = [0, *sorted(set((cuts + 1).tolist()) - {0, len(starts)}), len(starts)]
        chunks = []
        for lo, hi in pairwise(bounds):
            got = self._block(starts[lo:hi], los[lo:hi], his[lo:hi])
            chunks.append(got if keep is None else {k: got[k] for k in keep})
        return chunks[0] if len(chunks) == 1 else _concat(chunks)

    def _block(self, starts: I64, los: I64, his: I64) -> dict[str, Any]:
        parts: list[tuple[dict[str, Any], dict[str, Any], I64]] = []
        steady = starts > self.last_barrier
        for a, lo, hi in zip_strict(starts[~steady].tolist(), los[~steady].tolist(), his[~steady].tolist()):
            q, held = self._row_quantities(a, hi)
            cut = slice(lo - a, None)
            parts.append(
                ({k: v[cut] for k, v in q.items()}, {k: v[cut] for k, v in held.items()}, np.full(hi - lo + 1, a))
            )
        if steady.any():
            parts.append(self._steady_quantities(starts[steady], los[steady], his[steady]))
        q = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
        held = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
        at = np.concatenate([p[2] for p in parts])
        terms = formula.stage_terms(self.coef, q, lambda name, x: self._us(x, at, name))
        measured = self._measured_at(at, held["end"])
        given = measured if self.measured else None
        values = formula.stage_values(terms, self.coef, lambda name, x: self._us(x, at, name), given, q)
        if given is not None:  # measured times are whole microseconds: the sums stay whole
            values = {k: np.rint(np.asarray(v, dtype=np.float64)).astype(np.int64) for k, v in values.items()}
        row = {**held, "q": q, "terms": terms, "values": values, "in_loop": q["in_loop"] > 0, "measured": measured}
        return self._checked(at, row)

    def _measured_at(self, a: I64, b: I64) -> F64:
        """The measured invoke of every stage a..b that was timed (NaN where not)."""
        out = np.full(len(b), np.nan)
        for (first, last), us in self.measured.items():
            out[(a == first) & (b == last)] = us
        return out

    def row(self, a: int, hi: int | None = None) -> dict[str, Any]:
        """Every quantity of the segments a..b for b = a..hi (arrays of length hi - a + 1; hi defaults to
        the last op): the boundary bytes, "terms" and "values" (the formula's, whole microseconds) and
        what the stage holds."""
        return self.block([a], [self.n - 1 if hi is None else hi])

    def _us(self, x: F64 | I64 | float, at: I64, what: str) -> I64:
        """Microseconds rounded up, refused past MAX_STAGE_US before the conversion to int64 could wrap
        (`at`: the start of every arc, to name the first stage out of range)."""
        us = np.ceil(np.asarray(x, dtype=np.float64) - 1e-9)
        if us.size:
            bad = ~(us <= MAX_STAGE_US)  # NaN is bad too
            if bad.any():
                k = int(np.argmax(bad))
                self._refuse(int(at[k]), f"its {what} time", float(us[k]))
        out: I64 = np.maximum(us, 0).astype(np.int64)
        return out

    def _checked(self, at: I64, row: dict[str, Any]) -> dict[str, Any]:
        """Sums of bounded parts stay far inside int64; the stage values must stay within MAX_STAGE_US."""
        for key, value in row["values"].items():
            bad = np.asarray(value) > MAX_STAGE_US
            if bad.any():
                k = int(np.argmax(bad))
                self._refuse(int(at[k]), f"its {key} time", int(value[k]))
        return row

    def _refuse(self, a: int, what: str, us: float) -> NoReturn:
        raise TpuplanError(
            f"{self.where}: a stage from op {a} on {self.device.name} would take {describe(us)} us for {what}, "
            f"beyond tpuplan's bound of {MAX_STAGE_US:,} us; the model's sizes or the device's or host's costs "
            "are out of range"
        )


def _concat(chunks: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Blocks of arcs one after the other (the nested "terms" and "values" too)."""
    out: dict[str, Any] = {}
    for key, value in chunks[0].items():
        if isinstance(value, dict):
            out[key] = {k: np.concatenate([c[key][k] for c in chunks]) for k in value}
        else:
            out[key] = np.concatenate([c[key] for c in chunks])
    return out
