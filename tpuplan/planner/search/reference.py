"""Exact searches by labels (`planner.search.labels`), independent of CP-SAT, plus brute forces for tests.

`least` finds the least objective J of a problem over the choices the bounds left: labels carry every
component J needs and drop what cannot finish within the cap (their own components joined with the
least the stages after them can add). The least period (J = P, with or without copies) is found faster
by asking "is there a plan of period <= t?" for t between the bounds' lower bound and the best plan
known (a binary search, usually settled at once): then only the sums of the period bounds are labels'
components, every stage time is capped by t, and with copies each stage takes the fewest copies that
meet t. `pin` picks one plan among those of objective v: the least of the ranked numbers (fewest
devices, least latency, ...), then the smallest (end, device kind, copies) stage by stage, found exactly
by one label search from the last op back and a pass forward.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.planner.costs import Goal, Totals, totals
from tpuplan.planner.search.labels import Labels, backtrack, join_all, run_labels
from tpuplan.planner.search.problem import (
    BIG,
    I64,
    Choices,
    Component,
    Problem,
    Question,
    capped,
    copies_needed,
    in_loop,
    is_bound,
    objective_of,
    stage_cap,
    within,
)
from tpuplan.planner.search.prune import has_plan, sweeps
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.plancost import stage_pairs
from tpuplan.profiles.pricing.tables import StageCostTable


@dataclass(frozen=True)
class Picked:
    """A plan as its stages: where each ends (but the last), its option, its copies."""

    cuts: list[int]
    options: list[int]
    copies: list[int]

    @property
    def stages(self) -> int:
        return len(self.options)


def picked(layers: Sequence[Choices], picks: Sequence[int]) -> Picked:
    """The plan of one choice per layer (empty choices left out)."""
    cuts, options, copies = [], [], []
    for c, j in zip_strict(layers, picks):
        if int(c.opt[j]) >= 0:
            cuts.append(int(c.e[j]))
            options.append(int(c.opt[j]))
            copies.append(int(c.r[j]))
    return Picked(cuts[:-1], options, copies)


def plan_totals(problem: Problem, goal: Goal, pk: Picked) -> Totals:
    """The plan's numbers, priced again by the formula from its tables."""
    tables = [problem.options[o].table for o in pk.options]
    return totals(tables, pk.cuts, goal, pk.copies if problem.copies else None, problem.bounds)


def _joins(comps: Sequence[Component]) -> list[object]:
    return [np.maximum if c.combine == "max" else np.add for c in comps]


def _labels(
    problem: Problem,
    q: Question,
    layers: Sequence[Choices],
    deadline: float | None,
    until: Callable[[Labels], bool] | None = None,
) -> list[Labels]:
    """The labels of the plans within q's bounds, forward layer by layer (`until`: stop after the first
    layer for which it holds)."""
    _, suf, mats = sweeps(problem, q.comps, layers)
    return run_labels(
        layers,
        mats,
        _joins(q.comps),  # type: ignore[arg-type]
        problem.n,
        keep=lambda whole: within(q, q.comps, whole, problem.start_us),
        tails=suf[1:],
        deadline=deadline,
        until=until,
    )


def search(
    problem: Problem, q: Question, layers: Sequence[Choices], deadline: float | None = None
) -> tuple[int, Picked] | None:
    """The least objective over the choices (within q's caps) and a plan reaching it; None if none."""
    comps = q.comps
    layers = [c.take(capped(problem, q, c) | (c.opt < 0)) for c in layers]  # the bounds read as filters
    if not has_plan(layers):
        return None
    start = problem.start_us
    got = _labels(problem, q, layers, deadline)
    last = got[-1]
    done = np.flatnonzero(last.node == problem.n)
    if not done.size:
        return None
    j, _ = objective_of(q, comps, last.comps[done], start)
    plan = picked(layers, backtrack(got, int(done[int(np.argmin(j))])))
    return plan_totals(problem, q.goal, plan).objective, plan


