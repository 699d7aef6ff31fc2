"""Optimal contiguous segmentation with OR-Tools CP-SAT, pinned to one answer and checked by the reference.

Data: the stage tables (profiles.stagecost) and the goal (planner.costs). Variables: end_k, the last op of
stage k; for each stage, (end_{k-1}, end_k) picks one allowed row of a table constraint that also gives
the stage's time T, serialized share S, bus time V and one-off O. Constraints: P >= every T_k,
P >= sum S_k, P >= sum V_k. Objective: alpha P + beta sum T_k + gamma sum O_k (planner.costs).

Why it is fast: the exact reference (planner.reference) gives the optimum first; the ends that lie on a
plan whose every stage is at most the largest stage time that optimum allows narrow each end_k, and the
reference's plan is the hint. Why it is deterministic: after CP-SAT proves the optimum, two more
phases pin one plan among the optimal ones: the least secondary number (latency for a throughput goal,
period for a latency goal), then the lexicographically smallest cut list, end by end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from tpuplan.planner.costs import Goal, check_exact, totals
from tpuplan.planner.reference import I64, INF, Mask, reachable_ends, reference_solve, stage_masks
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.stagecost import StageCostTable, start_us

DEFAULT_TIME_LIMIT_S = 30.0
DEFAULT_WORKERS = 1  # deterministic search, and the fastest on these narrowed models
MAX_WORKERS = 64
MAX_TIME_LIMIT_S = 86_400.0
_STOP_GRACE_S = 0.05  # the watchdog stops a solve this long after its own time limit should have
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

    def __init__(self, tables: Sequence[StageCostTable], arcs: Sequence[tuple[I64, I64]], doms: Sequence[Sequence[int]],
                 goal: Goal) -> None:
        k = len(tables)
        m = cp_model.CpModel()
        self.model = m
        self.ends = [m.new_int_var_from_domain(cp_model.Domain.from_values(list(d)), f"end_{j}")
                     for j, d in enumerate(doms)]
        self.arcs = arcs
        self.x = [[m.new_bool_var(f"x_{s}_{p}_{e}") for p, e in zip(ps.tolist(), es.tolist(), strict=True)]
                  for s, (ps, es) in enumerate(arcs)]
        m.add_exactly_one(self.x[0])
        for s in range(k - 1):
            self._link(s)
        cost = [[self._values(getattr(tables[s], f), s) for s in range(k)]
                for f in ("time_us", "serial_us", "bus_us", "oneoff_us")]
        times = [cp_model.LinearExpr.weighted_sum(self.x[s], cost[0][s]) for s in range(k)]
        sums = [cp_model.LinearExpr.weighted_sum([x for xs in self.x for x in xs], [c for cs in cost[j] for c in cs])
                for j in (1, 2, 3)]
        top = max(max(max(c) for c in cost[0]), *(sum(max(c) for c in cost[j]) for j in (1, 2)))
        self.period = m.new_int_var(0, top, "period")
        for t in times:
            m.add(self.period >= t)
        m.add(self.period >= sums[0])
        m.add(self.period >= sums[1])
        alpha, beta, gamma = goal.weights
        self.latency = cp_model.LinearExpr.sum(times)
        self.objective = alpha * self.period + beta * self.latency + gamma * (sums[2] + start_us(tables))
        self.secondary = self.latency if goal.objective == "throughput" else self.period

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


def stage_arcs(tables: Sequence[StageCostTable], masks: Sequence[Mask], doms: Sequence[Sequence[int]], cap: int
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


def _solver(workers: int, seed: int) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    solver.parameters.cp_model_probing_level = 0  # presolve probing dominates on these small models (#5163)
    return solver


def _minimise(cm: _CutModel, expr: Any, deadline: float, workers: int, seed: int) -> tuple[int, list[int]] | None:
    """Minimise `expr` on the model as it stands; (proven value, cuts), or None if not proven in time."""
    cm.model.minimize(expr)
    solver = _solver(workers, seed)
    status = _run(solver, cm.model, deadline)
    if status == cp_model.MODEL_INVALID:
        raise TpuplanError(f"internal error: CP-SAT rejected the model ({cm.model.validate()})")
    if status != cp_model.OPTIMAL:
        return None
    return round(solver.objective_value), [int(solver.value(e)) for e in cm.ends]


def _pin(cm: _CutModel, objective: int, deadline: float, workers: int, seed: int) -> list[int] | None:
    """Among plans of objective `objective`: the least secondary number, then the smallest cuts."""
    cm.model.add(cm.objective <= objective)
    got = _minimise(cm, cm.secondary, deadline, workers, seed)
    if got is None:
        return None
    cm.model.add(cm.secondary <= got[0])
    cuts = got[1]
    for end in cm.ends:
        found = _minimise(cm, end, deadline, workers, seed)
        if found is None:
            return None
        cm.model.add(end == found[0])
        cuts = found[1]
    return cuts


def _stage_cap(goal: Goal, objective: int, tables: Sequence[StageCostTable]) -> int:
    """The largest stage time a plan of objective <= `objective` can have (every T is at most P and L)."""
    alpha, beta, gamma = goal.weights
    budget = objective - gamma * start_us(tables)
    caps = [budget // w for w in (alpha, beta) if w > 0]
    return max(0, min(caps))


def check_solver_options(time_limit_s: float | None, workers: int) -> None:
    """A time limit from over 0 to a day (NaN and infinity refused), 1 to MAX_WORKERS worker threads."""
    if time_limit_s is not None and not 0 < time_limit_s <= MAX_TIME_LIMIT_S:
        raise TpuplanError(
            f"the time limit must be more than 0 and at most {MAX_TIME_LIMIT_S:g} s (got {time_limit_s:g})")
    if not 1 <= workers <= MAX_WORKERS:
        raise TpuplanError(f"workers must be from 1 to {MAX_WORKERS} (got {workers})")


def solve_tables(tables: Sequence[StageCostTable], goal: Goal | None = None, *, allow_spill: bool = False,
                 time_limit_s: float | None = None, workers: int = DEFAULT_WORKERS, seed: int = 0,
                 prove: bool = True) -> Outcome:
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
    out = Outcome(ref.cuts, "REFERENCE" if ref.proven else "FEASIBLE", ref.objective,
                  ref.objective if ref.proven else 0, ref.proven, onchip)
    if not ref.proven:
        out.notes.append("reference search stopped by the time limit")
    if k == 1:
        out.status, out.proven, out.best_bound = "OPTIMAL", True, ref.objective
        return out
    if not prove:
        return out
    _prove(tables, goal, onchip, ref.cuts, deadline, workers, seed, out)
    if totals(tables, out.cuts, goal).objective != out.objective:
        raise TpuplanError("internal error: the solver's objective disagrees with the cost tables")
    if not onchip and not allow_spill:
        out.notes.append("no plan keeps every stage on chip with these TPUs; parameters stream")
    return out


def _prove(tables: Sequence[StageCostTable], goal: Goal, onchip: bool, hint: list[int], deadline: float,
           workers: int, seed: int, out: Outcome) -> None:
    """CP-SAT proves the optimum on the narrowed model and pins one plan; every status updates `out`."""
    masks = stage_masks(tables, onchip)
    cap = _stage_cap(goal, out.objective, tables)
    doms = reachable_ends(tables, masks, cap)
    if doms is None:
        raise TpuplanError("internal error: the reference plan is outside its own windows")
    arcs = stage_arcs(tables, masks, [d.tolist() for d in doms], cap)
    if any(len(p) == 0 for p, _ in arcs):
        raise TpuplanError("internal error: a narrowed stage has no allowed segment")
    size = sum(len(p) for p, _ in arcs)
    if time.monotonic() >= deadline or size > MAX_ARCS:
        why = "the time limit" if time.monotonic() >= deadline else f"its size ({size:,} stage choices)"
        out.notes.append(f"CP-SAT skipped because of {why}; kept the reference plan")
        return
    cm = _CutModel(tables, arcs, [d.tolist() for d in doms], goal)
    cm.hint(hint)
    got = _minimise(cm, cm.objective, deadline, workers, seed)
    if got is None:
        out.notes.append("CP-SAT stopped before proving the optimum (time limit); kept the reference plan")
        return
    value, cuts = got
    if out.proven and value != out.objective:
        raise TpuplanError(f"internal error: CP-SAT optimum {value} != reference optimum {out.objective}")
    out.cuts, out.objective, out.best_bound, out.proven, out.status = cuts, value, value, True, "OPTIMAL"
    pinned = _pin(cm, value, deadline, workers, seed)
    if pinned is None:
        out.notes.append("tie-break not finished in time: the choice among optimal plans is not pinned")
    else:
        out.cuts = pinned
