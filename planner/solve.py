"""Optimal contiguous segmentation with OR-Tools CP-SAT, pinned to one answer and backed by the reference.

Model: integer cut positions end_k (stage k covers ops end_{k-1}+1 .. end_k). Each stage's time is
U_k[start] + V_k[end] + spill_k with spill_k >= Sb_k[end] - W_k[start], spill_k >= 0 (see
planner.reference for the terms), taken from the tables by element constraints; z >= every stage time
and we minimise z. Spill enters with a positive coefficient, so the optimum of z is exactly the min-max
of `StageCostTable.stage_time_us`.

Why it is fast: the exact reference (numpy, O(K n log n) per probe) gives an upper bound and the ends
that lie on some plan within it; each end_k's domain is narrowed to those, the reference plan is the
hint, and a cheap lower bound caps z from below. CP-SAT then proves optimality on small domains.

Why it is deterministic: CP-SAT with several workers may return any optimal solution, so after it
proves the bottleneck the answer is pinned by an exact DP over the same narrowed domains
(reference.pin_ties): least sum of stage times, then the lexicographically smallest cut list. (Doing
those two phases in CP-SAT took up to 30 s on a tiled 10,000-op model; the DP takes milliseconds.)
The hint is not a guaranteed incumbent, so the reference plan is always kept as the fallback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ortools.sat.python import cp_model

from tpuplan.planner.costs import stage_tables
from tpuplan.planner.plan import (
    AutoRow,
    Plan,
    SolverInfo,
    SolverParameters,
    Status,
    build_plan,
    check_k,
    expand_devices,
)
from tpuplan.planner.reference import (
    T_ANY,
    StageArrays,
    arrays_for,
    bottleneck_of,
    fewest_onchip_stages,
    forward_masks,
    lower_bound,
    pin_ties,
    reference_solve,
    windows,
)
from tpuplan.profiles.device import DeviceSpec
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.stagecost import StageCostTable

DEFAULT_TIME_LIMIT_S = 30.0
DEFAULT_WORKERS = 1  # fastest on the narrowed models (measured: see benchmarks), and a deterministic search
_PRESOLVE_MAX_VALUES = 1000  # above this many end values in all, presolve costs more than it saves
_STOP_GRACE_S = 0.05  # the watchdog stops a solve this long after its own time limit should have


_Expr = cp_model.LinearExpr | int


@dataclass
class Outcome:
    """What the solver found for one K, before it becomes a Plan."""

    cuts: list[int]
    status: Status
    objective: int
    best_bound: int
    proven: bool
    onchip: bool  # the every-stage-on-chip constraint was imposed
    tpus_needed_on_chip: int | None
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
    """The CP-SAT model over narrowed end domains (end_k, one element constraint per term and stage)."""

    def __init__(
        self, arrs: Sequence[StageArrays], doms: Sequence[Sequence[int]], lb: int, ub: int, onchip: bool
    ) -> None:
        n, k = len(arrs[0].U), len(arrs)
        m = cp_model.CpModel()
        self.model = m
        self.ends = [
            m.new_int_var_from_domain(cp_model.Domain.from_values([int(e) for e in d]), f"end_{j}")
            for j, d in enumerate(doms)
        ]
        self.z = m.new_int_var(lb, ub, "z")
        for j in range(k - 2):
            m.add(self.ends[j] + 1 <= self.ends[j + 1])
        for s, arr in enumerate(arrs):
            spill_possible = not onchip or not arr.regular
            if s == 0:
                u: _Expr = int(arr.U[0])
                w: _Expr = int(arr.W[0])
                lc: _Expr = int(arr.LC[0])
            else:
                prev, lo, hi = self.ends[s - 1], int(doms[s - 1][0]) + 1, int(doms[s - 1][-1]) + 1
                u = self._element(prev - (lo - 1), arr.U[lo : hi + 1].tolist(), f"u_{s}")
                w = self._element(prev - (lo - 1), arr.W[lo : hi + 1].tolist(), f"w_{s}") if spill_possible else 0
                lc = self._element(prev - (lo - 1), arr.LC[lo : hi + 1].tolist(), f"lc_{s}") if onchip else 0
            if s == k - 1:
                end: _Expr = n - 1
                v: _Expr = int(arr.V[n - 1])
                sb: _Expr = int(arr.Sb[n - 1])
            else:
                end, lo, hi = self.ends[s], int(doms[s][0]), int(doms[s][-1])
                v = self._element(end - lo, arr.V[lo : hi + 1].tolist(), f"v_{s}")
                sb = self._element(end - lo, arr.Sb[lo : hi + 1].tolist(), f"sb_{s}") if spill_possible else 0
            t = m.new_int_var(-(2**40), ub, f"time_{s}")
            if spill_possible:
                spill = m.new_int_var(0, 2**40, f"spill_{s}")
                m.add(spill >= sb - w)
                m.add(t == u + v + spill)
            else:
                m.add(t == u + v)
            m.add(self.z >= t)
            if onchip:
                m.add(end <= lc)

    def _element(self, index: _Expr, values: list[int], name: str) -> cp_model.IntVar:
        var = self.model.new_int_var(min(values), max(values), name)
        self.model.add_element(index, values, var)
        return var

    def hint(self, cuts: Sequence[int]) -> None:
        for var, c in zip(self.ends, cuts, strict=True):
            self.model.add_hint(var, c)


def _cp_bottleneck(
    arrs: Sequence[StageArrays], doms: Sequence[Sequence[int]], lb: int, ub: int, onchip: bool,
    hint: Sequence[int], deadline: float, workers: int, seed: int, out: Outcome,
) -> None:
    """CP-SAT proves the least bottleneck; every status is handled, updating `out`."""
    cm = _CutModel(arrs, doms, lb, ub, onchip)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    # presolve probing dominates the time on these small models and is where ortools 9.15 can overrun
    # its time limit (#5163); on large domains the whole presolve costs more than it saves
    solver.parameters.cp_model_probing_level = 0
    if sum(len(d) for d in doms) > _PRESOLVE_MAX_VALUES:
        solver.parameters.cp_model_presolve = False
    cm.hint(hint)
    cm.model.minimize(cm.z)
    status = _run(solver, cm.model, deadline)
    if status == cp_model.MODEL_INVALID:
        raise TpuplanError(f"internal error: CP-SAT rejected the model ({cm.model.validate()})")
    if status == cp_model.INFEASIBLE:
        out.notes.append("CP-SAT found no plan within the reference's bound (kept the reference plan)")
        return
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        out.notes.append("CP-SAT stopped without a solution (time limit); kept the reference plan")
        return
    cuts = [solver.value(e) for e in cm.ends]
    obj = int(solver.objective_value)
    if status == cp_model.FEASIBLE:
        out.notes.append("CP-SAT hit the time limit before proving optimality")
        out.best_bound = max(out.best_bound, int(solver.best_objective_bound))
        if obj < out.objective:
            out.cuts, out.objective = cuts, obj
        return
    if out.proven and obj != out.objective:
        raise TpuplanError(f"internal error: CP-SAT optimum {obj} us != reference optimum {out.objective} us")
    out.cuts, out.objective, out.best_bound, out.proven, out.status = cuts, obj, obj, True, "OPTIMAL"


def solve_tables(
    tables: Sequence[StageCostTable],
    *,
    allow_spill: bool = False,
    time_limit_s: float | None = None,
    workers: int = DEFAULT_WORKERS,
    seed: int = 0,
) -> Outcome:
    """Best cut list for K = len(tables) stages (stage k on tables[k]); the core of `solve`."""
    start = time.monotonic()
    limit = DEFAULT_TIME_LIMIT_S if time_limit_s is None else time_limit_s
    if limit <= 0:
        raise TpuplanError(f"the time limit must be positive (got {limit:g} s)")
    if workers < 1:
        raise TpuplanError(f"workers must be at least 1 (got {workers})")
    deadline = start + limit
    k, n = len(tables), tables[0].n
    if not 1 <= k <= n:
        raise TpuplanError(f"cannot split {n} ops over {k} TPUs")
    arrs = arrays_for(tables)
    needed = fewest_onchip_stages(tables)
    onchip = not allow_spill and forward_masks(arrs, T_ANY, True) is not None
    ref = reference_solve(tables, onchip=onchip, deadline=deadline)
    if ref is None:  # cannot happen without the memory constraint
        raise TpuplanError(f"no plan over {k} TPUs exists")
    lb = min(lower_bound(tables), ref.bottleneck)
    out = Outcome(
        cuts=ref.cuts,
        status="REFERENCE" if ref.proven else "FEASIBLE",
        objective=ref.bottleneck,
        best_bound=ref.bottleneck if ref.proven else lb,
        proven=ref.proven,
        onchip=onchip,
        tpus_needed_on_chip=needed,
    )
    if not ref.proven:
        out.notes.append("reference search stopped by the time limit")
    if k == 1:
        out.status, out.proven, out.best_bound = "OPTIMAL", True, out.objective
        return out
    doms = windows(arrs, ref.bottleneck, onchip)
    if doms is None:
        raise TpuplanError("internal error: the reference plan is outside its own windows")
    _cp_bottleneck(
        arrs, [d.tolist() for d in doms], lb, ref.bottleneck, onchip, ref.cuts, deadline, workers, seed, out
    )
    if out.proven:  # pin one answer among the optimal plans: least total time, then smallest cuts
        pinned = pin_ties(arrs, doms, out.objective, onchip, deadline)
        if pinned is None:
            out.notes.append("tie-break not finished in time: cut choice among optimal plans not pinned")
            if ref.bottleneck == out.objective:
                out.cuts = ref.cuts  # at least the same on every run
        else:
            out.cuts = pinned[1]
    if bottleneck_of(tables, out.cuts) != out.objective:
        raise TpuplanError("internal error: the solver's bottleneck disagrees with the cost tables")
    if not onchip and not allow_spill:
        out.notes.append("no plan keeps every stage on chip with these TPUs; parameters spill")
    return out


def _solver_info(out: Outcome, start: float, workers: int, time_limit_s: float | None, seed: int,
                 allow_spill: bool) -> SolverInfo:
    return SolverInfo(
        status=out.status,
        objective=out.objective,
        best_bound=out.best_bound,
        wall_time_s=round(time.monotonic() - start, 4),
        parameters=SolverParameters(
            workers=workers, time_limit_s=time_limit_s, seed=seed, allow_spill=allow_spill
        ),
        proven_optimal=out.proven,
        note="; ".join(out.notes),
    )


def solve(
    profile: Profile,
    k: int,
    devices: Sequence[DeviceSpec] | None = None,
    *,
    allow_spill: bool = False,
    time_limit_s: float | None = None,
    workers: int = DEFAULT_WORKERS,
    seed: int = 0,
) -> Plan:
    """The min-bottleneck plan of `profile` over k TPUs (devices: none, one for all, or one per TPU)."""
    start = time.monotonic()
    check_k(profile, k)
    devs = expand_devices(profile, devices, k)
    tables = stage_tables(profile, devs)
    out = solve_tables(tables, allow_spill=allow_spill, time_limit_s=time_limit_s, workers=workers, seed=seed)
    info = _solver_info(out, start, workers, time_limit_s, seed, allow_spill)
    return build_plan(profile, devs, tables, out.cuts, info, tpus_needed_on_chip=out.tpus_needed_on_chip)


def solve_auto(
    profile: Profile,
    devices: DeviceSpec | Sequence[DeviceSpec] | None,
    max_tpus: int,
    *,
    allow_spill: bool = False,
    time_limit_s: float | None = None,
    workers: int = DEFAULT_WORKERS,
    seed: int = 0,
) -> Plan:
    """`--tpus auto`: the fewest TPUs that keep every parameter on chip, with the gain of each K.

    Every K from 1 to max_tpus is solved so the `auto` table shows where more TPUs stop paying. When no
    K up to max_tpus keeps everything on chip, the K with the lowest bottleneck is returned.
    """
    start = time.monotonic()
    n = len(profile.ops)
    if max_tpus < 1:
        raise TpuplanError(f"max_tpus must be at least 1 (got {max_tpus})")
    devs = [devices] if isinstance(devices, DeviceSpec) else list(devices or [profile.device])
    if len(devs) != 1 and len(devs) < max_tpus:
        raise TpuplanError(f"{len(devs)} devices given for up to {max_tpus} TPUs (give one, or one per TPU)")
    top = min(max_tpus, n)
    per_k = None if time_limit_s is None else time_limit_s / top
    plans: list[Plan] = []
    for k in range(1, top + 1):
        stage_devs = devs * k if len(devs) == 1 else devs[:k]
        plans.append(
            solve(profile, k, stage_devs, allow_spill=allow_spill, time_limit_s=per_k, workers=workers, seed=seed)
        )
    rows: list[AutoRow] = []
    for p in plans:
        prev = rows[-1].predicted_throughput_per_s if rows else None
        rows.append(
            AutoRow(
                tpus=p.tpus,
                predicted_bottleneck_us=p.predicted_bottleneck_us,
                predicted_throughput_per_s=p.predicted_throughput_per_s,
                gain_vs_previous=round(p.predicted_throughput_per_s / prev, 4) if prev else None,
                fits_on_chip=p.fits_on_chip,
                proven_optimal=p.solver.proven_optimal,
            )
        )
    fitting = [p for p in plans if p.fits_on_chip]
    chosen = fitting[0] if fitting else min(plans, key=lambda p: (p.predicted_bottleneck_us, p.tpus))
    needed = chosen.tpus_needed_on_chip
    note = f"auto: {chosen.tpus} TPU(s) of 1..{top}" + (
        "" if fitting else f"; nothing fits on chip up to {top} TPUs (needed: {needed or 'impossible'})"
    )
    params = chosen.solver.parameters.model_copy(update={"time_limit_s": time_limit_s})
    info = chosen.solver.model_copy(
        update={
            "wall_time_s": round(time.monotonic() - start, 4),
            "parameters": params,
            "note": "; ".join(x for x in (chosen.solver.note, note) if x),
        }
    )
    return chosen.model_copy(update={"auto": rows, "solver": info})


__all__ = ["Outcome", "solve", "solve_auto", "solve_tables"]
