"""CP-SAT on the stage choices: "is there a plan within these caps?", asked to prove an optimum.

Data: the choices of every layer that the bounds of `planner.search.prune` left (`problem.Choices`: stage
p+1..e on a device kind, with its copies). Variables: one boolean per choice, chosen along a path (one
per layer, each starting where the last one ended; the empty choice lets a plan stop early). Constraints:
the period P at least every period bound of the cost formula (formula.PERIOD_BOUNDS: each layer's stage
time with its copies, the sums over the layers), at most `counts[kind]` devices of a kind, and the
question's caps on J = alpha P + beta L + gamma (start + O) and on the secondary number. Every cost is
linear in the booleans, so the relaxation is a shortest path and proofs are quick.

`planner.search.engine` asks it "is there a plan of objective <= v - 1?" after the exact reference found
v: INFEASIBLE is the proof (when the bounds do not settle it first), a plan found is a better one (only
when the reference ran out of time), and the question is asked again below it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from tpuplan.compat import zip_strict
from tpuplan.planner.defaults import MAX_TIME_LIMIT_S
from tpuplan.planner.search.problem import Choices, Component, Problem, Question, comp_matrix, filters, is_bound
from tpuplan.planner.search.prune import has_plan
from tpuplan.profiles.errors import TpuplanError

MAX_WORKERS = 64
_STOP_GRACE_S = 0.05  # the watchdog stops a solve this long after its own time limit should have
MAX_ARCS = 250_000  # choices above which CP-SAT is not built (the reference's plan is kept)


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


def new_solver(workers: int, seed: int) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    solver.parameters.cp_model_probing_level = 0  # presolve probing dominates on these small models (#5163)
    solver.parameters.find_big_linear_overlap = False  # seconds of presolve on the arc model, no gain
    return solver


class PathModel:
    """The CP-SAT model of question q over the layers' choices."""

    def __init__(self, problem: Problem, q: Question, layers: Sequence[Choices]) -> None:
        m = cp_model.CpModel()
        self.model, self.layers = m, layers
        self.x = [[m.new_bool_var(f"x_{s}_{j}") for j in range(len(c))] for s, c in enumerate(layers)]
        m.add_exactly_one(self.x[0])
        for s in range(len(layers) - 1):
            self._link(s)
        comps = (*q.comps, *(Component(name, "max") for name in filters(q)))  # the filtered bounds too
        mats = [comp_matrix(problem, comps, c) for c in layers]
        exprs: dict[str, Any] = {}
        maxes: dict[str, list[Any]] = {}
        for j, comp in enumerate(comps):
            per_layer = [
                cp_model.LinearExpr.weighted_sum(xs, mat[:, j].tolist()) for xs, mat in zip_strict(self.x, mats)
            ]
            if comp.combine == "max":
                maxes[comp.name] = per_layer
            else:
                exprs[comp.name] = sum(per_layer)
                if comp.cap is not None:
                    m.add(exprs[comp.name] <= comp.cap)
        top = sum(int(mat[:, j].max(initial=0)) for mat in mats for j, c in enumerate(comps) if is_bound(c.name))
        self.period = m.new_int_var(0, max(top, 1), "period")
        for per_layer in maxes.values():
            for e in per_layer:
                m.add(self.period >= e)
        for name, e in exprs.items():
            if is_bound(name):
                m.add(self.period >= e)
        alpha, beta, gamma = q.goal.weights
        latency = exprs.get("T", 0)
        oneoff = exprs.get("O", 0) + problem.start_us
        self.objective = alpha * self.period + beta * latency + gamma * oneoff
        m.add(self.objective <= q.objective)
        if q.secondary is not None:
            m.add((latency if q.goal.objective == "throughput" else self.period) <= q.secondary)

    def _link(self, s: int) -> None:
        """Layer s+1 starts right after layer s ends."""
        ending: dict[int, list[Any]] = {}
        for e, x in zip_strict(self.layers[s].e.tolist(), self.x[s]):
            ending.setdefault(e, []).append(x)
        starting: dict[int, list[Any]] = {}
        for p, x in zip_strict(self.layers[s + 1].p.tolist(), self.x[s + 1]):
            starting.setdefault(p, []).append(x)
        for e in set(ending) | set(starting):
            self.model.add(cp_model.LinearExpr.sum(ending.get(e, [])) == cp_model.LinearExpr.sum(starting.get(e, [])))

    def choices(self, solver: cp_model.CpSolver) -> list[Choices]:
        """The plan found: its one choice of every layer."""
        return [
            c.take(np.array([next(j for j, x in enumerate(xs) if solver.value(x))]))
            for c, xs in zip_strict(self.layers, self.x)
        ]


def ask(
    problem: Problem, q: Question, layers: Sequence[Choices], deadline: float, workers: int, seed: int
) -> bool | list[Choices] | None:
    """Is there a plan within q among these choices? True: none (proven); the one choice of every layer
    of a plan that is; None: not known in time (or too large to ask)."""
    if not has_plan(layers):
        return True
    if sum(len(c) for c in layers) > MAX_ARCS or time.monotonic() >= deadline:
        return None
    pm = PathModel(problem, q, layers)
    solver = new_solver(workers, seed)
    status = _run(solver, pm.model, deadline)
    if status == cp_model.MODEL_INVALID:
        raise TpuplanError(f"internal error: CP-SAT rejected the model ({pm.model.validate()})")
    if status == cp_model.INFEASIBLE:
        return True
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return pm.choices(solver)
    return None


def check_solver_options(time_limit_s: float | None, workers: int) -> None:
    """A time limit from over 0 to a day (NaN and infinity refused), 1 to MAX_WORKERS worker threads."""
    if time_limit_s is not None and not 0 < time_limit_s <= MAX_TIME_LIMIT_S:
        raise TpuplanError(
            f"the time limit must be more than 0 and at most {MAX_TIME_LIMIT_S:g} s (got {time_limit_s:g})"
        )
    if not 1 <= workers <= MAX_WORKERS:
        raise TpuplanError(f"workers must be from 1 to {MAX_WORKERS} (got {workers})")
