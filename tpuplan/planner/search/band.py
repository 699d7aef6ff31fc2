"""The band: every stage a table priced for a question, read for every layer of a plan at once.

`sweep` works out, for every stage of the band, the least each component can be over whole plans
through it (a shortest path from the first op and one to the last, over every layer), drops the stages
no plan within the question's caps uses, and keeps the rest as `problem.Choices` per layer: usually a
few per layer, which the label search, the bounds and CP-SAT then read. `bottleneck` walks the same
shortest paths to a plan of the least largest stage time (the planner's first plan) without keeping any
choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tpuplan.planner.costs import Goal
from tpuplan.planner.search.problem import (
    BIG,
    I64,
    Choices,
    Component,
    Problem,
    Question,
    capped,
    comp_matrix,
    copies_needed,
    in_loop,
    interval,
    reachable,
    stage_cap,
    within,
)
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.formula import PERIOD_BOUNDS
from tpuplan.profiles.pricing.tables import Arcs, TooManyStages

_CHUNK = 1 << 20  # stages whose values are gathered at once
MAX_CHOICES = 1 << 22  # choices a sweep keeps over all layers (a search over more would not finish in time)


@dataclass
class Windows:
    """For every layer, the nodes its stages may start at and end at (op boundaries 0..n): reachable from
    the first op with that many stages before, and able to reach the last op with the stages left (an
    interval around each: a superset, so nothing is lost). Near the optimum of many stages they are
    narrow, and a layer reads only the stages between them."""

    start_lo: I64
    start_hi: I64
    end_lo: I64
    end_hi: I64

    @staticmethod
    def of(problem: Problem, opts: Sequence[_Option]) -> Windows:
        n, k = problem.n, problem.k
        far = np.full(n + 1, -1, dtype=np.int64)
        for op in opts:
            np.maximum.at(far, op.p1, op.e1)
        reach = np.maximum.accumulate(far)  # the farthest end node from any start at or before a node
        fwd_lo, fwd_hi = [0], [0]
        for _ in range(k):
            hi = int(reach[min(fwd_hi[-1], n)])
            fwd_lo.append(min(fwd_lo[-1] + 1, n))
            fwd_hi.append(max(hi, fwd_lo[-1]) if hi >= 0 else -1)
        back_lo, back_hi = [n] * (k + 1), [n] * (k + 1)
        for s in range(k - 1, -1, -1):
            back_lo[s] = int(np.searchsorted(reach, back_lo[s + 1]))
            back_hi[s] = n - 1 if problem.open_end else back_hi[s + 1] - 1
        start_lo = np.array([max(fwd_lo[s], back_lo[s]) for s in range(k)], dtype=np.int64)
        start_hi = np.array([min(fwd_hi[s], back_hi[s]) for s in range(k)], dtype=np.int64)
        end_lo = np.array([max(fwd_lo[s + 1], back_lo[s + 1]) for s in range(k)], dtype=np.int64)
        end_hi = np.array([min(fwd_hi[s + 1], back_hi[s + 1] if not problem.open_end else n) for s in range(k)])
        return Windows(start_lo, start_hi, end_lo, end_hi.astype(np.int64))


@dataclass
class _Option:
    """One option's stages that a question allows, sorted by end: where they are in the view (`idx`),
    the nodes before and after them, their copies and component values. Choices are made only of the
    few a sweep keeps (`choices`), so a band of millions of stages costs a few arrays."""

    o: int
    view: Arcs
    idx: I64
    p1: I64  # node before the stage (its first op)
    e1: I64  # node after it
    r: I64
    mat: I64

    def layer(self, w: Windows, s: int) -> I64:
        """The stages layer s may take: starts and ends inside its windows."""
        lo, hi = np.searchsorted(self.p1, [w.start_lo[s], w.start_hi[s] + 1])
        e = self.e1[lo:hi]
        out: I64 = lo + np.flatnonzero((e >= w.end_lo[s]) & (e <= w.end_hi[s]))
        return out

    def choices(self, sel: I64) -> Choices:
        at = self.idx[sel]
        values = {k: v[at].astype(np.int64) for k, v in self.view.values.items()}
        o = np.full(len(sel), self.o, dtype=np.int64)
        return Choices(self.p1[sel] - 1, self.e1[sel] - 1, o, self.r[sel], values)


def _option(problem: Problem, q: Question, o: int, view: Arcs, comps: Sequence[Component]) -> _Option:
    """The stages of one option's view that q allows (valid, on chip when imposed, within the stage cap
    and the filtered bounds; with copies, the fewest copies that meet q's period), in the view's order
    (by start, then end)."""
    time = view.values["time"]
    ok = view.valid & view.onchip if problem.onchip else view.valid.copy()
    ok &= time <= stage_cap(problem, q)
    r = None
    if problem.copies and q.period_for_copies is not None:
        sel = np.flatnonzero(ok)
        t64, s64 = time[sel].astype(np.int64), view.values["serial"][sel].astype(np.int64)
        need = copies_needed(t64, s64, q.period_for_copies, problem.max_copies())
        a64, b64 = view.a[sel].astype(np.int64), view.b[sel].astype(np.int64)
        need = np.where(in_loop(problem.loops, a64 - 1, b64) & (need > 1), BIG, need)
        ok[sel] &= need < BIG
        r = np.ones(len(time), dtype=np.int64)
        r[sel] = np.minimum(need, BIG - 1)
    idx = np.flatnonzero(ok)
    r_idx = np.ones(len(idx), dtype=np.int64) if r is None else r[idx]
    p1, e1 = view.a[idx].astype(np.int64), view.b[idx].astype(np.int64) + 1
    op = _Option(o, view, idx, p1, e1, r_idx, np.zeros((len(idx), 0), dtype=np.int64))
    keeps, mats = [], []
    for lo in range(0, len(idx), _CHUNK):  # the filtered bounds and component values, a chunk at a time
        c = op.choices(np.arange(lo, min(lo + _CHUNK, len(idx))))
        keep = capped(problem, q, c)
        keeps.append(lo + np.flatnonzero(keep))
        mats.append(comp_matrix(problem, comps, c.take(keep)))
    keep_all = np.concatenate(keeps) if keeps else np.zeros(0, dtype=np.int64)
    mat = np.concatenate(mats) if mats else np.zeros((0, len(comps)), dtype=np.int64)
    return _Option(o, view, idx[keep_all], p1[keep_all], e1[keep_all], r_idx[keep_all], mat)


def empty_choice(problem: Problem) -> Choices:
    n = problem.n
    one = np.array([n - 1], dtype=np.int64)
    zero = np.zeros(1, dtype=np.int64)
    return Choices(one, one.copy(), np.array([-1]), zero, {k: zero.copy() for k in problem.options[0].table.value_keys})


def _joins(comps: Sequence[Component]) -> list[Any]:
    return [np.maximum if c.combine == "max" else np.add for c in comps]


def _forward(problem: Problem, comps: Sequence[Component], opts: Sequence[_Option], w: Windows) -> list[I64]:
    """pre[s][x]: the least of each component over the first s stages ending before op x ([n + 1, d])."""
    n, d = problem.n, len(comps)
    joins = _joins(comps)
    pre = [np.full((n + 1, d), BIG, dtype=np.int64)]
    pre[0][0] = 0
    for s in range(problem.k):
        nxt = np.full((n + 1, d), BIG, dtype=np.int64)
        for o in problem.layers[s]:
            op = opts[o]
            sl = op.layer(w, s)
            for j in range(d):
                vals = np.minimum(joins[j](pre[s][op.p1[sl], j], op.mat[sl, j]), BIG)
                np.minimum.at(nxt[:, j], op.e1[sl], vals)
        if problem.open_end and s >= 1:
            nxt[n] = np.minimum(nxt[n], pre[s][n])
        pre.append(nxt)
    return pre


def _backward(problem: Problem, comps: Sequence[Component], opts: Sequence[_Option], w: Windows) -> list[I64]:
    """suf[s][x]: the least of each component over stages s.. starting at op x ([n + 1, d])."""
    n, k, d = problem.n, problem.k, len(comps)
    joins = _joins(comps)
    suf = [np.full((n + 1, d), BIG, dtype=np.int64) for _ in range(k + 1)]
    suf[k][n] = 0
    for s in range(k - 1, -1, -1):
        for o in problem.layers[s]:
            op = opts[o]
            sl = op.layer(w, s)
            for j in range(d):
                vals = np.minimum(joins[j](op.mat[sl, j], suf[s + 1][op.e1[sl], j]), BIG)
                np.minimum.at(suf[s][:, j], op.p1[sl], vals)
        if problem.open_end and s >= 1:
            suf[s][n] = np.minimum(suf[s][n], suf[s + 1][n])
    return suf


def _options(problem: Problem, q: Question, views: Sequence[Arcs], comps: Sequence[Component]) -> list[_Option]:
    return [_option(problem, q, o, view, comps) for o, view in enumerate(views)]


def sweep(problem: Problem, q: Question, views: Sequence[Arcs]) -> list[Choices]:
    """The choices of every layer that lie on some plan within q, judged by the least each component can
    be over whole plans through them (one pass over the band; `prune.prune` repeats it on what is left)."""
    comps = reachable(q.comps)
    opts = _options(problem, q, views, comps)
    w = Windows.of(problem, opts)
    pre, suf = _forward(problem, comps, opts, w), _backward(problem, comps, opts, w)
    joins = _joins(comps)
    layers, kept = [], 0
    for s in range(problem.k):
        parts = []
        for o in problem.layers[s]:
            op = opts[o]
            sl = op.layer(w, s)
            cols = [
                np.minimum(joins[j](joins[j](pre[s][op.p1[sl], j], op.mat[sl, j]), suf[s + 1][op.e1[sl], j]), BIG)
                for j in range(len(comps))
            ]
            keep = within(q, comps, np.stack(cols, axis=1), problem.start_us)
            kept += int(keep.sum())
            if kept > MAX_CHOICES:
                raise TooManyStages(
                    f"more than {MAX_CHOICES:,} stage choices lie on plans within {q.objective:,} us (the "
                    "objective hardly depends on where the cuts fall); not searched to the end"
                )
            parts.append(op.choices(sl[keep]))
        if problem.open_end and s >= 1:
            parts.append(empty_choice(problem))
        layers.append(Choices.concat(parts))
    return layers


def band_bound(problem: Problem, q: Question, views: Sequence[Arcs]) -> int:
    """A lower bound of the least period over the views' stages (plans whose period is at most q's cap):
    for each first stage, the largest of the period bounds' least values over whole plans through it
    (one backward pass, no choice kept). With copies, each stage is read with as many copies as it
    could have, and devices are not counted."""
    comps = tuple(Component(b.name, b.combine) for b in problem.bounds)
    opts = _options(problem, q, views, comps)
    if problem.copies:
        most = problem.max_copies()
        for op in opts:
            c = op.choices(np.arange(len(op.idx)))
            r = np.where(in_loop(problem.loops, c.p, c.e), 1, most)
            op.mat[:, 0] = interval(c.values["time"], c.values["serial"], r)
    suf = _backward(problem, comps, opts, Windows.of(problem, opts))
    joins = _joins(comps)
    best = BIG
    for o in problem.layers[0]:
        op = opts[o]
        first = np.flatnonzero(op.p1 == 0)
        if first.size:
            cols = [np.minimum(joins[j](op.mat[first, j], suf[1][op.e1[first], j]), BIG) for j in range(len(comps))]
            best = min(best, int(np.stack(cols, axis=1).max(axis=1).min()))
    return best


def bottleneck(problem: Problem, views: Sequence[Arcs], cap: int) -> tuple[list[int], list[int], list[int]] | None:
    """(cuts, options, copies) of a plan of the least largest stage time among the views' stages within
    `cap` (copies: the fewest that meet the cap), found by walking the shortest paths of the largest stage
    time (for problems without device counts, it alone decides); None if none."""
    stage = (Component(PERIOD_BOUNDS[0].name, "max"),)
    q = Question(Goal(), cap, period_for_copies=cap if problem.copies else None, comps=stage)
    opts = _options(problem, q, views, stage)
    w = Windows.of(problem, opts)
    suf = _backward(problem, stage, opts, w)
    best = int(suf[0][0, 0])
    if best >= BIG:
        return None
    n, node, peak = problem.n, 0, 0
    ends, options, copies = [], [], []
    for s in range(problem.k):
        if node == n:
            break
        for o in problem.layers[s]:
            op = opts[o]
            sl = op.layer(w, s)
            idx = sl[op.p1[sl] == node]
            fine = np.maximum(np.maximum(peak, op.mat[idx, 0]), suf[s + 1][op.e1[idx], 0]) <= best
            if fine.any():
                j = int(idx[int(np.argmax(fine))])
                ends.append(int(op.e1[j]) - 1)
                options.append(o)
                copies.append(int(op.r[j]))
                peak, node = max(peak, int(op.mat[j, 0])), int(op.e1[j])
                break
        else:
            raise TpuplanError("internal error: no stage continues the least bottleneck path")
    return ends[:-1], options, copies
