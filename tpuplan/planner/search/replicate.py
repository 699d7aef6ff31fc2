"""Stages with copies: several TPUs run one stage and take its inputs in turn.

A stage can never be cut finer than one layer, so on models with one heavy layer more stages stop paying.
Given T TPUs of one kind, choose K stages and a number of copies r_k >= 1 per stage, sum r_k <= T, for the
least period P = max(max_k T_k(r_k), sum_k S_k, sum_k V_k), where T_k(r) = ceil((T_k - S_k) / r) + S_k:
each copy has its own device and runner thread, so a stage's work divides among its copies except its
serialized share S_k (work under the one lock); the serialized and bus sums do not shrink either (every
input is still copied and sent once). A copy holds the whole stage's parameters on its own TPU and pays
the stage's one-off (its own upload). Ties: fewest TPUs, then fewest copies (more stages), then least
latency, then the smallest cuts, then the smallest copies.

Exact reference: binary search on the period t. For a threshold t each segment needs at least
need(t) = ceil((T - S) / (t - S)) copies; a label-setting search over (TPUs, S, V) finds whether some
plan of any length fits T TPUs. CP-SAT then proves the optimum of the chosen K with one boolean per
(segment, copies) and pins the tie-break.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from tpuplan.planner.defaults import DEFAULT_TIME_LIMIT_S
from tpuplan.planner.search.cpsat import MAX_ARCS, new_solver, stage_arcs
from tpuplan.planner.search.labels import I64, INF, Mask, Step, backtrack, run_labels, stage_masks
from tpuplan.planner.search.reference import reachable_ends
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.formula import PERIOD_BOUNDS
from tpuplan.profiles.pricing.tables import StageCostTable, pipeline_cost

MAX_REPLICATED_TPUS = 16


@dataclass(frozen=True)
class Replicated:
    """A plan with copies: where the stages end, how many TPUs run each, and its numbers (us)."""

    cuts: list[int]
    copies: list[int]
    period_us: int
    latency_us: int
    status: str  # OPTIMAL: CP-SAT proved and pinned it; REFERENCE: the exact reference only; FEASIBLE: neither
    notes: tuple[str, ...] = ()

    @property
    def proven(self) -> bool:
        return self.status in ("OPTIMAL", "REFERENCE")

    @property
    def tpus(self) -> int:
        return sum(self.copies)


def copies_needed(table: StageCostTable, t: int, limit: int) -> I64:
    """For every segment a..b: the fewest copies whose time per input is at most t (INF when none <= limit):
    the inverse of `formula.interval`, ceil((T - S) / r) + S <= t."""
    fixed = np.minimum(table.value("serial"), table.time_us)
    work = table.time_us - fixed
    room = t - fixed
    need = np.where(room > 0, -(-work // np.maximum(room, 1)), INF)
    need = np.where(table.time_us <= t, 1, np.maximum(need, 1))
    out: I64 = np.where(need <= limit, need, INF)
    return out


def _steps(table: StageCostTable, mask: Mask, t: int, tpus: int) -> list[Step]:
    need = copies_needed(table, t, tpus)
    others = tuple((b.combine, table.value(b.value)) for b in PERIOD_BOUNDS[1:])  # the serialized and bus sums
    step = Step(mask & (need < INF) & (table.time_us >= 0), (("sum", need), *others))
    return [step] * min(tpus, table.n)


def _within(t: int, tpus: int) -> object:
    def keep(comps: I64) -> Mask:
        out: Mask = (comps[:, 0] <= tpus) & (comps[:, 1:] <= t).all(axis=1)
        return out

    return keep


def _fewest_tpus(table: StageCostTable, mask: Mask, t: int, tpus: int) -> tuple[int, int, list[int]] | None:
    """The plan with period <= t using the fewest TPUs (then the most stages): (TPUs, K, cuts), or None."""
    layers = run_labels(_steps(table, mask, t, tpus), table.n, _within(t, tpus), open_end=True)  # type: ignore[arg-type]
    best: tuple[int, int, list[int]] | None = None
    for k, layer in enumerate(layers or [], start=1):
        done = np.flatnonzero(layer.end == table.n - 1)
        if done.size == 0:
            continue
        j = int(done[np.argmin(layer.comps[done, 0])])
        key = (int(layer.comps[j, 0]), -k)
        if best is None or key < (best[0], -best[1]):
            best = (key[0], k, backtrack(layers[:k], j))  # type: ignore[index]
    return best


def reference_replicated(
    table: StageCostTable, tpus: int, *, onchip: bool, deadline: float | None = None
) -> tuple[int, int, int, list[int], bool] | None:
    """(least period, fewest TPUs at it, K, cuts of such a plan, proven) over plans with copies, or None."""
    mask = stage_masks([table], onchip)[0]
    hi_plan = _fewest_tpus(table, mask, INF // 4, tpus)
    if hi_plan is None:
        return None
    lo, hi = 0, _period(table, hi_plan[2], tpus)
    best, proven = hi_plan, True
    while lo < hi:
        if deadline is not None and time.monotonic() > deadline:
            proven = False
            break
        mid = (lo + hi) // 2
        got = _fewest_tpus(table, mask, mid, tpus)
        if got is None:
            lo = mid + 1
        else:
            best, hi = got, mid
    best = _fewest_tpus(table, mask, hi, tpus) or best
    return hi, best[0], best[1], best[2], proven


def _period(table: StageCostTable, cuts: Sequence[int], tpus: int) -> int:
    """The least period of these cuts when the spare TPUs go to the stages that need them (greedy)."""
    copies = [1] * (len(cuts) + 1)
    bounds = list(zip([0, *(c + 1 for c in cuts)], [*cuts, table.n - 1], strict=True))
    for _ in range(tpus - len(copies)):
        times = [table.copied_time_us(a, b, r) for (a, b), r in zip(bounds, copies, strict=True)]
        copies[times.index(max(times))] += 1
    return pipeline_cost([table] * len(copies), cuts, copies).period_us


class _CopyModel:
    """CP-SAT over K stages: one boolean per (stage, segment, copies), chosen along a path."""

    def __init__(self, table: StageCostTable, k: int, tpus: int, arcs: Sequence[tuple[I64, I64]], cap: int) -> None:
        m = cp_model.CpModel()
        self.model = m
        spare = tpus - (k - 1)
        self.choices: list[list[tuple[int, int, int, cp_model.IntVar]]] = []
        for s, (ps, es) in enumerate(arcs):
            need = copies_needed(table, cap, spare)[ps + 1, es]
            self.choices.append(
                [
                    (p, e, r, m.new_bool_var(f"x_{s}_{p}_{e}_{r}"))
                    for p, e, lo in zip(ps.tolist(), es.tolist(), need.tolist(), strict=True)
                    if lo < INF
                    for r in range(int(lo), spare + 1)
                ]
            )
        self._path(k)
        self.period = m.new_int_var(0, cap, "period")
        for s in range(k):
            m.add(self.period >= sum(table.copied_time_us(p + 1, e, r) * x for p, e, r, x in self.choices[s]))
        for b in PERIOD_BOUNDS[1:]:  # the other bounds of the cost formula: copies do not shorten them
            mat = table.value(b.value)
            if b.combine == "sum":
                m.add(self.period >= sum(int(mat[p + 1, e]) * x for cs in self.choices for p, e, _, x in cs))
            else:
                for cs in self.choices:
                    m.add(self.period >= sum(int(mat[p + 1, e]) * x for p, e, _, x in cs))
        self.tpus = sum(r * x for cs in self.choices for _, _, r, x in cs)
        m.add(self.tpus <= tpus)
        self.latency = sum(int(table.time_us[p + 1, e]) * x for cs in self.choices for p, e, _, x in cs)
        self.ends = [sum(e * x for _, e, _, x in cs) for cs in self.choices[:-1]]
        self.copies = [sum(r * x for _, _, r, x in cs) for cs in self.choices]
        self.solution: tuple[list[int], list[int]] = ([], [])

    def _path(self, k: int) -> None:
        m = self.model
        m.add_exactly_one([x for _, _, _, x in self.choices[0]])
        for s in range(k - 1):
            ending: dict[int, list[cp_model.IntVar]] = {}
            for _, e, _, x in self.choices[s]:
                ending.setdefault(e, []).append(x)
            starting: dict[int, list[cp_model.IntVar]] = {}
            for p, _, _, x in self.choices[s + 1]:
                starting.setdefault(p, []).append(x)
            for e in set(ending) | set(starting):
                m.add(sum(ending.get(e, [])) == sum(starting.get(e, [])))


def _minimise(cm: _CopyModel, expr: object, deadline: float) -> int | None:
    cm.model.minimize(expr)  # type: ignore[arg-type]
    solver = new_solver(1, 0)
    solver.parameters.max_time_in_seconds = max(deadline - time.monotonic(), 0.001)
    status = solver.solve(cm.model)
    if status != cp_model.OPTIMAL:
        return None
    value = round(solver.objective_value)
    cm.model.add(expr <= value)  # type: ignore[operator]
    cm.solution = ([int(solver.value(e)) for e in cm.ends], [int(solver.value(c)) for c in cm.copies])
    return value


def _prove(
    table: StageCostTable, k: int, tpus: int, period: int, onchip: bool, deadline: float
) -> tuple[list[int], list[int]] | None:
    """CP-SAT: the optimum period again, then the tie-break; None if it does not finish in time."""
    masks = stage_masks([table] * k, onchip)
    doms = reachable_ends([table] * k, masks, INF // 4) if k > 1 else []
    if doms is None:
        return None
    arcs = stage_arcs([table] * k, masks, [d.tolist() for d in doms], INF // 4)
    if sum(len(ps) for ps, _ in arcs) * (tpus - k + 1) > MAX_ARCS:
        return None  # too large to prove in time: the reference's plan is kept, marked not proven
    cm = _CopyModel(table, k, tpus, arcs, period)
    steps = [cm.period, cm.tpus, cm.latency, *cm.ends, *cm.copies]
    for expr in steps:
        if _minimise(cm, expr, deadline) is None:
            return None
    ends, copies = cm.solution
    return ends, copies


def solve_replicated(
    table: StageCostTable, tpus: int, *, allow_spill: bool = False, time_limit_s: float | None = None
) -> Replicated:
    """The least-period plan with copies over at most `tpus` TPUs of one kind, proven and pinned."""
    if not 1 <= tpus <= MAX_REPLICATED_TPUS:
        raise TpuplanError(f"copies are planned for 1 to {MAX_REPLICATED_TPUS} TPUs (got {tpus})")
    deadline = time.monotonic() + (DEFAULT_TIME_LIMIT_S if time_limit_s is None else time_limit_s)
    onchip = not allow_spill and reference_replicated(table, tpus, onchip=True) is not None
    ref = reference_replicated(table, tpus, onchip=onchip, deadline=deadline)
    if ref is None:
        raise TpuplanError(f"no plan over {tpus} TPUs: every stage needs an op the Edge TPU runs")
    period, _, k, cuts, proven = ref
    pinned = _prove(table, k, tpus, period, onchip, deadline) if proven else None
    notes = [] if proven else ["reference search stopped by the time limit: the period is not proven least"]
    if pinned is not None:
        cuts, copies = pinned
    else:
        copies = _spread(table, cuts, tpus, period)
        if proven:
            notes.append(
                "CP-SAT did not finish (time limit or size): the least period is proven by the exact "
                "reference, the choice among equal plans is not pinned"
            )
    if not onchip and not allow_spill:
        notes.append("no plan keeps every stage on chip with these TPUs; parameters stream")
    cost = pipeline_cost([table] * len(copies), cuts, copies)
    if proven and cost.period_us != period:
        raise TpuplanError(f"internal error: plan with copies priced {cost.period_us} us, search said {period} us")
    status = "OPTIMAL" if pinned is not None else ("REFERENCE" if proven else "FEASIBLE")
    return Replicated(list(cuts), copies, cost.period_us, cost.latency_us, status, tuple(notes))


def _spread(table: StageCostTable, cuts: Sequence[int], tpus: int, period: int) -> list[int]:
    """The fewest copies per stage that meet `period`."""
    bounds = zip([0, *(c + 1 for c in cuts)], [*cuts, table.n - 1], strict=True)
    need = copies_needed(table, period, tpus)
    return [int(need[a, b]) for a, b in bounds]


def brute_force_replicated(
    table: StageCostTable, tpus: int, *, onchip: bool
) -> tuple[int, int, int, int, list[int], list[int]] | None:
    """(period, TPUs, -K, latency, cuts, copies): the least such tuple over every plan with copies
    (tiny n and T only), the order `solve_replicated` breaks ties in."""
    n = table.n
    mask = stage_masks([table], onchip)[0]
    best: tuple[int, int, int, int, list[int], list[int]] | None = None
    for k in range(1, min(n, tpus) + 1):
        for cuts in itertools.combinations(range(n - 1), k - 1):
            bounds = list(zip([0, *(c + 1 for c in cuts)], [*cuts, n - 1], strict=True))
            if not all(mask[a, b] for a, b in bounds):
                continue
            for copies in itertools.product(range(1, tpus - k + 2), repeat=k):
                if sum(copies) > tpus:
                    continue
                cost = pipeline_cost([table] * k, cuts, copies)
                key = (cost.period_us, sum(copies), -k, cost.latency_us, list(cuts), list(copies))
                if best is None or key < best:
                    best = key
    return best
