"""The planner's search, end to end: a first plan, the exact optimum, CP-SAT's proof, one pinned plan.

1. Whether every stage can stay on chip (unless spilling is allowed): a plan is looked for among the
   stages that may fit. 2. A first plan: the least largest stage time among the stages whose floor is
   at most c, for c = the whole model's floor per stage, then twice more until a
   plan exists (`planner.search.firstplan`; the table prices only those stages). 3. Its objective U
   bounds the search: the table prices every stage a plan within U could use, the bounds of
   `planner.search.prune` keep the choices on such plans, and the exact reference
   (`planner.search.reference`) finds the optimum v. 4. CP-SAT answers "is there a plan of objective
   <= v - 1?" on what the bounds leave of the choices (INFEASIBLE is the proof; none left is a proof by
   the bounds alone). 5. The tie-break (`planner.search.tiebreak`) picks one plan among those of objective v.
Every step reads the deadline; pricing stages counts too. When time runs out, the best plan found so
far is kept and said to be unproven, never a plan that depends on how far a timed search got.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tpuplan.planner.costs import Goal, check_exact
from tpuplan.planner.defaults import DEFAULT_TIME_LIMIT_S, DEFAULT_WORKERS
from tpuplan.planner.search.band import band_bound, sweep
from tpuplan.planner.search.cpsat import ask, check_solver_options
from tpuplan.planner.search.firstplan import equal_ops_plan, first_plan, table_views
from tpuplan.planner.search.labels import SearchTimeout
from tpuplan.planner.search.problem import (
    Choices,
    Problem,
    Question,
    in_order,
    prepare,
)
from tpuplan.planner.search.prune import has_plan, prune
from tpuplan.planner.search.reference import (
    Picked,
    ReferenceResult,
    at_period,
    picked,
    plan_totals,
    search,
)
from tpuplan.planner.search.tiebreak import tie_break
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.tables import StageCostTable, TooManyStages

PIN_MIN_S = 2.0  # the tie-break's time, at least ...
PIN_FACTOR = 4.0  # ... or this many times what finding and proving the optimum took


@dataclass
class Outcome:
    """What the search found for one problem, before it becomes a Plan."""

    cuts: list[int]
    status: str  # OPTIMAL, FEASIBLE, REFERENCE
    objective: int
    best_bound: int
    proven: bool
    onchip: bool  # the every-stage-on-chip rule was imposed
    notes: list[str] = field(default_factory=list)
    options: list[int] = field(default_factory=list)
    copies: list[int] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step (the benchmarks read them)


@dataclass
class Found:
    """The reference's answer: the least objective, a plan of it, whether the search finished, and the
    question and choices it was found with (the proof starts from them)."""

    value: int
    plan: Picked
    proven: bool
    probes: int
    question: Question
    base: list[Choices]


def is_steady(goal: Goal) -> bool:
    """The least period alone (J = P): searched by a binary search on the period."""
    return goal.weights[1:] == (0, 0)


def least_plan(
    problem: Problem, goal: Goal, *, deadline: float | None = None, known: Picked | None = None
) -> tuple[int, Picked, bool, int] | None:
    """(least objective, a plan of it, whether the search finished, probes), by the reference alone."""
    found = reference(problem, goal, deadline=deadline, known=known)
    return None if found is None else (found.value, found.plan, found.proven, found.probes)


def reference(
    problem: Problem, goal: Goal, *, deadline: float | None = None, known: Picked | None = None
) -> Found | None:
    """The least objective by the exact reference (None: no plan). When time runs out, the best plan
    found so far, not proven."""
    plan = known or first_plan(problem, deadline)
    if plan is None:
        return None
    upper = plan_totals(problem, goal, plan).objective
    if deadline is not None and time.monotonic() > deadline:
        return Found(upper, plan, False, 0, _question(problem, goal, upper), [])
    q = _question(problem, goal, upper)
    views = table_views(problem, q, deadline)
    check_exact([o.table for o in problem.options], goal, problem.k, problem.max_copies())
    q = prepare(problem, q)
    if is_steady(goal):
        return _least_period(problem, q, plan, views, deadline)
    base = prune(problem, q, sweep(problem, q, views))  # type: ignore[arg-type]
    try:
        got = search(problem, q, base, deadline)
    except SearchTimeout:
        return Found(upper, plan, False, 1, q, base)
    if got is None:
        raise TpuplanError("internal error: the first plan is outside its own search")
    return Found(got[0], got[1], True, 1, q, base)


def _in_time(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise SearchTimeout


def _question(problem: Problem, goal: Goal, value: int) -> Question:
    return Question(goal, value, period_for_copies=value if problem.copies else None)


def _at(problem: Problem, q: Question, t: int, deadline: float | None) -> list[Choices]:
    """The choices on plans of period <= t, from the band of t's stages (a sweep of its own: few are
    left when t is near the optimum)."""
    qt = replace(q, objective=t, period_for_copies=t if problem.copies else None)
    return prune(problem, qt, sweep(problem, qt, table_views(problem, qt, deadline)))  # type: ignore[arg-type]


def _least_period(problem: Problem, q: Question, plan: Picked, views: list[object], deadline: float | None) -> Found:
    """J = P: binary search on the period t between a lower bound of the band and the first plan's. "A
    plan of period <= t?" is answered by the bounds, then labels, on the choices of t's own band, or,
    below a period already reached, on those of that period (a subset: no sweep of the band again)."""
    upper = q.objective
    lo = min(band_bound(problem, q, views), upper)  # type: ignore[arg-type]
    hi, best, base, probes, t = upper, plan, None, 0, lo
    try:
        while lo < hi:
            probes += 1
            _in_time(deadline)
            qt = replace(q, objective=t, period_for_copies=t if problem.copies else None)
            layers = (
                _at(problem, q, t, deadline) if base is None else prune(problem, qt, at_period(problem, q, base, t))
            )
            got = search(problem, qt, layers, deadline) if has_plan(layers) else None
            if got is None:
                lo = t + 1
                if base is None and probes == 1:  # the bound was not reached: the choices of the best plan
                    base = _within_reach(problem, q, hi, deadline)  # known, of which every later probe reads a part
            else:
                (hi, best), base = got, layers
            t = (lo + hi) // 2
        if base is None:
            base = _at(problem, q, hi, deadline)
    except (SearchTimeout, TooManyStages):
        return Found(hi, best, False, probes, replace(q, objective=hi), base or [])
    return Found(hi, best, True, probes, replace(q, objective=hi), base)


def _within_reach(problem: Problem, q: Question, t: int, deadline: float | None) -> list[Choices] | None:
    """The choices at period t, or None when they are too many to keep (probes then sweep the band)."""
    try:
        return _at(problem, q, t, deadline)
    except TooManyStages:
        return None


def _question_below(problem: Problem, found: Found, goal: Goal, v: int) -> tuple[Question, list[Choices]]:
    """The question "a plan of objective <= v?" and the choices left for it."""
    q = replace(found.question, objective=v, period_for_copies=v if problem.copies else None)
    layers = at_period(problem, found.question, found.base, v) if problem.copies else found.base
    return q, prune(problem, q, layers)


def _prove(
    problem: Problem, goal: Goal, found: Found, deadline: float, workers: int, seed: int
) -> tuple[int, Picked, bool]:
    """From the reference's plan, ask CP-SAT for one better until none is (proven) or time runs out."""
    value, plan = found.value, found.plan
    if not found.base:  # the reference stopped before it had any choices to ask about
        return value, plan, False
    while value > 0:
        q, layers = _question_below(problem, found, goal, value - 1)
        got = ask(problem, q, layers, deadline, workers, seed)
        if got is True:
            break
        if not isinstance(got, list):
            return value, plan, False
        plan = picked(got, [0] * len(got))
        better = plan_totals(problem, goal, plan).objective
        if better >= value:
            raise TpuplanError(f"internal error: CP-SAT's plan of objective {better} is not below {value}")
        value = better
    return value, plan, True


