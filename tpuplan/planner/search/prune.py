"""Bounds on every stage choice of the CP-SAT model, so that "no plan below v" is often settled before
any search, and what is left for CP-SAT is small.

An arc (stage s takes ops p+1..e) lies on some plan; the cheapest such plan in each cost alone is a
shortest path: the least sum of stage times T, serialized shares S, bus times V and one-offs O over
the stages before it (a prefix) and after it (a suffix), and the least largest stage time. Each plan
through the arc costs at least

    P >= max(T_arc, least largest stage time, least S, least V)       L >= least T       O >= least O

so J = alpha P + beta L + gamma O is at least alpha x that P bound + beta x that L bound + gamma x ... .
An arc whose bound is above the cap (or whose secondary bound is above its cap) is on no plan within
the cap and is dropped; dropping arcs raises the bounds of the others, so this repeats until nothing
changes. If no path is left, no plan is within the cap: that is a proof by shortest paths alone,
independent of the label-setting reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tpuplan.planner.costs import Goal
from tpuplan.planner.search.labels import I64
from tpuplan.profiles.pricing.formula import PERIOD_BOUNDS
from tpuplan.profiles.pricing.tables import StageCostTable

Arcs = list[tuple[I64, I64]]  # per stage: (previous end, end) of each allowed choice
BIG = 2**40  # above any real sum of microseconds; alpha x BIG stays inside int64


@dataclass(frozen=True)
class Caps:
    """What a plan must stay within: objective J, and the secondary number (latency for a throughput goal,
    period for a latency goal) when given; `fixed` ends of the first stages and a bound on the next one."""

    objective: int
    secondary: int | None = None
    fixed: tuple[int, ...] = ()
    next_end_at_most: int | None = None


def restrict(arcs: Arcs, caps: Caps) -> Arcs:
    """The arcs that keep the fixed ends and the bound on the next end."""
    out: Arcs = []
    for s, (ps, es) in enumerate(arcs):
        ok = np.ones(len(ps), dtype=np.bool_)
        if s < len(caps.fixed):
            ok &= es == caps.fixed[s]
        if 0 < s <= len(caps.fixed):
            ok &= ps == caps.fixed[s - 1]
        if s == len(caps.fixed) and caps.next_end_at_most is not None:
            ok &= es <= caps.next_end_at_most
        out.append((ps[ok], es[ok]))
    return out


def _values(tables: Sequence[StageCostTable], arcs: Arcs, name: str) -> list[I64]:
    return [t.value(name)[ps + 1, es] for t, (ps, es) in zip(tables, arcs, strict=True)]


def _sweep(arcs: Arcs, vals: list[I64], n: int, peak: bool) -> tuple[list[I64], list[I64]]:
    """Least prefix and suffix (sum, or largest stage when `peak`) at every node (end + 1) of every layer."""
    k = len(arcs)
    join = np.maximum if peak else np.add
    pre = [np.full(n + 1, BIG, dtype=np.int64)]
    pre[0][0] = 0
    for (ps, es), v in zip(arcs, vals, strict=True):
        nxt = np.full(n + 1, BIG, dtype=np.int64)
        np.minimum.at(nxt, es + 1, np.minimum(join(pre[-1][ps + 1], v), BIG))
        pre.append(nxt)
    suf: list[I64] = [np.full(n + 1, BIG, dtype=np.int64) for _ in range(k + 1)]
    suf[k][n] = 0
    for s in range(k - 1, -1, -1):
        ps, es = arcs[s]
        np.minimum.at(suf[s], ps + 1, np.minimum(join(suf[s + 1][es + 1], vals[s]), BIG))
    return pre, suf


def _through(arcs: Arcs, vals: list[I64], n: int, peak: bool) -> list[I64]:
    """For every arc: the least (sum or largest stage) of a whole plan through it."""
    pre, suf = _sweep(arcs, vals, n, peak)
    join = np.maximum if peak else np.add
    return [
        np.minimum(join(join(pre[s][ps + 1], v), suf[s + 1][es + 1]), BIG)
        for s, ((ps, es), v) in enumerate(zip(arcs, vals, strict=True))
    ]


def prune(tables: Sequence[StageCostTable], arcs: Arcs, goal: Goal, caps: Caps) -> Arcs:
    """The arcs that can lie on a plan within `caps`, to a fixed point."""
    n = tables[0].n
    arcs = restrict(arcs, caps)
    start = tables[0].start_us
    while True:
        bounds = [_through(arcs, _values(tables, arcs, b.value), n, b.combine == "max") for b in PERIOD_BOUNDS]
        latency_all = _through(arcs, _values(tables, arcs, "time"), n, False)
        oneoff_all = _through(arcs, _values(tables, arcs, "oneoff"), n, False)
        keep = []
        for j in range(len(arcs)):
            period = bounds[0][j]
            for each in bounds[1:]:
                period = np.maximum(period, each[j])
            latency, oneoff = latency_all[j], np.minimum(oneoff_all[j] + start, BIG)
            ok = goal.objective_of(period, latency, oneoff) <= caps.objective
            ok &= (period < BIG) & (latency < BIG)
            if caps.secondary is not None:
                ok &= goal.secondary_of(period, latency) <= caps.secondary
            keep.append(ok)
        if all(bool(k.all()) for k in keep):
            return arcs
        arcs = [(ps[k], es[k]) for (ps, es), k in zip(arcs, keep, strict=True)]


def has_plan(arcs: Arcs) -> bool:
    """Whether the arcs still make a whole plan (after `prune`, every arc left lies on one)."""
    return all(len(ps) for ps, _ in arcs)


def ends_of(arcs: Arcs) -> list[list[int]]:
    """The domain of each cut: ends of stage s that stage s+1 starts after."""
    return [sorted(set(arcs[s][1].tolist()) & set(arcs[s + 1][0].tolist())) for s in range(len(arcs) - 1)]
