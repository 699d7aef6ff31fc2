"""Optimal contiguous segmentation: the exact reference finds it, bounds and CP-SAT prove it, one plan is pinned.

Data: the stage tables (profiles.pricing.tables) and the goal (planner.costs). Variables: one boolean per
allowed stage choice (previous end, end) of each stage k, chosen along a path, and end_k, the last op of
stage k. Constraints: P at least every period bound of the cost formula (formula.PERIOD_BOUNDS: every
T_k, sum S_k, sum V_k). Objective: alpha P + beta sum T_k + gamma (start + sum O_k) (planner.costs.Goal).

How the optimum v is proven: the question "is there a plan of objective <= v - 1?" is asked of the stage
choices that survive the shortest-path bounds of `planner.search.prune`; when none survive, the bounds are the
proof, otherwise CP-SAT answers it on what is left (INFEASIBLE is the proof; a plan found is a better
one, which only happens when the reference ran out of time, and the question is asked again below it).
CP-SAT's own relaxation mixes plans and proves slowly when the period is set by a sum over stages; the
bounds do not. Neither uses the label-setting reference, so the proof is independent of it.
Why the answer is deterministic: among the plans of objective v, the one of least secondary number
(latency for a throughput goal, period for a latency goal), then of lexicographically smallest cuts, is
found exactly by one label search from the last op back (`reference.pinned_plan`; property-tested
against a brute force over every cut set); when time runs out first, the reference's plan is kept, not
whatever a timed search had reached.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from tpuplan.planner.costs import Goal, check_exact, totals
from tpuplan.planner.defaults import DEFAULT_TIME_LIMIT_S, DEFAULT_WORKERS, MAX_TIME_LIMIT_S
from tpuplan.planner.search.labels import I64, INF, Mask, SearchTimeout, stage_masks
from tpuplan.planner.search.prune import Arcs, Caps, ends_of, has_plan, prune
from tpuplan.planner.search.reference import pinned_plan, reachable_ends, reference_solve
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.formula import PERIOD_BOUNDS
from tpuplan.profiles.pricing.tables import StageCostTable

MAX_WORKERS = 64
_STOP_GRACE_S = 0.05  # the watchdog stops a solve this long after its own time limit should have
PIN_MIN_S = 2.0  # the tie-break's time, at least ...
PIN_FACTOR = 4.0  # ... or this many times what finding and proving the optimum took
MAX_ARCS = 250_000  # stage choices above which CP-SAT is not built (the reference's plan is kept)


@dataclass
class Outcome:
    """What the solver found for one K, before it becomes a Plan."""

    cuts: list[int]
    status: str  # OPTIMAL, FEASIBLE, REFERENCE
    objective: int
    best_bound: int
    proven: bool
    onchip: bool  # the every-stage-on-chip rule was imposed
    notes: list[str] = field(default_factory=list)


def _run(solver: cp_model.CpSolver, model: cp_model.CpModel, deadline: float) -> Any:
    """Solve with a watchdog: ortools can overrun max_time_in_seconds inside presolve (#5163)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return cp_model.UNKNOWN
    solver.parameters.max_time_in_seconds = remaining
    timer = threading.Timer(remaining + _STOP_GRACE_S, solver.stop_search)
    timer.daemon = True
    timer.start()
    try:
        return solver.solve(model)
    finally:
        timer.cancel()


class _CutModel:
    """The CP-SAT model: one boolean per allowed stage (previous end, end) of each stage k, chosen along a
    path (one arc per stage, each starting where the last one ended). Every cost is linear in the arcs, so
    the relaxation is a shortest path and proofs are quick."""

    def __init__(
        self,
        tables: Sequence[StageCostTable],
        arcs: Sequence[tuple[I64, I64]],
        doms: Sequence[Sequence[int]],
        goal: Goal,
    ) -> None:
        k = len(tables)
        m = cp_model.CpModel()
        self.model = m
        self.ends = [
            m.new_int_var_from_domain(cp_model.Domain.from_values(list(d)), f"end_{j}") for j, d in enumerate(doms)
        ]
        self.arcs = arcs
        self.x = [
            [m.new_bool_var(f"x_{s}_{p}_{e}") for p, e in zip(ps.tolist(), es.tolist(), strict=True)]
            for s, (ps, es) in enumerate(arcs)
        ]
        m.add_exactly_one(self.x[0])
        for s in range(k - 1):
            self._link(s)
        every = [x for xs in self.x for x in xs]

        def per_stage(name: str) -> list[list[int]]:
            return [self._values(tables[s].value(name), s) for s in range(k)]

        def summed(values: list[list[int]]) -> Any:
            return cp_model.LinearExpr.weighted_sum(every, [c for cs in values for c in cs])

        # the period is at least every bound of the cost formula: each stage's value for a `max` bound,
        # the sum over the stages for a `sum` bound
        lower: list[tuple[Any, int]] = []
        for b in PERIOD_BOUNDS:
            values = per_stage(b.value)
            if b.combine == "max":
                lower += [(cp_model.LinearExpr.weighted_sum(self.x[s], values[s]), max(values[s])) for s in range(k)]
            else:
                lower.append((summed(values), sum(max(v) for v in values)))
        self.period = m.new_int_var(0, max(top for _, top in lower), "period")
        for expr, _ in lower:
            m.add(self.period >= expr)
        times = per_stage("time")
        self.latency = summed(times)
        self.objective = goal.objective_of(self.period, self.latency, summed(per_stage("oneoff")) + tables[0].start_us)
        self.secondary = goal.secondary_of(self.period, self.latency)

    def _link(self, s: int) -> None:
        """Stage s+1 starts right after stage s ends; end_s is that end."""
        es = self.arcs[s][1]
        nxt_ps = self.arcs[s + 1][0]
        ending: dict[int, list[Any]] = {}
        for e, x in zip(es.tolist(), self.x[s], strict=True):
            ending.setdefault(e, []).append(x)
        starting: dict[int, list[Any]] = {}
        for p, x in zip(nxt_ps.tolist(), self.x[s + 1], strict=True):
            starting.setdefault(p, []).append(x)
        for e in set(ending) | set(starting):
            self.model.add(cp_model.LinearExpr.sum(ending.get(e, [])) == cp_model.LinearExpr.sum(starting.get(e, [])))
        self.model.add(self.ends[s] == cp_model.LinearExpr.weighted_sum(self.x[s], es.tolist()))

    def _values(self, matrix: I64, s: int) -> list[int]:
        ps, es = self.arcs[s]
        out: list[int] = matrix[ps + 1, es].tolist()
        return out

    def hint(self, cuts: Sequence[int]) -> None:
        ends = [-1, *cuts, int(self.arcs[-1][1][0])]
        for s, (ps, es) in enumerate(self.arcs):
            chosen = np.flatnonzero((ps == ends[s]) & (es == ends[s + 1]))
            for j in chosen.tolist():
                self.model.add_hint(self.x[s][j], True)
        for var, c in zip(self.ends, cuts, strict=True):
            self.model.add_hint(var, c)


def stage_arcs(
    tables: Sequence[StageCostTable], masks: Sequence[Mask], doms: Sequence[Sequence[int]], cap: int
) -> list[tuple[I64, I64]]:
    """For each stage: the allowed (previous end, end) pairs of the narrowed domains, at most `cap` us."""
    n, k = tables[0].n, len(tables)
    layers = [[-1], *(list(d) for d in doms), [n - 1]]
    out = []
    for s in range(k):
        p = np.array(layers[s], dtype=np.int64)[:, None]
        e = np.array(layers[s + 1], dtype=np.int64)[None, :]
        a = np.minimum(np.broadcast_to(p + 1, (p.shape[0], e.shape[1])), n - 1)
        b = np.broadcast_to(e, a.shape)
        ok = (b >= p + 1) & masks[s][a, b] & (tables[s].time_us[a, b] <= cap)
        out.append(((a[ok] - 1).astype(np.int64), b[ok].astype(np.int64)))
    return out


def new_solver(workers: int, seed: int) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    solver.parameters.cp_model_probing_level = 0  # presolve probing dominates on these small models (#5163)
    solver.parameters.find_big_linear_overlap = False  # seconds of presolve on the arc model, no gain
    return solver


def _below(
    tables: Sequence[StageCostTable], arcs: Arcs, goal: Goal, caps: Caps, deadline: float, workers: int, seed: int
) -> bool | list[int] | None:
    """Is there a plan within `caps`? True: none (proven by the bounds of `planner.search.prune`, or by CP-SAT on
    the arcs they leave); a cut list: one that is; None: not known in time (or too large to ask)."""
    left = prune(tables, arcs, goal, caps)
    if not has_plan(left):
        return True
    if sum(len(ps) for ps, _ in left) > MAX_ARCS or time.monotonic() >= deadline:
        return None
    cm = _CutModel(tables, left, ends_of(left), goal)
    cm.model.add(cm.objective <= caps.objective)
    if caps.secondary is not None:
        cm.model.add(cm.secondary <= caps.secondary)
    solver = new_solver(workers, seed)
    status = _run(solver, cm.model, deadline)
    if status == cp_model.MODEL_INVALID:
        raise TpuplanError(f"internal error: CP-SAT rejected the model ({cm.model.validate()})")
    if status == cp_model.INFEASIBLE:
        return True
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return [int(solver.value(e)) for e in cm.ends]
    return None


def _descend(
    tables: Sequence[StageCostTable],
    arcs: Arcs,
    goal: Goal,
    cuts: list[int],
    value: Callable[[list[int]], int],
    caps: Callable[[int], Caps],
    deadline: float,
    workers: int,
    seed: int,
) -> tuple[list[int], bool]:
    """From a plan, ask for one better in `value` until none is (proven: True) or time runs out (False)."""
    while True:
        got = _below(tables, arcs, goal, caps(value(cuts) - 1), deadline, workers, seed)
        if not isinstance(got, list):
            return cuts, got is True
        cuts = got


def _pin(
    tables: Sequence[StageCostTable], arcs: Arcs, goal: Goal, objective: int, known: list[int], deadline: float
) -> tuple[list[int], bool]:
    """Among plans of objective `objective` (`known` is one): the least secondary number, then the
    smallest cuts, end by end, found exactly by `pinned_plan` on the narrowed arcs. (plan,
    pinned); a search that does not finish in time keeps `known` (the reference's plan), so the answer
    never depends on how far a timed search got."""
    tot = totals(tables, known, goal)
    at_most = tot.latency_us if goal.objective == "throughput" else tot.period_us
    masks = [np.zeros((t.n, t.n), dtype=np.bool_) for t in tables]  # the narrowed arcs; labels prune the rest
    for m, (ps, es) in zip(masks, arcs, strict=True):
        m[ps + 1, es] = True
    try:
        cuts = pinned_plan(tables, masks, goal, objective, at_most, deadline=deadline)
    except SearchTimeout:
        return known, False
    if cuts is None or totals(tables, cuts, goal).objective != objective:
        raise TpuplanError("internal error: the tie-break finds no plan at the proven optimum")
    return cuts, True


def _stage_cap(goal: Goal, objective: int, tables: Sequence[StageCostTable]) -> int:
    """The largest stage time a plan of objective <= `objective` can have (every T is at most P and L)."""
    alpha, beta, gamma = goal.weights
    budget = objective - gamma * tables[0].start_us
    caps = [budget // w for w in (alpha, beta) if w > 0]
    return max(0, min(caps))


def check_solver_options(time_limit_s: float | None, workers: int) -> None:
    """A time limit from over 0 to a day (NaN and infinity refused), 1 to MAX_WORKERS worker threads."""
    if time_limit_s is not None and not 0 < time_limit_s <= MAX_TIME_LIMIT_S:
        raise TpuplanError(
            f"the time limit must be more than 0 and at most {MAX_TIME_LIMIT_S:g} s (got {time_limit_s:g})"
        )
    if not 1 <= workers <= MAX_WORKERS:
        raise TpuplanError(f"workers must be from 1 to {MAX_WORKERS} (got {workers})")


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
    """Best cut list for K = len(tables) stages (stage k on tables[k]); the core of `solve`.

    The exact reference finds the optimum; with `prove`, CP-SAT proves it again on the narrowed model and
    pins one plan among the optimal ones (without, the reference's plan is returned, status REFERENCE).
    """
    goal = goal or Goal()
    limit = DEFAULT_TIME_LIMIT_S if time_limit_s is None else time_limit_s
    check_solver_options(limit, workers)
    check_exact(tables, goal)
    deadline = time.monotonic() + limit
    k, n = len(tables), tables[0].n
    if not 1 <= k <= n:
        raise TpuplanError(f"cannot split {n} ops over {k} TPUs")
    onchip = not allow_spill and reachable_ends(tables, stage_masks(tables, True), INF) is not None
    ref = reference_solve(tables, goal, onchip=onchip, deadline=deadline)
    if ref is None:
        raise TpuplanError(f"no plan over {k} TPUs: every stage needs an op the Edge TPU runs")
    out = Outcome(
        ref.cuts,
        "REFERENCE" if ref.proven else "FEASIBLE",
        ref.objective,
        ref.objective if ref.proven else 0,
        ref.proven,
        onchip,
    )
    if not ref.proven:
        out.notes.append("reference search stopped by the time limit")
    if k == 1:
        out.status, out.proven, out.best_bound = "OPTIMAL", True, ref.objective
        return out
    if not prove:
        return out
    _prove(tables, goal, onchip, ref.cuts, (deadline - limit, deadline), workers, seed, out)
    if totals(tables, out.cuts, goal).objective != out.objective:
        raise TpuplanError("internal error: the solver's objective disagrees with the cost tables")
    if not onchip and not allow_spill:
        out.notes.append("no plan keeps every stage on chip with these TPUs; parameters stream")
    return out


def _prove(
    tables: Sequence[StageCostTable],
    goal: Goal,
    onchip: bool,
    hint: list[int],
    window: tuple[float, float],
    workers: int,
    seed: int,
    out: Outcome,
) -> None:
    """Prove that no plan is below the reference's (or find the better ones, when the reference ran out of
    time), then pin one plan among the optimal ones; every status updates `out`. `window` is (start,
    deadline) of the whole solve: the pin gets PIN_FACTOR times what the solve took so far (at least
    PIN_MIN_S), as a tie among equal plans is not worth the whole time limit."""
    started, deadline = window
    masks = stage_masks(tables, onchip)
    cap = _stage_cap(goal, out.objective, tables)
    doms = reachable_ends(tables, masks, cap)
    if doms is None:
        raise TpuplanError("internal error: the reference plan is outside its own windows")
    arcs = stage_arcs(tables, masks, [d.tolist() for d in doms], cap)
    if any(len(p) == 0 for p, _ in arcs):
        raise TpuplanError("internal error: a narrowed stage has no allowed segment")

    def objective(c: list[int]) -> int:
        return totals(tables, c, goal).objective

    cuts, done = _descend(tables, arcs, goal, hint, objective, Caps, deadline, workers, seed)
    value = objective(cuts)
    if out.proven and value != out.objective:
        raise TpuplanError(f"internal error: CP-SAT found {value} below the reference optimum {out.objective}")
    if not done:
        out.cuts, out.objective = cuts, value
        out.notes.append("CP-SAT stopped before proving the optimum (time limit or size); kept the best plan found")
        return
    out.cuts, out.objective, out.best_bound, out.proven, out.status = cuts, value, value, True, "OPTIMAL"
    now = time.monotonic()
    pin_deadline = min(deadline, now + max(PIN_MIN_S, PIN_FACTOR * (now - started)))
    out.cuts, done = _pin(tables, arcs, goal, value, cuts, pin_deadline)
    if not done:
        out.notes.append("tie-break not finished in time: the choice among optimal plans is not pinned")