def optimize(
    problem: Problem,
    goal: Goal,
    *,
    rank: Sequence[str],
    allow_spill: bool = False,
    time_limit_s: float | None = None,
    workers: int = DEFAULT_WORKERS,
    seed: int = 0,
    prove: bool = True,
    deadline: float | None = None,
) -> Outcome:
    """The best plan of the problem for the goal, proven and pinned (tie-break: `rank`, then the smallest
    ends, device kinds and copies stage by stage); see the module doc."""
    limit = DEFAULT_TIME_LIMIT_S if time_limit_s is None else time_limit_s
    check_solver_options(limit, workers)
    started = time.monotonic()
    deadline = started + limit if deadline is None else deadline
    if problem.k == 1 and problem.max_copies() == 1:
        return _single_stage(problem, goal, rank, allow_spill)
    notes: list[str] = []
    onchip_plan = None
    phases: dict[str, float] = {}
    try:
        if not allow_spill:
            onchip_plan = first_plan(replace(problem, onchip=True), deadline)
        if onchip_plan is not None:
            problem = replace(problem, onchip=True)
        phases["on chip"] = time.monotonic() - started
        found = reference(problem, goal, deadline=deadline, known=onchip_plan)
        phases["reference"] = time.monotonic() - started - phases["on chip"]
    except (SearchTimeout, TooManyStages) as exc:
        return _fallback(problem, goal, onchip_plan, exc)
    if found is None:
        raise TpuplanError(f"no plan over {problem.k} TPUs: every stage needs an op the Edge TPU runs")
    if not allow_spill and onchip_plan is None:
        notes.append("no plan keeps every stage on chip with these TPUs; parameters stream")
    out = _outcome(found, onchip_plan is not None, notes)
    if not found.proven:
        out.notes.append("reference search stopped by the time limit")
    if (problem.k == 1 and not problem.copies) and found.proven:
        out.status, out.best_bound = "OPTIMAL", found.value
        return out
    if not prove:
        return out
    if time.monotonic() > deadline:
        out.notes.append("CP-SAT not asked: the time limit passed")
        return out
    mark = time.monotonic()
    value, plan, done = _prove(problem, goal, found, deadline, workers, seed)
    phases["proof"] = time.monotonic() - mark
    if found.proven and value != found.value:
        raise TpuplanError(f"internal error: CP-SAT found {value} below the reference optimum {found.value}")
    found.plan, found.value = plan, value
    out = _outcome(found, out.onchip, out.notes)
    out.phases = phases
    if not done:
        out.notes.append("CP-SAT stopped before proving the optimum (time limit or size); kept the best plan found")
        out.status = "REFERENCE" if found.proven else "FEASIBLE"
        return out
    out.status, out.proven, out.best_bound = "OPTIMAL", True, value
    now = time.monotonic()
    pin_by = min(deadline, now + max(PIN_MIN_S, PIN_FACTOR * (now - started)))
    pinned = tie_break(problem, goal, (found.plan, found.base), value, rank, pin_by)
    phases["tie-break"] = time.monotonic() - now
    if pinned is None:
        out.notes.append("tie-break not finished in time: the choice among optimal plans is not pinned")
    else:
        if plan_totals(problem, goal, pinned).objective != value:
            raise TpuplanError("internal error: the tie-break's plan is not at the proven optimum")
        out.cuts, out.options, out.copies = pinned.cuts, pinned.options, pinned.copies
    return out


