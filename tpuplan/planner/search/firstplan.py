"""The search's first step: a plan to start from, found fast, whose objective bounds the exact search.

The least largest stage time among the stages whose floor is at most c, for c = the whole model's floor
per stage, then twice more until a plan exists (the table prices only those stages:
`profiles.pricing.tables`), so that a first plan costs the pricing of few stages even on a large model.
When the search cannot start at all, `equal_ops_plan` is the plan kept (`planner.search.engine`).
"""

from __future__ import annotations

from tpuplan.compat import zip_strict
from tpuplan.planner.costs import Goal
from tpuplan.planner.search.band import bottleneck, sweep
from tpuplan.planner.search.problem import BIG, Component, Problem, Question, stage_cap
from tpuplan.planner.search.reference import Picked, search
from tpuplan.profiles.pricing.formula import PERIOD_BOUNDS


def usage(problem: Problem) -> tuple[Component, ...]:
    if problem.counts is None:
        return ()
    kinds = tuple(Component(f"kind{k}", "sum", c) for k, c in enumerate(problem.counts))
    return kinds if problem.budget is None else (*kinds, Component("tpus", "sum", problem.budget))


def table_views(problem: Problem, q: Question, deadline: float | None) -> list[object]:
    return [o.table.arcs(stage_cap(problem, q), problem.onchip, deadline) for o in problem.options]


def _complete(problem: Problem, q: Question) -> bool:
    """Whether the tables already hold every stage they could (a larger cap would add none)."""
    cap = stage_cap(problem, q)
    return all(
        (o.table.reach(cap, problem.onchip) == o.table.reach(None, problem.onchip)).all() for o in problem.options
    )


def first_plan(problem: Problem, deadline: float | None = None) -> Picked | None:
    """A plan of the least largest stage time among the stages whose floor is at most c, c doubling from
    the whole model's floor per stage; None when no plan exists at all."""
    table = problem.options[0].table
    whole = int(table.pricer.floors.floor(0, problem.n - 1)[0][-1]) if table.pricer is not None else table.top("time")
    cap = max(1, whole // max(1, problem.k * problem.max_copies()) // 4)
    stage = (Component(PERIOD_BOUNDS[0].name, "max"), *usage(problem))
    while True:
        q = Question(Goal(), cap, period_for_copies=cap if problem.copies else None, comps=stage)
        views = table_views(problem, q, deadline)
        got = bottleneck(problem, views, cap)  # type: ignore[arg-type]  # the largest stage time alone
        if got is not None and keeps_counts(problem, Picked(*got)):  # (a pool's counts kept: that plan)
            return Picked(*got)
        if got is not None:  # a pool whose counts the least bottleneck breaks: labels keep them
            found = search(problem, q, sweep(problem, q, views), deadline)  # type: ignore[arg-type]
            if found is not None:
                return found[1]
        if cap >= BIG or (_complete(problem, q) and cap >= max(o.table.top("time") for o in problem.options)):
            return None
        cap = min(cap * 2, BIG)


def keeps_counts(problem: Problem, plan: Picked) -> bool:
    """Whether a plan uses no more devices of each kind (and in all) than the problem has."""
    if problem.counts is None:
        return True
    used = [0] * len(problem.counts)
    for o, r in zip_strict(plan.options, plan.copies):
        used[problem.options[o].kind] += r
    within_budget = problem.budget is None or sum(used) <= problem.budget
    return within_budget and all(u <= c for u, c in zip_strict(used, problem.counts))


def equal_ops_plan(problem: Problem) -> Picked | None:
    """Stages of (nearly) equal numbers of ops on each layer's first option, one copy each: the most
    stages that make a valid plan (every stage holding an op its device runs; on chip when imposed)."""
    n = problem.n
    counts = [problem.k] if not problem.open_end else list(range(problem.k, 0, -1))
    for k in counts:
        cuts = [(j + 1) * n // k - 1 for j in range(k - 1)]
        pairs = list(zip_strict([0, *(c + 1 for c in cuts)], [*cuts, n - 1]))
        options = [problem.layers[s][0] for s in range(k)]
        tables = [problem.options[o].table for o in options]
        if k <= n and all(
            t.is_valid(a, b) and (not problem.onchip or t.fits_on_chip(a, b)) for t, (a, b) in zip_strict(tables, pairs)
        ):
            return Picked(cuts, options, [1] * k)
    return None
