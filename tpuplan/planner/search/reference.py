"""Exact reference for every objective of `planner.costs`, independent of CP-SAT, plus a brute force.

A label is a partial plan (stages 0..k, the last ending at op b) summarised by what the objective needs
of it: each period bound of the cost formula (the largest stage time M, the sums of serialized shares S
and of bus times V: `formula.PERIOD_BOUNDS`), and the sum W of beta x stage time + gamma x one-off.
Labels are extended stage by stage; one that another label at the same b beats (or equals) in every
component is dropped, which never loses the optimum because J grows with every component. The least
period alone (the default objective) is found faster by binary search on the period t: is there a plan
with every stage time, S and V at most t? That needs the (S, V) labels only, none above t. A least
latency needs W alone: a plain shortest path.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tpuplan.planner.costs import Goal, totals
from tpuplan.planner.search.labels import (
    I64,
    INF,
    STAGE,
    Layer,
    Mask,
    SearchTimeout,
    backtrack,
    combine,
    reversed_steps,
    run_labels,
    stage_masks,
    steps_for,
    tails_of,
)
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.formula import BOUND_NAMES, PERIOD_BOUNDS
from tpuplan.profiles.pricing.tables import StageCostTable


def _run(
    tables: Sequence[StageCostTable],
    masks: Sequence[Mask],
    cap: int,
    kinds: Sequence[str],
    beta_gamma: tuple[int, int],
    prune: tuple[int, int] | None,
    deadline: float | None,
    tails: list[I64] | None = None,
) -> list[Layer] | None:
    """`run_labels` on the objective components `kinds`; `prune` (alpha, bound) keeps the labels whose
    alpha x largest of (M, S, V) + W is at most the bound."""
    keep = None
    if prune is not None:
        alpha, bound = prune
        peak = [j for j, x in enumerate(kinds) if x != "W"]
        summed = kinds.index("W") if "W" in kinds else None

        def keep(comps: I64) -> Mask:
            low = alpha * comps[:, peak].max(axis=1) if peak else np.zeros(len(comps), dtype=np.int64)
            if summed is not None:
                low = low + comps[:, summed]
            out: Mask = low <= bound
            return out

    return run_labels(steps_for(tables, masks, cap, kinds, beta_gamma), tables[0].n, keep, deadline, tails=tails)


def _sums(tables: Sequence[StageCostTable]) -> list[str]:
    """The period bounds besides the slowest stage that can be non-zero (the serialized and bus sums)."""
    return [b.name for b in PERIOD_BOUNDS[1:] if any(bool(np.any(t.value(b.value))) for t in tables)]


@dataclass(frozen=True)
class ReferenceResult:
    objective: int
    cuts: list[int]
    proven: bool  # False when the deadline stopped the search early
    probes: int


def _least_period(
    tables: Sequence[StageCostTable], masks: Sequence[Mask], deadline: float | None
) -> ReferenceResult | None:
    kinds = _sums(tables)
    found = _run(tables, masks, INF, kinds, (0, 0), None, None)  # one pass, always: some plan to fall back on
    if found is None:
        return None
    best = backtrack(found, 0)
    hi = totals(tables, best, Goal()).period_us
    tails = tails_of(steps_for(tables, masks, INF, kinds), tables[0].n) if len(kinds) >= 2 else None  # every cap
    lo, probes, proven = 0, 1, True
    while lo < hi:
        mid = (lo + hi) // 2
        probes += 1
        try:
            got = _run(tables, masks, mid, kinds, (0, 0), (1, mid), deadline, tails)
        except SearchTimeout:
            proven = False
            break
        if got is None:
            lo = mid + 1
        else:
            best = backtrack(got, 0)
            hi = totals(tables, best, Goal()).period_us
    return ReferenceResult(hi, best, proven, probes)


def reference_solve(
    tables: Sequence[StageCostTable], goal: Goal, *, onchip: bool, deadline: float | None = None
) -> ReferenceResult | None:
    """The least objective J over K = len(tables) stages and one plan reaching it; None if no plan exists
    (or the deadline passed before any plan was found)."""
    masks = stage_masks(tables, onchip)
    alpha, beta, gamma = goal.weights
    if beta == 0 and gamma == 0:
        return _least_period(tables, masks, deadline)
    if alpha == 0:  # latency: a shortest path on W alone
        cuts = _shortest(tables, masks, beta, gamma)
        return None if cuts is None else ReferenceResult(totals(tables, cuts, goal).objective, cuts, True, 1)
    return _least_batch_time(tables, masks, goal, deadline)


def _shortest(tables: Sequence[StageCostTable], masks: Sequence[Mask], beta: int, gamma: int) -> list[int] | None:
    """The plan of least sum of beta x stage time + gamma x one-off (None: no plan). One pass of a
    shortest path: it runs to the end whatever the deadline, so there is always a plan to fall back on."""
    found = _run(tables, masks, INF, ["W"], (beta, gamma), None, None)
    return None if found is None else backtrack(found, 0)


def _least_batch_time(
    tables: Sequence[StageCostTable], masks: Sequence[Mask], goal: Goal, deadline: float | None
) -> ReferenceResult | None:
    """J = alpha P + W: labels (M, S, V, W), pruned by the better of the least-period and the
    least-latency plans."""
    alpha, beta, gamma = goal.weights
    fastest = _least_period(tables, masks, deadline)
    candidates = [
        c for c in (fastest.cuts if fastest else None, _shortest(tables, masks, beta, gamma)) if c is not None
    ]
    if not candidates:
        return None
    incumbent = min(candidates, key=lambda c: totals(tables, c, goal).objective)
    bound = totals(tables, incumbent, goal).objective
    constant = gamma * tables[0].start_us
    kinds = [STAGE, *_sums(tables), "W"]
    try:
        layers = _run(tables, masks, INF, kinds, (beta, gamma), (alpha, bound - constant), deadline)
    except SearchTimeout:
        return ReferenceResult(bound, incumbent, False, 1)
    if layers is None:
        return ReferenceResult(bound, incumbent, True, 1)
    final = layers[-1]
    scores = alpha * final.comps[:, :-1].max(axis=1) + final.comps[:, -1] + constant
    cuts = backtrack(layers, int(np.argmin(scores)))
    return ReferenceResult(totals(tables, cuts, goal).objective, cuts, True, 1)


def pinned_plan(
    tables: Sequence[StageCostTable],
    masks: Sequence[Mask],
    goal: Goal,
    objective: int,
    at_most: int,
    deadline: float | None = None,
) -> list[int] | None:
    """Among plans of objective J <= `objective` whose stage k is allowed by masks[k]: the least secondary
    number (latency for a throughput goal, period for a latency goal), then the smallest cuts, end by end;
    exactly. None if no plan meets J and a secondary of `at_most` (that of a plan known to meet J);
    SearchTimeout when the deadline passes.

    One label search from the last op back keeps, for every op where the stages after a cut may start,
    the front of what those stages add (largest stage, S, V, sums of T and O), pruned by J and `at_most`.
    Its whole plans give the least secondary; the cuts are then chosen from the first: each the smallest
    end after which some label of the front still completes the plan within J and that least. A front
    only drops labels another one beats or equals everywhere, so no completion is lost."""
    alpha, beta, gamma = goal.weights
    steady = beta == 0 and gamma == 0
    kinds = [*([] if steady else [STAGE]), *_sums(tables), "T", *(["O"] if gamma else [])]
    n, k, base = tables[0].n, len(tables), gamma * tables[0].start_us

    def period(comps: I64) -> I64:
        cols = [j for j, x in enumerate(kinds) if x in BOUND_NAMES]
        out: I64 = comps[..., cols].max(axis=-1) if cols else np.zeros(comps.shape[:-1], dtype=np.int64)
        return out

    def second(comps: I64) -> I64:
        out: I64 = comps[..., kinds.index("T")] if goal.objective == "throughput" else period(comps)
        return out

    def within(comps: I64, bound: int) -> Mask:
        oneoff = comps[..., kinds.index("O")] if gamma else 0
        score = alpha * period(comps) + beta * comps[..., kinds.index("T")] + gamma * oneoff + base
        out: Mask = (score <= objective) & (second(comps) <= bound)
        return out

    steps = steps_for(tables, masks, objective // alpha if steady else INF, kinds)
    back = run_labels(reversed_steps(steps), n, lambda comps: within(comps, at_most), deadline)
    if back is None:
        return None
    least = int(second(back[-1].comps).min())
    prefix, first, cuts = np.zeros(len(kinds), dtype=np.int64), 0, []
    for j in range(k - 1):
        after = back[k - 2 - j]  # stages j+1.. of each label start at op n-1-end: stage j ends one op before
        ends = n - 2 - after.end
        segs = np.stack([mat[first, ends] for _, mat in steps[j].parts], axis=-1)
        whole = combine(steps[j], combine(steps[j], prefix, segs), after.comps)
        fine = (ends >= first) & steps[j].allowed[first, ends] & within(whole, least)
        if not fine.any():
            raise TpuplanError(f"internal error: no end for stage {j} completes the pinned plan")
        end = int(ends[fine].min())
        cuts.append(end)
        prefix = combine(steps[j], prefix, np.array([mat[first, end] for _, mat in steps[j].parts], dtype=np.int64))
        first = end + 1
    return cuts


def _any(m: Mask, axis: int) -> Mask:
    out: Mask = np.asarray(m.any(axis=axis), dtype=np.bool_)
    return out


def _shift(end: Mask) -> Mask:
    """Starts of the next stage: one op after each end."""
    out: Mask = np.concatenate([np.zeros(1, dtype=np.bool_), end[:-1]])
    return out


def reachable_ends(tables: Sequence[StageCostTable], masks: Sequence[Mask], cap: int) -> list[I64] | None:
    """For each cut k < K-1, the ends that lie on some plan whose every stage takes at most `cap`."""
    n, k = tables[0].n, len(tables)
    allowed = [m & (t.time_us <= cap) for m, t in zip(masks, tables, strict=True)]
    fwd: list[Mask] = []
    start = np.zeros(n, dtype=np.bool_)
    start[0] = True
    for s in range(k):
        end = _any(allowed[s][start], 0)
        if s == k - 1:
            end[: n - 1] = False
        else:
            end[n - (k - 1 - s) :] = False  # leave one op for each later stage
        fwd.append(end)
        start = _shift(end)
    if not fwd[-1][n - 1]:
        return None
    out: list[I64] = []
    need = np.zeros(n, dtype=np.bool_)
    need[n - 1] = True
    for s in range(k - 1, 0, -1):
        starts = _any(allowed[s][:, need], 1)
        need = np.concatenate([starts[1:], np.zeros(1, dtype=np.bool_)]) & fwd[s - 1]
        out.append(np.flatnonzero(need).astype(np.int64))
    out.reverse()
    return out


def fewest_onchip_stages(tables: Sequence[StageCostTable]) -> int | None:
    """Fewest stages with every stage valid and on chip (stage s on tables[min(s, len-1)]); None if none."""
    n = tables[0].n
    start = np.zeros(n, dtype=np.bool_)
    start[0] = True
    seen = np.zeros(n, dtype=np.bool_)
    for count in range(1, n + 1):
        t = tables[min(count - 1, len(tables) - 1)]
        end = _any((t.valid & t.onchip)[start], 0)
        if end[n - 1]:
            return count
        start = _shift(end) & ~seen
        seen |= start
        if not start.any():
            return None
    return None


def brute_force(tables: Sequence[StageCostTable], goal: Goal, *, onchip: bool) -> tuple[int, int, list[int]] | None:
    """(J, secondary, cuts): the least such triple over every cut set (tiny n only). The secondary is the
    latency for a throughput objective and the period for a latency one, as the solver breaks ties."""
    n, k = tables[0].n, len(tables)
    masks = stage_masks(tables, onchip)
    best: tuple[int, int, list[int]] | None = None
    for cuts in itertools.combinations(range(n - 1), k - 1):
        bounds = zip([0, *(c + 1 for c in cuts)], [*cuts, n - 1], strict=True)
        if not all(masks[s][a, b] for s, (a, b) in enumerate(bounds)):
            continue
        tot = totals(tables, cuts, goal)
        second = tot.latency_us if goal.objective == "throughput" else tot.period_us
        key = (tot.objective, second, list(cuts))
        if best is None or key < best:
            best = key
    return best
