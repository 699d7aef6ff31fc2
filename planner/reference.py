"""Exact reference for the min-max segmentation, independent of CP-SAT, plus a brute force for tests.

A stage a..b on table t costs (see planner.costs)

    U[a] + V[b] + max(0, Sb[b] - W[a])

with U[a] = overhead + link_in[a] - C[a] - MO[a], V[b] = C[b+1] + MO[b+1] + link_out[b],
W[a] = S[last_cached[a] + 1] and Sb[b] = S[b+1]. The time is not monotone in b (link_out[b] jumps),
so "is bottleneck T feasible" is answered by reachability over all end positions, layer by layer
(stage k uses table k). When the table is regular (S nondecreasing, last_cached nondecreasing), a stage
spills exactly when a < amin[b] (the first start whose cached prefix reaches b), so each layer is a
range minimum (a in amin[b]..b, no spill) plus a prefix minimum (a < amin[b], spill): O(n log n) numpy.
Irregular tables fall back to O(n^2) numpy. The optimum is found by binary search on integer T.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tpuplan.profiles.stagecost import StageCostTable

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
INF = 2**62  # "no candidate": larger than any stage time or threshold
T_ANY = 2**60  # a threshold every finite stage passes


@dataclass(frozen=True)
class StageArrays:
    """The four per-position terms of one table, as numpy int64 arrays of length n."""

    U: I64
    V: I64
    W: I64
    Sb: I64
    LC: I64
    amin: I64  # per end b: first start a with LC[a] >= b (meaningful when regular)
    regular: bool

    @classmethod
    def of(cls, t: StageCostTable) -> StageArrays:
        n = t.n
        c = np.asarray(t.compute_prefix, dtype=np.int64)
        s = np.asarray(t.stream_prefix, dtype=np.int64)
        mo = np.asarray(t.model_out_prefix_us, dtype=np.int64)
        lc = np.asarray(t.last_cached, dtype=np.int64)
        idx = np.arange(n, dtype=np.int64)
        if np.any(lc < idx - 1) or np.any(lc > n - 1):
            raise ValueError("last_cached out of range")
        u = t.overhead_us + np.asarray(t.link_in_us, dtype=np.int64) - c[:n] - mo[:n]
        v = c[1:] + mo[1:] + np.asarray(t.link_out_us, dtype=np.int64)
        regular = bool(np.all(np.diff(s) >= 0) and np.all(np.diff(lc) >= 0))
        amin = np.searchsorted(lc, idx, side="left").astype(np.int64)
        return cls(U=u, V=v, W=s[lc + 1], Sb=s[1:], LC=lc, amin=amin, regular=regular)

    def times(self, a: int, b: I64) -> I64:
        """Stage times of a..b for an array of ends b."""
        out: I64 = self.U[a] + self.V[b] + np.maximum(0, self.Sb[b] - self.W[a])
        return out


def arrays_for(tables: Sequence[StageCostTable]) -> list[StageArrays]:
    """One StageArrays per stage, shared between stages that use the same table object."""
    cache: dict[int, StageArrays] = {}
    for t in tables:
        if id(t) not in cache:
            cache[id(t)] = StageArrays.of(t)
    return [cache[id(t)] for t in tables]


def _sparse_table(x: I64) -> I64:
    """Row j holds min(x[i .. i + 2^j - 1]) (INF past the end): O(1) range minima afterwards."""
    n = len(x)
    rows = [x]
    span = 1
    while 2 * span <= n:
        prev = rows[-1]
        nxt = np.full(n, INF, dtype=np.int64)
        nxt[: n - 2 * span + 1] = np.minimum(prev[: n - 2 * span + 1], prev[span : n - span + 1])
        rows.append(nxt)
        span *= 2
    return np.stack(rows)


def _range_min(st: I64, lo: I64, hi: I64) -> I64:
    """min(x[lo..hi]) per element; INF where the range is empty."""
    length = hi - lo + 1
    empty = length <= 0
    length = np.where(empty, 1, length)
    level = np.minimum(np.frexp(length.astype(np.float64))[1] - 1, st.shape[0] - 1).astype(np.int64)
    lo_c = np.where(empty, 0, lo)
    hi2 = np.where(empty, 0, hi - (np.int64(1) << level) + 1)
    out = np.minimum(st[level, lo_c], st[level, hi2])
    return np.where(empty, INF, out)


def forward(arr: StageArrays, start_ok: Mask, t_max: int, onchip: bool) -> Mask:
    """Ends b reachable by one stage from some allowed start with time <= t_max."""
    n = len(arr.U)
    if arr.regular:
        b = np.arange(n, dtype=np.int64)
        u = np.where(start_ok, arr.U, INF)
        m1 = _range_min(_sparse_table(u), arr.amin, b)
        ok: Mask = m1 <= t_max - arr.V
        if not onchip:
            pm = np.minimum.accumulate(np.where(start_ok, arr.U - arr.W, INF))
            m2 = np.where(arr.amin >= 1, pm[np.maximum(arr.amin - 1, 0)], INF)
            ok |= m2 <= t_max - arr.V - arr.Sb
        return ok
    ok = np.zeros(n, dtype=np.bool_)
    for a in np.flatnonzero(start_ok):
        bs = np.arange(a, n, dtype=np.int64)
        good = arr.times(int(a), bs) <= t_max
        if onchip:
            good &= bs <= arr.LC[a]
        ok[a:] |= good
    return ok


def backward(arr: StageArrays, end_ok: Mask, t_max: int, onchip: bool) -> Mask:
    """Starts a from which one stage reaches an allowed end with time <= t_max."""
    n = len(arr.U)
    if arr.regular:
        a = np.arange(n, dtype=np.int64)
        v = np.where(end_ok, arr.V, INF)
        m1 = _range_min(_sparse_table(v), a, arr.LC)
        ok: Mask = m1 <= t_max - arr.U
        if not onchip:
            sm = np.minimum.accumulate(np.where(end_ok, arr.V + arr.Sb, INF)[::-1])[::-1]
            nxt = arr.LC + 1
            m2 = np.where(nxt < n, sm[np.minimum(nxt, n - 1)], INF)
            ok |= m2 <= t_max - arr.U + arr.W
        return ok
    ok = np.zeros(n, dtype=np.bool_)
    for b in np.flatnonzero(end_ok):
        starts = np.arange(0, b + 1, dtype=np.int64)
        tt = arr.U[: b + 1] + arr.V[b] + np.maximum(0, arr.Sb[b] - arr.W[: b + 1])
        good = tt <= t_max
        if onchip:
            good &= arr.LC[: b + 1] >= b
        ok[starts] |= good
    return ok


def _next_starts(end_ok: Mask) -> Mask:
    start_ok = np.zeros_like(end_ok)
    start_ok[1:] = end_ok[:-1]
    return start_ok


def forward_masks(arrs: Sequence[StageArrays], t_max: int, onchip: bool) -> list[Mask] | None:
    """Reachable ends after each stage with every stage <= t_max, or None when n-1 is unreachable."""
    n, k = len(arrs[0].U), len(arrs)
    start_ok = np.zeros(n, dtype=np.bool_)
    start_ok[0] = True
    out = []
    for s, arr in enumerate(arrs):
        end_ok = forward(arr, start_ok, t_max, onchip)
        end_ok[:s] = False  # stage s ends at op >= s
        if s < k - 1:  # and leaves one op for each later stage
            end_ok[n - (k - 1 - s) :] = False
        out.append(end_ok)
        if not end_ok.any():
            return None
        start_ok = _next_starts(end_ok)
    return out if out[-1][n - 1] else None


def windows(arrs: Sequence[StageArrays], t_max: int, onchip: bool) -> list[I64] | None:
    """For each cut k < K-1, the ends that lie on some plan with every stage <= t_max."""
    fwd = forward_masks(arrs, t_max, onchip)
    if fwd is None:
        return None
    n, k = len(arrs[0].U), len(arrs)
    end_ok = np.zeros(n, dtype=np.bool_)
    end_ok[n - 1] = True
    out: list[I64] = []
    for s in range(k - 1, 0, -1):
        start_ok = backward(arrs[s], end_ok, t_max, onchip)
        end_ok = np.zeros(n, dtype=np.bool_)
        end_ok[:-1] = start_ok[1:]
        end_ok &= fwd[s - 1]
        out.append(np.flatnonzero(end_ok).astype(np.int64))
    out.reverse()
    return out


def backtrack(arrs: Sequence[StageArrays], fwd: Sequence[Mask], t_max: int, onchip: bool) -> list[int]:
    """One plan through the reachable ends (the latest feasible start of each stage)."""
    n = len(arrs[0].U)
    cuts: list[int] = []
    b = n - 1
    for s in range(len(arrs) - 1, 0, -1):
        arr = arrs[s]
        starts = np.arange(1, b + 1, dtype=np.int64)
        tt = arr.U[starts] + arr.V[b] + np.maximum(0, arr.Sb[b] - arr.W[starts])
        good = fwd[s - 1][starts - 1] & (tt <= t_max)
        if onchip:
            good &= arr.LC[starts] >= b
        a = int(starts[np.flatnonzero(good)[-1]])
        cuts.append(a - 1)
        b = a - 1
    cuts.reverse()
    return cuts


def bottleneck_of(tables: Sequence[StageCostTable], cuts: Sequence[int]) -> int:
    ends = [*cuts, tables[0].n - 1]
    starts = [0, *(c + 1 for c in cuts)]
    return max(tables[i].stage_time_us(a, b) for i, (a, b) in enumerate(zip(starts, ends, strict=True)))


def lower_bound(tables: Sequence[StageCostTable]) -> int:
    """A cheap valid lower bound on the bottleneck: the heaviest single op, and the average stage."""
    comp = np.stack([np.diff(np.asarray(t.compute_prefix, dtype=np.int64)) for t in tables])
    outs = np.stack([np.diff(np.asarray(t.model_out_prefix_us, dtype=np.int64)) for t in tables])
    ovh = min(t.overhead_us for t in tables)
    single = int(np.max(np.min(comp, axis=0))) + ovh
    total = sum(t.overhead_us for t in tables) + int(np.sum(np.min(comp + outs, axis=0)))
    total += tables[0].link_in_us[0] + tables[-1].link_out_us[-1]
    return max(0, single, -(-total // len(tables)))


@dataclass(frozen=True)
class ReferenceResult:
    bottleneck: int
    cuts: list[int]
    proven: bool  # False when the deadline stopped the binary search early
    probes: int


def reference_solve(
    tables: Sequence[StageCostTable], *, onchip: bool, deadline: float | None = None
) -> ReferenceResult | None:
    """Exact min-max bottleneck over K = len(tables) stages, or None when no plan exists."""
    arrs = arrays_for(tables)
    fwd = forward_masks(arrs, T_ANY, onchip)
    if fwd is None:
        return None
    cuts = backtrack(arrs, fwd, T_ANY, onchip)
    hi = bottleneck_of(tables, cuts)
    lo = min(lower_bound(tables), hi)
    probes, proven = 1, True
    while lo < hi:
        if deadline is not None and time.monotonic() > deadline:
            proven = False
            break
        mid = (lo + hi) // 2
        probes += 1
        masks = forward_masks(arrs, mid, onchip)
        if masks is None:
            lo = mid + 1
        else:
            cuts = backtrack(arrs, masks, mid, onchip)
            hi = bottleneck_of(tables, cuts)
    return ReferenceResult(bottleneck=hi, cuts=cuts, proven=proven, probes=probes)


def fewest_onchip_stages(tables: Sequence[StageCostTable]) -> int | None:
    """Fewest stages with every stage on chip (stage s on tables[min(s, len-1)]); None if impossible.

    Greedy from the left is exact for regular tables: ending each stage as late as it fits never
    leaves a later stage a worse start, because a later start never caches less.
    """
    arrs = arrays_for(tables)
    n = tables[0].n
    if all(a.regular for a in arrs):
        a, count = 0, 0
        while a < n:
            t = tables[min(count, len(tables) - 1)]
            e = t.last_cached[a]
            if e < a:
                return None
            count, a = count + 1, e + 1
        return count
    start_ok = np.zeros(n, dtype=np.bool_)
    start_ok[0] = True
    for count in range(1, n + 1):
        end_ok = forward(arrs[min(count - 1, len(arrs) - 1)], start_ok, T_ANY, True)
        if end_ok[n - 1]:
            return count
        start_ok = _next_starts(end_ok)
        if not start_ok.any():
            return None
    return None


def brute_force(tables: Sequence[StageCostTable], *, onchip: bool) -> tuple[int, int, list[int]] | None:
    """(bottleneck, sum of stage times, cuts): the least such triple over every cut set. Tiny n only."""
    n, k = tables[0].n, len(tables)
    best: tuple[int, int, list[int]] | None = None
    for cuts in itertools.combinations(range(n - 1), k - 1):
        times = []
        a = 0
        for s, b in enumerate([*cuts, n - 1]):
            if onchip and not tables[s].fits_on_chip(a, b):
                break
            times.append(tables[s].stage_time_us(a, b))
            a = b + 1
        else:
            key = (max(times), sum(times), list(cuts))
            if best is None or key < best:
                best = key
    return best


_BIG = 2**61  # "impossible" in the tie-break DP: two of them still fit in int64
_CHUNK = 1 << 22  # matrix cells per numpy block


def _stage_matrix(arr: StageArrays, prev_ends: I64, ends: I64, t_max: int, onchip: bool) -> I64:
    """Stage times for every (previous end, end) pair; _BIG where not allowed."""
    a = (prev_ends + 1)[:, None]
    b = ends[None, :]
    tt = arr.U[a] + arr.V[b] + np.maximum(0, arr.Sb[b] - arr.W[a])
    ok = (b >= a) & (tt <= t_max)
    if onchip:
        ok &= b <= arr.LC[a]
    return np.where(ok, tt, _BIG)


def pin_ties(
    arrs: Sequence[StageArrays],
    doms: Sequence[I64],
    t_max: int,
    onchip: bool,
    deadline: float | None = None,
) -> tuple[int, list[int]] | None:
    """Among plans with every stage <= t_max, the least total time, then the smallest cut list.

    Exact DP over the narrowed end domains (every such plan lies in them): cost-to-go from each end,
    then a forward pass taking the smallest end that keeps the least total. None on timeout/no plan.
    """
    n, k = len(arrs[0].U), len(arrs)
    layers = [np.array([-1], dtype=np.int64), *(np.asarray(d, dtype=np.int64) for d in doms)]
    layers.append(np.array([n - 1], dtype=np.int64))
    togo: list[I64] = [np.zeros(1, dtype=np.int64)]  # togo[0] is for the last layer
    for s in range(k - 1, -1, -1):
        prev, ends, nxt = layers[s], layers[s + 1], togo[-1]
        best = np.empty(len(prev), dtype=np.int64)
        rows = max(1, _CHUNK // max(len(ends), 1))
        for i in range(0, len(prev), rows):
            if deadline is not None and time.monotonic() > deadline:
                return None
            m = _stage_matrix(arrs[s], prev[i : i + rows], ends, t_max, onchip)
            best[i : i + rows] = np.minimum(np.min(m + nxt[None, :], axis=1), _BIG)
        togo.append(best)
    togo.reverse()  # togo[s]: least total of stages s.. given the end of layer s (togo[0]: from the start)
    total = int(togo[0][0])
    if total >= _BIG:
        return None
    cuts: list[int] = []
    prev_end, budget = -1, total
    for s in range(k - 1):
        ends = layers[s + 1]
        cost = _stage_matrix(arrs[s], np.array([prev_end], dtype=np.int64), ends, t_max, onchip)[0]
        j = int(np.flatnonzero(cost + togo[s + 1] == budget)[0])
        cuts.append(int(ends[j]))
        budget -= int(cost[j])
        prev_end = int(ends[j])
    return total, cuts