def at_period(problem: Problem, q: Question, base: Sequence[Choices], t: int) -> list[Choices]:
    """The choices of `base` (narrowed for a larger period) that a plan of period <= t may take: the
    stage's time within t (with copies: the fewest copies that make it so)."""
    out = []
    cap = stage_cap(problem, replace(q, objective=t, period_for_copies=t))
    for c in base:
        keep = c.values["time"] <= cap
        if problem.copies:
            limit = problem.max_copies()
            r = copies_needed(c.values["time"], c.values["serial"], t, limit)
            r = np.where(in_loop(problem.loops, c.p, c.e) & (r > 1), BIG, r)
            r = np.where(c.opt < 0, 0, r)
            c = Choices(c.p, c.e, c.opt, np.where(r >= BIG, 0, r), c.values)
            keep &= r < BIG
        keep &= capped(problem, replace(q, objective=t), c)
        out.append(c.take(keep | (c.opt < 0)))
    return out


def fewest_stages(
    problem: Problem, q: Question, layers: Sequence[Choices], deadline: float | None = None
) -> tuple[int, int] | None:
    """(fewest stages of a plan within q, the least secondary number of those plans) for a problem whose
    plans may stop early: the first layer at which some label reaches the last op."""
    if not has_plan(layers):
        return None
    comps, start = q.comps, problem.start_us
    got = _labels(problem, q, layers, deadline, until=lambda labels: bool((labels.node == problem.n).any()))
    for s, labels in enumerate(got):
        done = labels.node == problem.n
        if done.any():
            _, second = objective_of(q, comps, labels.comps[done], start)
            return s + 1, int(second.min())
    return None


def pin(
    problem: Problem,
    q: Question,
    layers: Sequence[Choices],
    rank: Sequence[str],
    deadline: float | None = None,
) -> Picked | None:
    """Among the plans within q (q.objective: the proven optimum) the least of the `rank` numbers in
    order, then the smallest (end, option, copies) stage by stage; None if none is within q. `q.comps`
    must hold the ranked components ("P" is the period, read from the period bounds)."""
    comps, start, n = q.comps, problem.start_us, problem.n
    if not has_plan(layers):
        return None
    pre, _, mats = sweeps(problem, comps, layers)
    joins = _joins(comps)
    ok = lambda whole: within(q, comps, whole, start)  # noqa: E731
    back = run_labels(layers, mats, joins, n, backward=True, keep=ok, tails=pre[-2::-1], deadline=deadline)  # type: ignore[arg-type]
    whole = back[-1].comps[back[-1].node == 0]
    if not len(whole):
        return None
    best = min(map(tuple, _ranked(q, comps, whole, rank, start).tolist()))
    prefix, node, picks = np.zeros(len(comps), dtype=np.int64), 0, []
    k = len(layers)
    for s in range(k):
        c, mat = layers[s], mats[s]
        cand = np.flatnonzero(c.p + 1 == node)
        cand = cand[np.lexsort((c.r[cand], c.opt[cand], c.e[cand]))]
        heads = join_all(joins, prefix[None, :], mat[cand])  # type: ignore[arg-type]
        after = back[k - 2 - s] if s < k - 1 else None
        pick = _first_completing(q, comps, heads, c.e[cand] + 1, after, n, rank, best, start)
        if pick is None:
            raise TpuplanError(f"internal error: no choice of stage {s} completes the pinned plan")
        j = int(cand[pick])
        picks.append(j)
        prefix, node = heads[pick], int(c.e[j]) + 1
    return picked(layers, picks)


