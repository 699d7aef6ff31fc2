"""Bounds on every stage choice, so that "no plan within the caps" is often settled before any search, and
what is left for the label search and CP-SAT is small.

A choice (stage s takes ops p+1..e) lies on some plan; the cheapest such plan in each component alone
is a shortest path: the least sum (or least largest value) of that component over the stages before it
(a prefix) and after it (a suffix). Each plan through the choice has every component at least that, so
its objective J = alpha P + beta L + gamma O is at least the objective of those bounds
(`problem.objective_of`). A choice whose bound is above the cap (or whose secondary bound, or a capped
component's, is) is on no plan within the caps and is dropped; dropping choices raises the bounds of
the others, so this repeats until nothing changes. If some layer is left empty, no plan is within the
caps: a proof by shortest paths alone, independent of the label search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.planner.search.problem import (
    BIG,
    I64,
    Choices,
    Component,
    Mask,
    Problem,
    Question,
    capped,
    comp_matrix,
    reachable,
    within,
)


def sweeps(
    problem: Problem, comps: Sequence[Component], layers: Sequence[Choices]
) -> tuple[list[I64], list[I64], list[I64]]:
    """(pre, suf, mats): pre[s][x] the least of each component over the stages before layer s ending
    before op x, suf[s][x] over the stages from layer s starting at op x (arrays [n + 1, d]), and each
    layer's component matrix."""
    n, d = problem.n, len(comps)
    joins = [np.maximum if c.combine == "max" else np.add for c in comps]
    mats = [comp_matrix(problem, comps, c) for c in layers]
    pre = [np.full((n + 1, d), BIG, dtype=np.int64)]
    pre[0][0] = 0
    for c, mat in zip_strict(layers, mats):
        nxt = np.full((n + 1, d), BIG, dtype=np.int64)
        for j in range(d):
            np.minimum.at(nxt[:, j], c.e + 1, np.minimum(joins[j](pre[-1][c.p + 1, j], mat[:, j]), BIG))
        pre.append(nxt)
    suf = [np.full((n + 1, d), BIG, dtype=np.int64) for _ in range(len(layers) + 1)]
    suf[-1][n] = 0
    for s in range(len(layers) - 1, -1, -1):
        c, mat = layers[s], mats[s]
        for j in range(d):
            np.minimum.at(suf[s][:, j], c.p + 1, np.minimum(joins[j](mat[:, j], suf[s + 1][c.e + 1, j]), BIG))
    return pre, suf, mats


MAX_STATES = 256  # device-usage states the bounds follow exactly (a pool of a few kinds, a few of each)
POOL_PRUNE_MAX = 50_000  # choices above which a pool's bounds ignore its counts (following them costs states x)


class Usage:
    """The devices of each kind a partial plan has used, as one state index (a grid of counts + 1 per
    kind; with a budget, states over it are dead). With it the bounds respect the pool: a plan that
    would need more devices of a kind than there are is no plan."""

    def __init__(self, problem: Problem) -> None:
        counts = problem.counts or ()
        self.size = int(np.prod([c + 1 for c in counts])) if counts else 1
        self.strides = (
            np.cumprod([1, *(c + 1 for c in counts[:-1])]).astype(np.int64) if counts else np.ones(0, np.int64)
        )
        grid = np.indices([c + 1 for c in counts]).reshape(len(counts), -1).T if counts else np.zeros((1, 0), np.int64)
        order = np.argsort(grid @ self.strides) if counts else np.zeros(1, np.int64)
        self.used = grid[order].astype(np.int64)  # [states, kinds], state i at row i
        self.alive = np.ones(self.size, dtype=np.bool_)
        if problem.budget is not None and counts:
            self.alive &= self.used.sum(axis=1) <= problem.budget
        self.counts = np.array(counts, dtype=np.int64)
        self.kinds = np.array([o.kind for o in problem.options] + [-1], dtype=np.int64)

    def step(self, c: Choices) -> tuple[I64, Mask]:
        """For every (state, choice): the state after it, and whether it stays within the pool."""
        kind = self.kinds[c.opt]
        delta = (
            np.where(kind >= 0, c.r * self.strides[np.maximum(kind, 0)], 0)
            if len(self.counts)
            else np.zeros(len(c), np.int64)
        )
        after = np.arange(self.size)[:, None] + delta[None, :]
        room = np.ones((self.size, len(c)), dtype=np.bool_)
        if len(self.counts):
            have = self.used[:, np.maximum(kind, 0)]  # [states, choices]
            room = (kind[None, :] < 0) | (have + c.r[None, :] <= self.counts[np.maximum(kind, 0)][None, :])
        after = np.where(room, after, 0)
        room &= self.alive[after]
        return after, room


