"""Stage tables for the planner: the stages a..b of one profile on one device and host that a search can use.

A table never holds all n x n stages. `arcs(cap)` prices, once, every stage whose floor (a lower bound of
its time T that grows with b, `profiles.pricing.stagefloor`) is at most `cap`: any stage left out takes more than
`cap`, so a search for a plan whose stages all take at most `cap` (every plan of period <= cap) loses
nothing. With `onchip` the rows also stop where a stage must stream. Rows only grow: a larger cap prices
the ends past the old ones. The values are the cost formula's (`profiles.pricing.formula.STAGE_VALUES`:
time T, serial S, bus V, one-off O, ...) with two masks: valid (the stage holds an op its device runs) and
onchip (nothing streams). `stage_values` and `stage_parts` price any single stage, in the table or not;
`profiles.pricing.plancost` prices a cut list on tables with the formula's pipeline. A table made from
full n x n matrices (`StageCostTable.dense`: tests and synthetic tables) has every stage from the start.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_STAGE_US
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing import formula, pipeline_formula
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.stagecost import StagePricer

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Mask = npt.NDArray[np.bool_]
MAX_TABLE_ARCS = 1 << 24  # stages one table holds (about 0.3 GB; a search needs about twice that)
_EXTEND_ROWS = 512  # rows priced between two looks at the deadline
_OWN_ROW_MIN = 256  # ends of a row placed on its own priced at once (its cost hardly depends on its length)


class OutOfTime(Exception):
    """The deadline passed while stages were being priced."""


class TooManyStages(TpuplanError):
    """A search would need more stages priced than MAX_TABLE_ARCS."""


@dataclass(frozen=True)
class Arcs:
    """Stages a search may use: arc k is stage a[k]..b[k]. Starts ascend; the ends of one start are
    contiguous from the start (arc ptr[a] + j is stage a..a+j), so a stage's arc is found in O(1)."""

    n: int
    ptr: I64
    values: Mapping[str, npt.NDArray[np.signedinteger[Any]]]  # int32 where every value fits, else int64
    valid: Mask
    onchip: Mask

    @cached_property
    def a(self) -> I32:
        """The start of every arc (int32: models have at most MAX_OPS ops)."""
        out: I32 = np.repeat(np.arange(self.n, dtype=np.int32), np.diff(self.ptr))
        return out

    @cached_property
    def b(self) -> I32:
        """The end of every arc."""
        first = np.repeat(self.ptr[:-1], np.diff(self.ptr))
        out: I32 = (self.a + (np.arange(len(self.a), dtype=np.int64) - first)).astype(np.int32)
        return out

    @property
    def hi(self) -> I64:
        """The last end of each start (a - 1: none)."""
        out: I64 = np.arange(self.n, dtype=np.int64) + np.diff(self.ptr) - 1
        return out

    def index(self, a: Any, b: Any) -> I64:
        """The arc of every stage a..b, -1 where it is not among these arcs."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        ok = (a >= 0) & (a < self.n) & (b >= a) & (b <= self.hi[np.clip(a, 0, self.n - 1)])
        out: I64 = np.where(ok, self.ptr[np.clip(a, 0, self.n - 1)] + b - a, -1)
        return out

    def __len__(self) -> int:
        return int(self.ptr[-1])


@dataclass(frozen=True)
class StageParts:
    """One stage: its terms and values (whole microseconds) and what it holds (bytes, op counts)."""

    terms: dict[str, int]
    values: dict[str, int]
    uncalibrated_us: int
    tpu_ops: int
    host_ops: int
    onchip_bytes: int
    offchip_bytes: int
    param_bytes: int
    bytes_in: int
    bytes_out: int
    valid: bool
    fits: bool
    in_loop: bool = False  # the stage holds an op of a state loop (profiles.state)
    measured_us: int | None = None  # its invoke as measured (plan verify), kept in place of the prediction

    @property
    def total_us(self) -> int:
        return self.values["time"]

    @property
    def invoke_us(self) -> int:
        """The stage's interpreter run alone: what one invoke() of its segment takes (device + host ops),
        as measured where it was."""
        return int(formula.invoke_part(self.terms, self.measured_us))


_KEEP = ("values", "valid", "fits")


class StageCostTable:
    """The stages of one (profile, device, host) the planner has priced so far, grown on demand."""

    def __init__(
        self, device_name: str, backend: str, n: int, start_us: int = 0, pricer: StagePricer | None = None
    ) -> None:
        self.device_name, self.backend, self.n, self.start_us, self.pricer = device_name, backend, n, start_us, pricer
        self._ptr = np.zeros(n + 1, dtype=np.int64)
        keys = pricer.value_keys if pricer is not None else tuple(formula.STAGE_VALUES)
        self._values: dict[str, npt.NDArray[Any]] = {k: np.zeros(0, dtype=np.int32) for k in keys}
        self._valid = np.zeros(0, dtype=np.bool_)
        self._onchip = np.zeros(0, dtype=np.bool_)
        self._reach: dict[tuple[int | None, bool], I64] = {}
        self._loops: list[tuple[int, int]] = []
        self.pricing_s = 0.0  # time spent pricing stages (the benchmarks read it)
        self._views: dict[tuple[int | None, bool], Arcs] = {}

    @staticmethod
    def dense(
        device_name: str,
        backend: str,
        n: int,
        values: Mapping[str, I64],
        valid: Mask,
        onchip: Mask,
        start_us: int = 0,
        loops: Sequence[tuple[int, int]] = (),
    ) -> StageCostTable:
        """A table of every stage from n x n matrices indexed [a, b] (entries with b < a are ignored);
        `loops`: the op spans of state loops its `loop` values were made for."""
        table = StageCostTable(device_name, backend, n, start_us)
        table._loops = list(loops)
        a, b = np.triu_indices(n)
        table._ptr = np.concatenate([[0], np.cumsum(np.arange(n, 0, -1))]).astype(np.int64)
        zero = np.zeros((n, n), dtype=np.int64)
        table._values = {k: np.asarray(values.get(k, zero), dtype=np.int64)[a, b] for k in formula.STAGE_VALUES}
        table._valid = np.asarray(valid, dtype=np.bool_)[a, b]
        table._onchip = np.asarray(onchip, dtype=np.bool_)[a, b]
        return table

    # -- the stages a search may use ------------------------------------------------------------------

    @property
    def priced(self) -> int:
        """Stages priced so far."""
        return int(self._ptr[-1])

    def reach(self, cap: int | None, onchip: bool = False) -> I64:
        """The last end of every start whose floor is at most `cap` (None: every stage), and that may fit
        on chip with `onchip`: every stage past it takes more than `cap` (or streams)."""
        key = (cap, onchip)
        if key not in self._reach:
            starts = np.arange(self.n, dtype=np.int64)
            if self.pricer is None or (cap is None and not onchip):
                self._reach[key] = np.full(self.n, self.n - 1, dtype=np.int64)
            else:
                top = MAX_STAGE_US + 1 if cap is None else cap
                self._reach[key] = self.pricer.floors.reach(starts, top, onchip)
        return self._reach[key]

    def arcs(self, cap: int | None = None, onchip: bool = False, deadline: float | None = None) -> Arcs:
        """Every stage whose floor is at most `cap` (None: every stage; on chip too with `onchip`),
        priced now if not yet. OutOfTime when the deadline passes first; TooManyStages past
        MAX_TABLE_ARCS (the table keeps what it priced)."""
        key = (cap, onchip)
        if key in self._views:
            return self._views[key]
        want = self.reach(cap, onchip)
        self._extend(want, deadline)
        have = self._ptr[:-1] + (want - np.arange(self.n)) + 1  # the end of each start's wanted arcs
        if np.array_equal(have, self._ptr[1:]):
            view = Arcs(self.n, self._ptr, self._values, self._valid, self._onchip)
        else:
            keep = np.zeros(self.priced, dtype=np.bool_)
            count = want - np.arange(self.n) + 1
            idx = (
                np.repeat(self._ptr[:-1], count)
                + np.arange(int(count.sum()))
                - np.repeat(np.cumsum(count) - count, count)
            )
            keep[idx] = True
            ptr = np.concatenate([[0], np.cumsum(count)]).astype(np.int64)
            vals = {k: v[keep] for k, v in self._values.items()}
            view = Arcs(self.n, ptr, vals, self._valid[keep], self._onchip[keep])
        if len(self._views) > 8:
            self._views.clear()
        self._views[key] = view
        return view

    def _extend(self, want: I64, deadline: float | None) -> None:
        """Price the ends up to `want` of every start that does not have them yet."""
        hi = np.arange(self.n, dtype=np.int64) + np.diff(self._ptr) - 1
        grow = np.flatnonzero(want > hi)
        if not grow.size:
            return
        if self.pricer is not None:  # a row placed on its own is priced whole again: double it, or more
            own = grow[grow <= self.pricer.last_barrier]
            want = want.copy()
            longer = np.maximum(2 * (hi[own] - own + 1), _OWN_ROW_MIN)
            want[own] = np.minimum(np.maximum(want[own], own + longer - 1), self.n - 1)
        if self.pricer is None:
            raise TpuplanError("internal error: a dense table is missing stages")
        total = self.priced + int((want[grow] - hi[grow]).sum())
        if total > MAX_TABLE_ARCS:
            raise TooManyStages(
                f"{self.pricer.where}: the search needs {total:,} candidate stages on {self.device_name}, more than "
                f"tpuplan keeps ({MAX_TABLE_ARCS:,}); use more TPUs or the throughput objective"
            )
        parts = []
        started = time.monotonic()
        for lo in range(0, grow.size, _EXTEND_ROWS):
            if deadline is not None and time.monotonic() > deadline:
                raise OutOfTime
            rows = grow[lo : lo + _EXTEND_ROWS]
            parts.append(self.pricer.block(rows, want[rows], _KEEP, los=hi[rows] + 1))
        self._merge(grow, hi[grow] + 1, want[grow], parts)
        self.pricing_s += time.monotonic() - started

    def _merge(self, rows: I64, los: I64, his: I64, parts: Sequence[dict[str, Any]]) -> None:
        """Insert the new arcs (ends los..his of `rows`) after each row's old ones."""
        count = np.diff(self._ptr)
        new_count = count.copy()
        new_count[rows] += his - los + 1
        ptr = np.concatenate([[0], np.cumsum(new_count)]).astype(np.int64)
        old_pos = np.repeat(ptr[:-1], count) + np.arange(self.priced) - np.repeat(self._ptr[:-1], count)
        added = his - los + 1
        new_pos = (
            np.repeat(ptr[rows] + count[rows], added)
            + np.arange(int(added.sum()))
            - np.repeat(np.cumsum(added) - added, added)
        )

        def put(old: npt.NDArray[Any], new: npt.NDArray[Any]) -> npt.NDArray[Any]:
            dtype = old.dtype
            if dtype.kind == "i":  # int32 while every value fits (half the memory of the largest tables)
                top = max(int(old.max(initial=0)), int(new.max(initial=0)))
                dtype = (
                    np.dtype(np.int32) if top < 2**31 and (dtype == np.int32 or not len(old)) else np.dtype(np.int64)
                )
            out = np.empty(int(ptr[-1]), dtype=dtype)
            out[old_pos] = old
            out[new_pos] = new
            return out

        self._values = {k: put(v, np.concatenate([p["values"][k] for p in parts])) for k, v in self._values.items()}
        self._valid = put(self._valid, np.concatenate([p["valid"] for p in parts]))
        self._onchip = put(self._onchip, np.concatenate([p["fits"] for p in parts]))
        self._ptr = ptr
        self._views.clear()

    # -- single stages ---------------------------------------------------------------------------------

    def _lookup(self, a: int, b: int) -> int:
        if not 0 <= a <= b < self.n:
            raise ValueError(f"bad stage {a}..{b} for {self.n} ops")
        k = int(self._ptr[a]) + b - a
        return k if k < int(self._ptr[a + 1]) else -1

    def stage_values(self, a: int, b: int) -> dict[str, int]:
        """T, S, V, O, ... of stage a..b (priced now when the table does not hold it)."""
        k = self._lookup(a, b)
        if k >= 0:
            return {name: int(v[k]) for name, v in self._values.items()}
        row = self._price(a, b)
        return {name: int(v[0]) for name, v in row["values"].items()}

    def _price(self, a: int, b: int) -> dict[str, Any]:
        if self.pricer is None:
            raise TpuplanError("internal error: a dense table is missing stages")
        return self.pricer.block([a], [b], los=[b])

    def stage_time_us(self, a: int, b: int) -> int:
        return self.stage_values(a, b)["time"]

    def copied_time_us(self, a: int, b: int, copies: int) -> int:
        """The stage's time between results with `copies` devices taking inputs in turn (pipeline_formula.interval)."""
        v = self.stage_values(a, b)
        return pipeline_formula.interval(v["time"], v["serial"], copies)

    def fits_on_chip(self, a: int, b: int) -> bool:
        k = self._lookup(a, b)
        return bool(self._onchip[k]) if k >= 0 else bool(self._price(a, b)["fits"][0])

    def is_valid(self, a: int, b: int) -> bool:
        k = self._lookup(a, b)
        return bool(self._valid[k]) if k >= 0 else bool(self._price(a, b)["valid"][0])

    def stage_parts(self, a: int, b: int) -> StageParts:
        """The breakdown of stage a..b, priced by the same pricer as the table (a table made of plain
        integers, without a pricer, has its time as its only term)."""
        values = self.stage_values(a, b)
        if self.pricer is None:
            terms = {name: 0 for name in formula.TERM_NAMES} | {"compute": values["time"]}
            ok, fits = self.is_valid(a, b), self.fits_on_chip(a, b)
            return StageParts(terms, values, 0, b - a + 1, 0, 0, 0, 0, 0, 0, ok, fits)
        r = self._price(a, b)

        def at(key: str) -> int:
            return int(r[key][0])

        return StageParts(
            terms={name: int(v[0]) for name, v in r["terms"].items()},
            values={name: int(v[0]) for name, v in r["values"].items()},
            uncalibrated_us=at("uncal"),
            tpu_ops=at("tpu_ops"),
            host_ops=b - a + 1 - at("tpu_ops"),
            onchip_bytes=at("on"),
            offchip_bytes=at("off"),
            param_bytes=at("params"),
            bytes_in=at("seg_in"),
            bytes_out=at("seg_out"),
            valid=bool(r["valid"][0]),
            fits=bool(r["fits"][0]),
            in_loop=bool(r["in_loop"][0]),
            measured_us=None if np.isnan(r["measured"][0]) else int(r["measured"][0]),
        )

    @property
    def loops(self) -> list[tuple[int, int]]:
        """The op spans of the profile's state loops (none for a table of plain integers)."""
        return list(self.pricer.loops) if self.pricer is not None else list(self._loops)

    @property
    def value_keys(self) -> tuple[str, ...]:
        """The stage values every stage of this table has (the formula's; planner.robust adds some)."""
        return tuple(self._values)

    def top(self, name: str) -> int:
        """The largest value `name` of any stage priced so far (0 when none)."""
        return int(self._values[name].max(initial=0))


def stage_table(profile: Profile, device: DeviceSpec | None = None, host: HostSpec | None = None) -> StageCostTable:
    """The (empty, grown on demand) table of a profile on one device and host (the profile's own when None)."""
    dev = device or profile.device
    return table_of(StagePricer(profile, dev, host or resolve_host(profile.host)))


def table_of(pricer: StagePricer) -> StageCostTable:
    """The (empty) table of the stages one pricer prices."""
    start = int(pipeline_formula.pipeline_start(pricer.coef, lambda _, x: formula.whole_us(x)))
    return StageCostTable(pricer.device.name, pricer.device.backend, pricer.n, start, pricer)
