"""Calibration, part 1: the compiler's parameter layout and caching, fitted to its own memory reports.

Every measured row names a model (`synth_fc(N)` / `synth_conv(F)`) and, per segment, the compiler's
on-chip and off-chip MiB. Three steps, each deterministic:

1. cuts: a pipeline row's split is given or inferred: of the cuts that start every segment at a layer
   with weights (activations stay with their layer), the one whose segments' padded layout totals best
   match the reported totals (on + off), under the paddings being tried;
2. layout: output-channel and input-depth padding and per-channel bytes, chosen so that the most
   segments' totals match to the compiler's print precision (KiB with 2 decimals below 1 MiB, MiB with 2
   decimals above), then the least total error;
3. caching: C (`onchip_bytes`), k (`io_reserve_frac`) and L (`max_cached_layer_bytes`) of the rule in
   `profiles.pricing.stagecost` (largest layer first, skip what does not fit the budget C - k x TPU in+out
   bytes), chosen so that the most segments have both numbers within 0.1 MiB, then the middle of the
   optimal region (L, then k, then C), so that small changes of the data move the numbers least.

The search evaluates the rule on all segments at once; the numbers it reports are then re-read from the
planner's own `StagePricer` (see `profiles.calibration.fit`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tpuplan.compat import zip_strict
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.calibration.measurements import Measurement
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import resolve_host
from tpuplan.profiles.pricing.opcost import cached_layout_bytes
from tpuplan.profiles.pricing.stagecost import StagePricer
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite.reader import load_model, parse_model

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
MIB = 1 << 20
TOL_MIB = 0.1  # the goal: both numbers of a segment within this of the compiler's report
CHANNEL_PADS = (1, 8, 16, 32, 64, 128)
INPUT_PADS = (1, 2, 4, 8, 16)
PER_CHANNEL_BYTES = range(0, 33)
K_COARSE = np.linspace(0.0, 1.0, 101)  # io reserve grid of the search over every L
K_FINE = np.linspace(0.0, 1.0, 401)  # and of the exact pass at the chosen L
C_STEP = 2048  # bytes: C resolution of the search (the exact pass then finds the interval's ends)
MAX_LAYERS = 16  # weighted layers of one segment: the subset sums of its caching rule stay small
_SHAPES = DeviceSpec(name="shapes", onchip_bytes=0, max_cached_layer_bytes=0)


@lru_cache(maxsize=512)
def sweep_profile(family: str, x: int) -> Profile:
    """Static profile of the model a measured row describes (zero weights: only shapes matter)."""
    data = synth_fc(x, weights="zeros") if family == "fc" else synth_conv(x, weights="zeros")
    model = parse_model(data, Path(f"synth_{family}_{x}.tflite"), allow_edgetpu=False)
    return build_profile(model, _SHAPES, resolve_host(None))


def stage_bounds(cuts: tuple[int, ...], n: int) -> list[tuple[int, int]]:
    """(first op, last op) of every stage of a cut list."""
    return list(zip_strict([0, *(c + 1 for c in cuts)], [*cuts, n - 1]))


class ModelGeometry:
    """What does not depend on the fitted numbers: which ops of a segment run on the Edge TPU and the
    bytes crossing into and out of its Edge TPU part (both read from the planner's StagePricer)."""

    def __init__(self, profile: Profile) -> None:
        self.profile, self.n = profile, len(profile.ops)
        self._pricer = StagePricer(profile, profile.device, resolve_host(profile.host))
        self._rows: dict[int, dict[str, Any]] = {}
        first = next((op.index for op in profile.ops if op.param_bytes > 0), self.n)
        self.starts = [op.index for op in profile.ops if op.param_bytes > 0 and op.index > first]

    def _row(self, a: int) -> dict[str, Any]:
        if a not in self._rows:
            self._rows[a] = {**self._pricer.row(a), "tpu": self._pricer.placement(a)}
        return self._rows[a]

    def tpu_ops(self, a: int, b: int) -> list[int]:
        """The ops of segment a..b that the Edge TPU runs."""
        mask = self._row(a)["tpu"]
        return [j for j in range(a, b + 1) if mask[j - a]]

    def io_bytes(self, a: int, b: int) -> int:
        r = self._row(a)
        return int(r["tpu_in"][b - a] + r["tpu_out"][b - a])

    def candidate_cuts(self, segments: int) -> list[tuple[int, ...]]:
        """Cut lists into `segments` stages that each start at a layer with weights."""
        return [tuple(s - 1 for s in c) for c in itertools.combinations(self.starts, segments - 1)]

    def check_cuts(self, cuts: tuple[int, ...], segments: int, where: str) -> tuple[int, ...]:
        """Given cuts, refused unless they split this model into `segments` stages in order."""
        if len(cuts) != segments - 1 or list(cuts) != sorted(set(cuts)) or not all(0 <= c < self.n - 1 for c in cuts):
            raise TpuplanError(f"{where}: cuts {list(cuts)} do not split the {self.n}-op model into {segments} stages")
        return cuts


@lru_cache(maxsize=512)
def model_geometry(family: str, x: int) -> ModelGeometry:
    return ModelGeometry(sweep_profile(family, x))


@lru_cache(maxsize=64)
def model_file_geometry(path: str) -> ModelGeometry:
    """The geometry of a real model file (a published architecture), profiled in place."""
    return ModelGeometry(build_profile(load_model(Path(path)), _SHAPES, resolve_host(None)))


def row_geometry(m: Measurement) -> ModelGeometry:
    """The model a measured row names: a synthetic model of the study, or a real file."""
    return model_file_geometry(m.model) if m.family == "model" else model_geometry(m.family, m.x)


def layout_bytes(profile: Profile, device: DeviceSpec) -> I64:
    """Per op, the bytes the compiler lays out for its parameters on `device` (the planner's number)."""
    return np.array(
        [
            cached_layout_bytes(op.op_type, op.param_shapes, op.param_bytes, op.per_channel, device)
            for op in profile.ops
        ],
        dtype=np.int64,
    )


@lru_cache(maxsize=16384)
def _shape_layout(family: str, x: int, channel_pad: int, input_pad: int, per_channel: int) -> I64:
    return layout_bytes(sweep_profile(family, x), _shape_device(channel_pad, input_pad, per_channel))


def print_tolerance(mib: F64) -> F64:
    """Half a unit of the compiler's printout: KiB with 2 decimals below 1 MiB, MiB with 2 decimals above."""
    return np.where(mib < 1, 0.005 / 1024, 0.005) + 1e-9


@dataclass(frozen=True)
class RowMemory:
    """One measured row for the memory fits: its model, candidate cuts and the reported MiB."""

    family: str
    x: int
    on: tuple[float, ...]
    off: tuple[float, ...]
    cuts: list[tuple[int, ...]]  # one entry when given, every candidate when inferred


@dataclass(frozen=True)
class LayoutFit:
    channel_pad: int
    input_pad: int
    per_channel_bytes: int
    cuts: list[tuple[int, ...]]  # the chosen cut list of every row
    exact_rows: int  # rows whose every segment total matches to print precision


def fit_layout(rows: list[RowMemory], only: DeviceSpec | None = None) -> LayoutFit:
    """Paddings and per-channel bytes (and every inferred cut) that best reproduce the reported totals;
    with `only`, that device's layout is kept and only the cuts are chosen."""
    owner: list[tuple[int, int]] = []  # per candidate: (row, its index in row.cuts)
    stages: list[tuple[int, list[int], float]] = []  # per candidate stage: (candidate, TPU ops, reported MiB)
    for i, row in enumerate(rows):
        geo = model_geometry(row.family, row.x)
        for c, cuts in enumerate(row.cuts):
            owner.append((i, c))
            stages += [
                (len(owner) - 1, geo.tpu_ops(a, b), row.on[s] + row.off[s])
                for s, (a, b) in enumerate(stage_bounds(cuts, geo.n))
            ]
    keys = sorted({(row.family, row.x) for row in rows})
    offset = dict(zip(keys, np.cumsum([0] + [model_geometry(*k).n for k in keys]).tolist()))
    index = np.concatenate(
        [
            np.array(ops, dtype=np.int64) + offset[(rows[owner[g][0]].family, rows[owner[g][0]].x)]
            for g, ops, _ in stages
        ]
    )
    starts = np.cumsum([0] + [len(ops) for _, ops, _ in stages[:-1]])
    target = np.array([t for *_, t in stages])
    group = np.array([g for g, *_ in stages], dtype=np.int64)
    group_row = np.array([r for r, _ in owner], dtype=np.int64)
    best: tuple[tuple[int, float], LayoutFit] | None = None
    pads = [(only.channel_pad, only.input_pad)] if only else itertools.product(CHANNEL_PADS, INPUT_PADS)
    for cp, ip in pads:
        base = np.concatenate([_shape_layout(*k, cp, ip, 0) for k in keys])
        chans = np.concatenate([_shape_layout(*k, cp, ip, 1) for k in keys]) - base
        tot_base, tot_chan = np.add.reduceat(base[index], starts), np.add.reduceat(chans[index], starts)
        for pcb in [only.per_channel_bytes] if only else PER_CHANNEL_BYTES:
            key, choice = _score_layout((tot_base + pcb * tot_chan) / MIB, target, group, group_row)
            if best is None or key > best[0]:
                chosen = [rows[owner[g][0]].cuts[owner[g][1]] for g in choice]
                best = (key, LayoutFit(cp, ip, pcb, chosen, key[0]))
    assert best is not None
    return best[1]


@lru_cache(maxsize=2048)
def _shape_device(channel_pad: int, input_pad: int, per_channel: int) -> DeviceSpec:
    return _SHAPES.model_copy(
        update={"channel_pad": channel_pad, "input_pad": input_pad, "per_channel_bytes": per_channel}
    )


def _score_layout(totals: F64, target: F64, group: I64, group_row: I64) -> tuple[tuple[int, float], list[int]]:
    """(rows matched to print precision, -total error) and the best candidate of each row: the fewest
    segments off, then the least error, then the first."""
    err = np.abs(totals - target)
    miss = (err > 2 * print_tolerance(target)).astype(np.int64)
    first = np.flatnonzero(np.r_[True, np.diff(group) != 0])  # candidates' stages are contiguous, in order
    g_miss, g_err = np.add.reduceat(miss, first), np.add.reduceat(err, first)
    cand = np.arange(len(first))
    order = np.lexsort((cand, g_err, g_miss, group_row))
    pick = order[np.r_[True, np.diff(group_row[order]) > 0]]
    return (int(np.sum(g_miss[pick] == 0)), -round(float(np.sum(g_err[pick])), 9)), cand[pick].tolist()


@dataclass(frozen=True)
class Segment:
    """One compiled segment for the capacity fit: its weighted layers' layout, TPU in+out bytes, report."""

    layers: tuple[int, ...]
    io: int
    on: float
    off: float


def cached_mask(sizes: Sequence[int], budget: int, limit: int) -> list[bool]:
    """Which layers the caching rule keeps on chip (the rule of `greedy_cached`, for one budget)."""
    keep, used = [False] * len(sizes), 0
    for j in sorted(range(len(sizes)), key=lambda j: (-sizes[j], j)):
        if 0 < sizes[j] <= limit and used + sizes[j] <= budget:
            keep[j], used = True, used + sizes[j]
    return keep


def greedy_cached(layers: tuple[int, ...], budgets: F64, limit: float) -> F64:
    """Bytes the caching rule keeps on chip for each budget: largest layer first (ties in execution
    order), each cached when no larger than `limit` and still within the budget, else skipped."""
    cum = np.zeros(len(budgets))
    for j in sorted(range(len(layers)), key=lambda j: (-layers[j], j)):
        if layers[j] <= limit:
            cum += np.where(cum + layers[j] <= budgets, layers[j], 0)
    return cum


def hit_intervals(seg: Segment, limit: float) -> tuple[F64, F64]:
    """Budget intervals [lo, hi) in which the rule's on/off bytes are both within TOL_MIB of the report:
    the outcome only changes where the budget crosses a sum of some of the layers."""
    if len(seg.layers) > MAX_LAYERS:
        raise TpuplanError(
            f"calibrate: a measured segment has {len(seg.layers)} weighted layers (at most {MAX_LAYERS})"
        )
    sums = np.zeros(1)
    for size in seg.layers:
        sums = np.unique(np.concatenate([sums, sums + size]))
    on = greedy_cached(seg.layers, sums, limit)
    total = sum(seg.layers)
    ok = (np.abs(on / MIB - seg.on) <= TOL_MIB) & (np.abs((total - on) / MIB - seg.off) <= TOL_MIB)
    lo, hi = np.r_[-1e18, sums[1:]], np.r_[sums[1:], 1e18]
    return lo[ok], hi[ok]


@dataclass(frozen=True)
class CapacityFit:
    onchip_bytes: int
    io_reserve_frac: float
    max_cached_layer_bytes: int
    hits: int  # segments with both numbers within TOL_MIB under the search's own rule
    k_range: tuple[float, float]  # the optimal k at the chosen L


class _Intervals:
    """Every segment's hit intervals for each limit L that changes its outcome, flattened for the search."""

    def __init__(self, segs: list[Segment]) -> None:
        self.limits = np.r_[-1.0, np.unique([s for seg in segs for s in seg.layers]).astype(np.float64)]
        parts: list[tuple[F64, F64, float, int, int]] = []
        pairs: list[tuple[int, float]] = []
        for i, seg in enumerate(segs):
            distinct = sorted(set(seg.layers))
            pairs += [(i, float(d)) for d in distinct]
            for big in range(len(distinct) + 1):  # `big` of its distinct sizes lie above the limit
                lo, hi = hit_intervals(seg, distinct[len(distinct) - big - 1] if big < len(distinct) else -1.0)
                parts.append((lo, hi, float(seg.io), i, big))
        self.n_segs = len(segs)
        self.lo, self.hi = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        self.io = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
        self.seg = np.concatenate([np.full(len(p[0]), p[3], dtype=np.int64) for p in parts])
        self.big = np.concatenate([np.full(len(p[0]), p[4], dtype=np.int64) for p in parts])
        self.pair_seg = np.array([p[0] for p in pairs], dtype=np.int64)
        self.pair_size = np.array([p[1] for p in pairs])
        finite = self.hi[self.hi < 1e17]
        self.c_max = float(finite.max() if finite.size else 0.0) + float(self.io.max(initial=0.0)) + C_STEP

    def select(self, limit: float) -> npt.NDArray[np.bool_]:
        """The intervals in force when layers above `limit` are never cached."""
        big = np.bincount(self.pair_seg[self.pair_size > limit], minlength=self.n_segs)
        return np.asarray(self.big == big[self.seg])

    def grid_best(self, limit: float, ks: F64) -> npt.NDArray[np.int64]:
        """For each k, the most segments hit by one C of a grid of C_STEP bytes (a fast lower bound)."""
        m = self.select(limit)
        nb = int(self.c_max // C_STEP) + 2
        pos = np.concatenate([self.lo[m], self.hi[m]])[None, :] + ks[:, None] * np.r_[self.io[m], self.io[m]][None, :]
        bins = np.clip(np.ceil(pos / C_STEP), 0, nb - 1).astype(np.int64) + (np.arange(len(ks)) * nb)[:, None]
        sign = np.r_[np.ones(m.sum()), -np.ones(m.sum())]
        diff = np.bincount(bins.ravel(), weights=np.broadcast_to(sign, pos.shape).ravel(), minlength=len(ks) * nb)
        best: npt.NDArray[np.int64] = np.cumsum(diff.reshape(len(ks), nb), axis=1).max(axis=1).round().astype(np.int64)
        return best

    def bound(self, limit: float) -> int:
        """Segments that some (C, k) can hit at this L: an upper bound of its count, to skip hopeless L."""
        return int(np.unique(self.seg[self.select(limit)]).size)

    def _sweep(self, limit: float, k: float) -> tuple[F64, F64]:
        """Interval ends in C and the number of segments hit just after each (sorted)."""
        m = self.select(limit)
        pos = np.concatenate([self.lo[m] + k * self.io[m], self.hi[m] + k * self.io[m]])
        order = np.argsort(pos, kind="stable")
        return pos[order], np.cumsum(np.r_[np.ones(m.sum()), -np.ones(m.sum())][order])

    def most(self, limit: float, k: float) -> int:
        pos, count = self._sweep(limit, k)
        return round(float(count[:-1][np.diff(pos) > 0].max(initial=0)))

    def widest(self, limit: float, k: float) -> tuple[float, float]:
        """The widest C interval [lo, hi) hitting the most segments at this (L, k)."""
        pos, count = self._sweep(limit, k)
        top = self.most(limit, k)
        span, start = (0.0, 0.0), None
        for e in range(len(pos) - 1):
            if pos[e + 1] > pos[e]:
                start = (pos[e] if start is None else start) if round(count[e]) == top else None
                if start is not None and pos[e + 1] - start > span[1] - span[0]:
                    span = (float(start), float(pos[e + 1]))
        return span


def fit_capacity(segs: list[Segment]) -> CapacityFit:
    """C, k and L with the most segments within TOL_MIB, then the middle of the optimal region: the widest
    run of optimal L (between layer sizes), the median optimal k at that L, the middle of the C interval."""
    iv = _Intervals(segs)
    lims = iv.limits
    counts = np.zeros(len(lims), dtype=np.int64)
    for j in range(len(lims) - 1, -1, -1):  # large limits first: they score best, the rest mostly skip
        if iv.bound(float(lims[j])) >= counts.max():
            counts[j] = iv.grid_best(float(lims[j]), K_COARSE).max()
    good = counts == counts.max()
    runs = [list(g) for ok, g in itertools.groupby(range(len(lims)), key=lambda j: bool(good[j])) if ok]
    top = np.r_[lims[1:], np.inf]
    run = max(runs, key=lambda r: (top[r[-1]] - lims[r[0]], -r[0]))
    bounded = bool(np.isfinite(top[run[-1]]))
    limit = float((lims[run[0]] + top[run[-1]]) // 2 if bounded else lims[run[-1]])
    scores = np.array([iv.most(limit, float(k)) for k in K_FINE])
    opt = K_FINE[scores == scores.max()]
    k = float(opt[(len(opt) - 1) // 2])
    lo, hi = iv.widest(limit, k)
    c = max(0.0, lo) if hi >= 1e17 else (max(lo, 0.0) + hi) / 2  # unbounded above: the least C that fits
    limit_bytes = int(limit) if bounded else max(int(c), int(limit))
    return CapacityFit(int(c), round(k, 4), max(limit_bytes, 0), int(scores.max()), (float(opt[0]), float(opt[-1])))
