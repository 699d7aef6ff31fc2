"""The search's last step: one plan among the plans of the proven least objective, pinned by a ranking.

Every plan of that objective is as good by the goal; the tie-break makes the choice reproducible and
useful: the ranked numbers (`rank`: fewest TPUs, the secondary number, ...), then the smallest ends,
device kinds and copies stage by stage (`planner.search.reference.pin`). Apart from the search
(`planner.search.engine`) because it answers a different question on the same choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from tpuplan.planner.costs import Goal
from tpuplan.planner.search.labels import SearchTimeout
from tpuplan.planner.search.problem import Choices, Problem, Question, prepare
from tpuplan.planner.search.prune import prune
from tpuplan.planner.search.reference import Picked, at_period, fewest_stages, pin, plan_totals
from tpuplan.profiles.errors import TpuplanError


def tie_break(
    problem: Problem,
    goal: Goal,
    known: tuple[Picked, Sequence[Choices]],
    value: int,
    rank: Sequence[str],
    deadline: float,
) -> Picked | None:
    """The tie-break among the plans of objective `value` (None: not finished in time). Labels are capped
    by the known optimal plan's first ranked number (no plan ranked first can have more of it); a plan
    that may stop early and ranks the fewest stages first is pinned among the plans of that many stages.
    `known`: an optimal plan and the choices the search had (the labels start from them)."""
    plan, choices = known
    period = value if problem.copies else None
    base = at_period(problem, Question(goal, value), choices, value) if problem.copies else choices
    tot = plan_totals(problem, goal, plan)
    first = {
        "T": tot.latency_us,
        "P": tot.period_us,
        "tpus": sum(plan.copies),
        "stages": plan.stages,
        "negstages": -plan.stages,
    }
    try:
        if problem.open_end and rank[:1] == ("stages",) and problem.counts is None and not problem.copies:
            return _pin_fewest(problem, goal, value, tuple(rank[1:]), base, deadline)
        q = prepare(
            problem, Question(goal, value, period_for_copies=period, rank=tuple(rank)), {rank[0]: first[rank[0]]}
        )
        return pin(problem, q, prune(problem, q, base), rank, deadline)
    except SearchTimeout:
        return None


def _pin_fewest(
    problem: Problem, goal: Goal, value: int, rank: tuple[str, ...], base: Sequence[Choices], deadline: float
) -> Picked | None:
    q = prepare(problem, Question(goal, value, rank=rank))
    got = fewest_stages(problem, q, prune(problem, q, base), deadline)
    if got is None:
        raise TpuplanError("internal error: no plan of the proven objective for the tie-break")
    stages, second = got
    exact = replace(problem, layers=problem.layers[:stages], open_end=False)
    q = prepare(exact, Question(goal, value, secondary=second, rank=rank))
    layers = prune(exact, q, [c.take(c.opt >= 0) for c in base[:stages]])
    return pin(exact, q, layers, rank, deadline)