def _ranked(q: Question, comps: Sequence[Component], whole: I64, rank: Sequence[str], start: int) -> I64:
    names = [c.name for c in comps]
    cols = []
    for r in rank:
        if r == "P":
            bounds = [j for j, c in enumerate(comps) if is_bound(c.name)]
            cols.append(whole[:, bounds].max(axis=1) if bounds else np.zeros(len(whole), dtype=np.int64))
        else:
            cols.append(whole[:, names.index(r)])
    out: I64 = np.stack(cols, axis=1) if cols else np.zeros((len(whole), 0), dtype=np.int64)
    return out


def _first_completing(
    q: Question,
    comps: Sequence[Component],
    heads: I64,
    nodes: I64,
    after: Labels | None,
    n: int,
    rank: Sequence[str],
    best: tuple[int, ...],
    start: int,
) -> int | None:
    """The first head (in order) that some suffix label at its node completes to a plan within q whose
    ranked numbers are `best`."""
    target = np.array(best, dtype=np.int64)
    if after is None:
        ok = (nodes == n) & within(q, comps, heads, start)
        ok &= (_ranked(q, comps, heads, rank, start) == target).all(axis=1)
        hits = np.flatnonzero(ok)
        return int(hits[0]) if hits.size else None
    joins = _joins(comps)
    order = np.argsort(after.node, kind="stable")
    ptr = np.searchsorted(after.node[order], np.arange(n + 2))
    for i in range(len(heads)):
        labs = order[ptr[nodes[i]] : ptr[nodes[i] + 1]]
        if not labs.size:
            continue
        whole = join_all(joins, heads[i][None, :], after.comps[labs])  # type: ignore[arg-type]
        ok = within(q, comps, whole, start) & (_ranked(q, comps, whole, rank, start) == target).all(axis=1)
        if ok.any():
            return i
    return None


# ---------------------------------------------------------------------------------------------------
# Brute forces and small helpers (tests; tiny n only).


@dataclass(frozen=True)
class ReferenceResult:
    objective: int
    cuts: list[int]
    proven: bool  # False when the deadline stopped the search early
    probes: int


def brute_force(tables: Sequence[StageCostTable], goal: Goal, *, onchip: bool) -> tuple[int, int, list[int]] | None:
    """(J, secondary, cuts): the least such triple over every cut set (tiny n only). The secondary is the
    latency for a throughput objective and the period for a latency one, as the solver breaks ties."""
    n, k = tables[0].n, len(tables)
    best: tuple[int, int, list[int]] | None = None
    for cuts in itertools.combinations(range(n - 1), k - 1):
        pairs = stage_pairs(list(cuts), n)
        if not all(_allowed(tables[s], a, b, onchip) for s, (a, b) in enumerate(pairs)):
            continue
        tot = totals(tables, cuts, goal)
        second = tot.latency_us if goal.objective == "throughput" else tot.period_us
        key = (tot.objective, second, list(cuts))
        if best is None or key < best:
            best = key
    return best


def _allowed(table: StageCostTable, a: int, b: int, onchip: bool) -> bool:
    return table.is_valid(a, b) and (not onchip or table.fits_on_chip(a, b))


def fewest_onchip_stages(tables: Sequence[StageCostTable]) -> int | None:
    """Fewest stages with every stage valid and on chip (stage s on tables[min(s, len-1)]); None if none.
    A breadth-first search over the stages that may fit on chip (the rows end where a stage must stream)."""
    n = tables[0].n
    views = {id(t): t.arcs(None, onchip=True) for t in tables}
    frontier = np.zeros(n + 1, dtype=np.bool_)
    frontier[0] = True
    seen = frontier.copy()
    for count in range(1, n + 1):
        t = tables[min(count - 1, len(tables) - 1)]
        view = views[id(t)]
        ok = view.valid & view.onchip & frontier[view.a]
        reached = np.zeros(n + 1, dtype=np.bool_)
        reached[view.b[ok] + 1] = True
        if reached[n]:
            return count
        frontier = reached & ~seen
        seen |= reached
        if not frontier.any():
            return None
    return None


__all__ = ["Picked", "ReferenceResult", "brute_force", "fewest_onchip_stages"]