def _fallback(problem: Problem, goal: Goal, known: Picked | None, exc: Exception) -> Outcome:
    """The search could not start (out of time, or too many candidate stages): the on-chip plan found so
    far, else equal numbers of ops per stage, not proven."""
    why = str(exc) if isinstance(exc, TooManyStages) else "the time limit passed before the search could start"
    plan = known or equal_ops_plan(problem)
    if plan is None:
        raise TpuplanError(f"no plan found: {why}")
    value = plan_totals(problem, goal, plan).objective
    note = f"{why}; kept a plan of equal numbers of ops per stage" if known is None else why
    return Outcome(plan.cuts, "FEASIBLE", value, 0, False, known is not None, [note], plan.options, plan.copies)


def _single_stage(problem: Problem, goal: Goal, rank: Sequence[str], allow_spill: bool) -> Outcome:
    """One stage of the whole model: the best of the layer's options (no table beyond that stage)."""
    n = problem.n
    options = [o for o in problem.layers[0] if problem.options[o].table.is_valid(0, n - 1)]
    if problem.counts is not None:
        options = [o for o in options if problem.counts[problem.options[o].kind] >= 1]
    if not options:
        raise TpuplanError("no plan over 1 TPUs: every stage needs an op the Edge TPU runs")
    onchip = [o for o in options if problem.options[o].table.fits_on_chip(0, n - 1)]
    pool = onchip if onchip and not allow_spill else options
    score = {o: plan_totals(problem, goal, Picked([], [o], [1])) for o in pool}
    best = min(pool, key=lambda o: (score[o].objective, goal.secondary_of(score[o].period_us, score[o].latency_us), o))
    value = score[best].objective
    return Outcome([], "OPTIMAL", value, value, True, bool(onchip) and not allow_spill, [], [best], [1])


def _outcome(found: Found, onchip: bool, notes: list[str]) -> Outcome:
    pk = found.plan
    status = "REFERENCE" if found.proven else "FEASIBLE"
    bound = found.value if found.proven else 0
    return Outcome(pk.cuts, status, found.value, bound, found.proven, onchip, list(notes), pk.options, pk.copies)


def secondary_rank(goal: Goal) -> tuple[str, ...]:
    """The number that breaks ties among plans of equal objective: latency (throughput) or period."""
    return ("T",) if goal.objective == "throughput" else ("P",)


def solve_tables(
    tables: Sequence[StageCostTable],
    goal: Goal | None = None,
    *,
    allow_spill: bool = False,
    time_limit_s: float | None = None,
    workers: int = DEFAULT_WORKERS,
    seed: int = 0,
    prove: bool = True,
) -> Outcome:
    """Best cut list for K = len(tables) stages, stage k on tables[k]: least objective, then the least
    secondary number, then the smallest cuts."""
    goal = goal or Goal()
    k, n = len(tables), tables[0].n
    if not 1 <= k <= n:
        raise TpuplanError(f"cannot split {n} ops over {k} TPUs")
    out = optimize(
        in_order(tables),
        goal,
        rank=secondary_rank(goal),
        allow_spill=allow_spill,
        time_limit_s=time_limit_s,
        workers=workers,
        seed=seed,
        prove=prove,
    )
    return out


def reference_solve(
    tables: Sequence[StageCostTable], goal: Goal, *, onchip: bool, deadline: float | None = None
) -> ReferenceResult | None:
    """The least objective J over K = len(tables) stages (stage k on tables[k]) by the exact reference
    alone; None if no plan exists."""
    got = least_plan(in_order(tables, onchip=onchip), goal, deadline=deadline)
    if got is None:
        return None
    value, pk, proven, probes = got
    return ReferenceResult(value, pk.cuts, proven, probes)


__all__ = ["DEFAULT_TIME_LIMIT_S", "DEFAULT_WORKERS", "Outcome", "optimize", "reference_solve", "solve_tables"]