def _sweeps_usage(
    problem: Problem, comps: Sequence[Component], layers: Sequence[Choices], usage: Usage
) -> tuple[list[I64], list[I64], list[I64], list[tuple[I64, Mask]]]:
    """As `sweeps`, with the device-usage state: pre[s][u, x] and suf[s][u, x] ([states, n + 1, d])."""
    n, d, size = problem.n, len(comps), usage.size
    joins = [np.maximum if c.combine == "max" else np.add for c in comps]
    mats = [comp_matrix(problem, comps, c) for c in layers]
    steps = [usage.step(c) for c in layers]
    pre = [np.full((size, n + 1, d), BIG, dtype=np.int64)]
    pre[0][0, 0] = 0
    for c, mat, (after, room) in zip_strict(layers, mats, steps):
        nxt = np.full((size, n + 1, d), BIG, dtype=np.int64)
        u, m = np.nonzero(room)
        for j in range(d):
            vals = np.minimum(joins[j](pre[-1][u, c.p[m] + 1, j], mat[m, j]), BIG)
            np.minimum.at(nxt[:, :, j], (after[u, m], c.e[m] + 1), vals)
        pre.append(nxt)
    suf = [np.full((size, n + 1, d), BIG, dtype=np.int64) for _ in range(len(layers) + 1)]
    suf[-1][usage.alive, n] = 0
    for s in range(len(layers) - 1, -1, -1):
        c, mat, (after, room) = layers[s], mats[s], steps[s]
        u, m = np.nonzero(room)
        for j in range(d):
            vals = np.minimum(joins[j](mat[m, j], suf[s + 1][after[u, m], c.e[m] + 1, j]), BIG)
            np.minimum.at(suf[s][:, :, j], (u, c.p[m] + 1), vals)
    return pre, suf, mats, steps


def _through_usage(problem: Problem, comps: Sequence[Component], layers: Sequence[Choices], usage: Usage) -> list[I64]:
    pre, suf, mats, steps = _sweeps_usage(problem, comps, layers, usage)
    joins = [np.maximum if c.combine == "max" else np.add for c in comps]
    out = []
    for s, (c, mat, (after, room)) in enumerate(zip_strict(layers, mats, steps)):
        cols = []
        for j in range(len(comps)):
            head = joins[j](pre[s][:, c.p + 1, j], mat[None, :, j])
            whole = np.minimum(joins[j](head, suf[s + 1][after, c.e[None, :] + 1, j]), BIG)
            cols.append(np.where(room, whole, BIG).min(axis=0))
        out.append(np.stack(cols, axis=1) if cols else np.zeros((len(c), 0), dtype=np.int64))
    return out


def through(problem: Problem, comps: Sequence[Component], layers: Sequence[Choices], pool: bool = True) -> list[I64]:
    """For every choice of every layer: the least value of each component over whole plans through it
    (BIG everywhere off every whole plan: `problem.reachable`); with `pool` and a pool of few enough
    states, over the plans that keep within it (else each kind may take every stage: a weaker bound)."""
    comps = reachable(tuple(comps))
    if pool and problem.counts is not None:
        usage = Usage(problem)
        if usage.size <= MAX_STATES:
            return _through_usage(problem, comps, layers, usage)
    pre, suf, mats = sweeps(problem, comps, layers)
    joins = [np.maximum if c.combine == "max" else np.add for c in comps]
    out = []
    for s, (c, mat) in enumerate(zip_strict(layers, mats)):
        cols = [
            np.minimum(joins[j](joins[j](pre[s][c.p + 1, j], mat[:, j]), suf[s + 1][c.e + 1, j]), BIG)
            for j in range(len(comps))
        ]
        out.append(np.stack(cols, axis=1) if cols else np.zeros((len(c), 0), dtype=np.int64))
    return out


def prune(problem: Problem, q: Question, layers: Sequence[Choices]) -> list[Choices]:
    """The choices that can lie on a plan within q, to a fixed point (the filtered bounds first; for a
    pool, the bounds that ignore its counts first, then, on few enough choices, those that keep them)."""
    comps = q.comps
    layers = [c.take(capped(problem, q, c) | (c.opt < 0)) for c in layers]
    exact = problem.counts is None
    while True:
        if not has_plan(layers):
            return layers
        bounds = through(problem, comps, layers, pool=exact)
        keep = [within(q, reachable(comps), b, problem.start_us) for b in bounds]
        if all(bool(k.all()) for k in keep):
            if exact or sum(len(c) for c in layers) > POOL_PRUNE_MAX:
                return layers
            exact = True
            continue
        layers = [c.take(k) for c, k in zip_strict(layers, keep)]


def has_plan(layers: Sequence[Choices]) -> bool:
    """Whether the choices still make a whole plan (after `prune`, every choice left lies on one)."""
    return all(len(c) for c in layers)
