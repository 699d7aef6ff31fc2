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

from tpuplan.planner.search.problem import (
    BIG,
    I64,
    Choices,
    Component,
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
    for c, mat in zip(layers, mats, strict=True):
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


def through(problem: Problem, comps: Sequence[Component], layers: Sequence[Choices]) -> list[I64]:
    """For every choice of every layer: the least value of each component over whole plans through it
    (BIG everywhere off every whole plan: `problem.reachable`)."""
    comps = reachable(tuple(comps))
    pre, suf, mats = sweeps(problem, comps, layers)
    joins = [np.maximum if c.combine == "max" else np.add for c in comps]
    out = []
    for s, (c, mat) in enumerate(zip(layers, mats, strict=True)):
        cols = [
            np.minimum(joins[j](joins[j](pre[s][c.p + 1, j], mat[:, j]), suf[s + 1][c.e + 1, j]), BIG)
            for j in range(len(comps))
        ]
        out.append(np.stack(cols, axis=1) if cols else np.zeros((len(c), 0), dtype=np.int64))
    return out


def prune(problem: Problem, q: Question, layers: Sequence[Choices]) -> list[Choices]:
    """The choices that can lie on a plan within q, to a fixed point (the filtered bounds first)."""
    comps = q.comps
    layers = [c.take(capped(problem, q, c) | (c.opt < 0)) for c in layers]
    while True:
        if not has_plan(layers):
            return layers
        bounds = through(problem, comps, layers)
        keep = [within(q, reachable(comps), b, problem.start_us) for b in bounds]
        if all(bool(k.all()) for k in keep):
            return layers
        layers = [c.take(k) for c, k in zip(layers, keep, strict=True)]


def has_plan(layers: Sequence[Choices]) -> bool:
    """Whether the choices still make a whole plan (after `prune`, every choice left lies on one)."""
    return all(len(c) for c in layers)
