"""Profile -> Plan: the optimal plan for at most K TPUs, plans with copies, and the --tpus auto curve.

Every solve is one search of `planner.search.engine` under one deadline that starts before any stage is
priced: "at most K TPUs" is one problem whose plans may stop after any stage (the tie-break prefers the
fewest), not K searches. The curve of --tpus auto has one such search per K, so a larger K is never
worse than a smaller one (its plans include the smaller one's), and a point the time limit cut short
says so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tpuplan.planner.costs import Goal, throughput_per_s, totals
from tpuplan.planner.plan import CurveRow, Plan, SolverInfo, SolverParameters
from tpuplan.planner.plan_build import build_plan, check_k, expand_devices
from tpuplan.planner.search.cpsat import DEFAULT_TIME_LIMIT_S, DEFAULT_WORKERS, check_solver_options
from tpuplan.planner.search.engine import Outcome, optimize, secondary_rank
from tpuplan.planner.search.problem import Option, Problem, table_loops
from tpuplan.planner.search.replicate import COPIES_RANK, copies_problem
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.tables import StageCostTable, stage_pairs, stage_table

DEFAULT_TOLERANCE = 0.05


@dataclass
class _Options:
    goal: Goal
    allow_spill: bool
    time_limit_s: float | None
    workers: int
    seed: int
    deadline: float

    @staticmethod
    def of(goal: Goal | None, allow_spill: bool, time_limit_s: float | None, workers: int, seed: int) -> _Options:
        limit = DEFAULT_TIME_LIMIT_S if time_limit_s is None else time_limit_s
        check_solver_options(limit, workers)
        return _Options(goal or Goal(), allow_spill, time_limit_s, workers, seed, time.monotonic() + limit)


class Tables:
    """One stage table per distinct device (built once, grown by every search that reads it)."""

    def __init__(self, profile: Profile, host: HostSpec) -> None:
        self.profile, self.host = profile, host
        self._cache: dict[str, StageCostTable] = {}

    def of(self, device: DeviceSpec) -> StageCostTable:
        key = device.model_dump_json()
        if key not in self._cache:
            self._cache[key] = stage_table(self.profile, device, self.host)
        return self._cache[key]


def in_order_problem(tables: Tables, devices: Sequence[DeviceSpec], k: int) -> Problem:
    """At most k stages, stage s on devices[s] (one device for all when one is given)."""
    devs = list(devices[:k]) if len(devices) > 1 else list(devices) * k
    options: list[Option] = []
    index: dict[int, int] = {}
    layers = []
    for dev in devs:
        t = tables.of(dev)
        if id(t) not in index:
            index[id(t)] = len(options)
            options.append(Option(t, 0))
        layers.append((index[id(t)],))
    return Problem(tuple(options), tuple(layers), open_end=True, loops=table_loops([o.table for o in options]))


def _search(problem: Problem, opts: _Options, rank: Sequence[str], prove: bool = True) -> Outcome:
    return optimize(
        problem,
        opts.goal,
        rank=rank,
        allow_spill=opts.allow_spill,
        workers=opts.workers,
        seed=opts.seed,
        prove=prove,
        deadline=opts.deadline,
    )


class NoPlanError(TpuplanError):
    """No plan exists for this model at all; `reason` says why without naming a file, so that the caller
    can name the file the user gave (a profile stores only the model's file name)."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"{model}: {reason}")
        self.reason = reason


def no_tpu_ops_message(profile: Profile) -> str:
    """Why no plan exists when the Edge TPU runs none of the ops: the first op's reason, and what to do
    when the reason is float tensors (the usual case: a model that was never quantised)."""
    first = profile.ops[0]
    floats = all("float" in op.edgetpu_reason for op in profile.ops if not op.supported)
    advice = "; quantise the model to int8 (full-integer post-training quantisation) first" if floats else ""
    return (
        f"no plan exists: the Edge TPU runs none of this model's {len(profile.ops)} ops "
        f"(op 0 {first.op_type}: {first.edgetpu_reason or 'not supported'}){advice}"
    )


def _checked_search(profile: Profile, problem: Problem, opts: _Options, rank: Sequence[str], prove: bool) -> Outcome:
    try:
        return _search(problem, opts, rank, prove)
    except TpuplanError as exc:
        if "no plan over" in str(exc) and not any(op.supported for op in profile.ops):
            raise NoPlanError(profile.model.path, no_tpu_ops_message(profile)) from None
        raise


def _info(got: Outcome, opts: _Options, start: float | None, note: str = "") -> SolverInfo:
    return SolverInfo(
        status=got.status,
        objective=got.objective,
        best_bound=got.best_bound,
        proven_optimal=got.proven,
        parameters=SolverParameters(
            workers=opts.workers if start is not None else None,
            time_limit_s=opts.time_limit_s,
            seed=opts.seed,
            allow_spill=opts.allow_spill,
        ),
        wall_time_s=None if start is None else round(time.monotonic() - start, 4),
        note="; ".join([*got.notes, *([note] if note else [])]),
    )


def _plan(
    profile: Profile,
    problem: Problem,
    got: Outcome,
    opts: _Options,
    requested: int,
    notes: list[str],
    start: float | None,
    note: str = "",
) -> Plan:
    tables = [problem.options[o].table for o in got.options]
    devices = [_device_of(problem, o) for o in got.options]
    return build_plan(
        profile,
        devices,
        tables,
        got.cuts,
        opts.goal,
        _info(got, opts, start, note),
        tpus_requested=requested,
        notes=notes,
        copies=got.copies if problem.copies else None,
    )


def _device_of(problem: Problem, o: int) -> DeviceSpec:
    pricer = problem.options[o].table.pricer
    if pricer is None:
        raise TpuplanError("internal error: a plan needs tables priced from a profile")
    return pricer.device


def solve(
    profile: Profile,
    k: int,
    devices: Sequence[DeviceSpec] | None = None,
    *,
    host: HostSpec | None = None,
    goal: Goal | None = None,
    allow_spill: bool = False,
    time_limit_s: float | None = None,
    workers: int = DEFAULT_WORKERS,
    seed: int = 0,
    timings: bool = False,
) -> Plan:
    """The best plan over at most k TPUs: the fewest TPUs that reach the least objective.

    More TPUs can cost more (host work that does not overlap grows with every stage) or add nothing
    (a lone host op is not a stage); the plan then uses fewer and its notes say why.
    """
    start = time.monotonic()
    check_k(profile, k)
    opts = _Options.of(goal, allow_spill, time_limit_s, workers, seed)
    devs = expand_devices(profile, devices, k)
    problem = in_order_problem(Tables(profile, host or resolve_host(profile.host)), devs, k)
    got = _checked_search(profile, problem, opts, ("stages", *secondary_rank(opts.goal)), True)
    notes = []
    used = len(got.options)
    if used < k:
        if got.proven:
            notes.append(f"K={k} gives no gain over K={used}: using {used}")
        else:
            notes.append(f"the best plan found uses {used} of the {k} TPUs (the search did not finish)")
    return _plan(profile, problem, got, opts, k, notes, start if timings else None)


def solve_with_copies(
    profile: Profile,
    tpus: int,
    device: DeviceSpec | None = None,
    *,
    host: HostSpec | None = None,
    allow_spill: bool = False,
    time_limit_s: float | None = None,
    workers: int = DEFAULT_WORKERS,
    seed: int = 0,
    timings: bool = False,
) -> Plan:
    """The least-period plan over at most `tpus` TPUs of one kind when a stage may run on several
    (`planner.search.replicate`: one stage on every TPU is data parallelism); its notes give the best
    plan without copies for comparison."""
    start = time.monotonic()
    dev = device or profile.device
    if dev.backend != "edgetpu":
        raise TpuplanError(f"copies are planned for Edge TPUs (device {dev.name!r} is {dev.backend})")
    opts = _Options.of(Goal(), allow_spill, time_limit_s, workers, seed)
    tables = Tables(profile, host or resolve_host(profile.host))
    table = tables.of(dev)
    got = _checked_search(profile, copies_problem(table, tpus), opts, COPIES_RANK, True)
    plain = _checked_search(
        profile, in_order_problem(tables, [dev], min(tpus, len(profile.ops))), opts, ("stages", "T"), False
    )
    gain = plain.objective / max(got.objective, 1)
    notes = [
        f"without copies the best plan over {tpus} TPU(s) has period {plain.objective} us "
        f"({len(plain.options)} TPU(s)): copies give x{gain:.2f}"
    ]
    used = sum(got.copies)
    if used < tpus:
        notes.append(f"{tpus - used} of the {tpus} TPUs would not shorten the period: using {used}")
    problem = copies_problem(table, tpus)
    note = "tie-break with copies: fewest TPUs, then fewest copies, then least latency"
    return _plan(profile, problem, got, opts, tpus, notes, start if timings else None, note)


def _curve_row(k: int, problem: Problem, got: Outcome, goal: Goal, prev: CurveRow | None) -> CurveRow:
    tables = [problem.options[o].table for o in got.options]
    tot = totals(tables, got.cuts, goal, got.copies if problem.copies else None)
    tp = throughput_per_s(tot.period_us)
    onchip = all(t.fits_on_chip(a, b) for t, (a, b) in zip(tables, stage_pairs(got.cuts, problem.n), strict=True))
    base = prev.predicted_throughput_per_s if prev else None
    return CurveRow(
        tpus=k,
        predicted_period_us=tot.period_us,
        predicted_latency_us=tot.latency_us,
        predicted_throughput_per_s=tp,
        objective=tot.objective,
        gain_vs_previous=round(tp / base, 4) if base else None,
        fits_on_chip=onchip,
        proven_optimal=got.proven,
        tpus_used=sum(got.copies) if problem.copies else len(got.options),
    )


def solve_auto(
    profile: Profile,
    devices: DeviceSpec | Sequence[DeviceSpec] | None,
    max_tpus: int,
    *,
    host: HostSpec | None = None,
    goal: Goal | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    allow_spill: bool = False,
    time_limit_s: float | None = None,
    workers: int = DEFAULT_WORKERS,
    seed: int = 0,
    timings: bool = False,
) -> Plan:
    """`--tpus auto`: the fewest TPUs whose objective is within `tolerance` of the best up to max_tpus,
    with the whole curve (K, period, latency, gain per added TPU; row K is the best plan over at most K
    TPUs, so it is never worse than row K-1)."""
    start = time.monotonic()
    if max_tpus < 1:
        raise TpuplanError(f"max_tpus must be at least 1 (got {max_tpus})")
    if not 0 <= tolerance <= 10:
        raise TpuplanError(f"the tolerance must be from 0 to 10 (got {tolerance:g})")
    devs = [devices] if isinstance(devices, DeviceSpec) else list(devices or [profile.device])
    if len(devs) != 1 and len(devs) < max_tpus:
        raise TpuplanError(f"{len(devs)} devices given for up to {max_tpus} TPUs (give one, or one per TPU)")
    top = min(max_tpus, len(profile.ops))
    opts = _Options.of(goal, allow_spill, time_limit_s, workers, seed)
    tables = Tables(profile, host or resolve_host(profile.host))
    rank = ("stages", *secondary_rank(opts.goal))
    found: list[tuple[Problem, Outcome]] = []
    for k in range(1, top + 1):
        problem = in_order_problem(tables, devs, k)
        got = _checked_search(profile, problem, opts, rank, False)
        if found and found[-1][1].objective <= got.objective:  # a cut-short search: carry K-1's plan over
            got = _carried(found[-1][1], got)
        found.append((problem, got))
    return _auto_plan(profile, found, opts, tolerance, top, rank, start if timings else None)


def _carried(prev: Outcome, got: Outcome) -> Outcome:
    """K-1's plan as K's, proven when K's search was (nothing with more TPUs is better)."""
    proven = got.proven and prev.proven
    return Outcome(
        prev.cuts,
        prev.status if proven else "FEASIBLE",
        prev.objective,
        prev.objective if proven else 0,
        proven,
        prev.onchip,
        [],
        prev.options,
        prev.copies,
    )


def _auto_plan(
    profile: Profile,
    found: list[tuple[Problem, Outcome]],
    opts: _Options,
    tolerance: float,
    top: int,
    rank: Sequence[str],
    start: float | None,
) -> Plan:
    best = min(got.objective for _, got in found)
    k_pick = next(k for k, (_, got) in enumerate(found, start=1) if got.objective <= best * (1 + tolerance))
    fastest = next(k for k, (_, got) in enumerate(found, start=1) if got.objective == best)
    problem, _ = found[k_pick - 1]
    chosen = _checked_search(profile, problem, opts, rank, True)
    found[k_pick - 1] = (problem, chosen)
    rows: list[CurveRow] = []
    for k, (prob, got) in enumerate(found, start=1):
        rows.append(_curve_row(k, prob, got, opts.goal, rows[-1] if rows else None))
    used = len(chosen.options)
    notes = [
        f"auto: {used} TPU(s), the fewest within {tolerance:.0%} of the best of 1..{top} "
        f"({fastest} TPU(s): {best} us objective); row K is the best plan over at most K TPUs"
    ]
    unproven = [r.tpus for r in rows if not r.proven_optimal]
    if unproven:
        notes.append(
            "not proven optimal (time limit): curve row(s) "
            + ",".join(map(str, unproven))
            + "; the choice is made among the plans found"
        )
    if fastest == 1:
        notes.append("this model is fastest on one TPU: splitting it only adds transfers and host work")
    plan = _plan(profile, problem, chosen, opts, top, notes, start)
    return plan.model_copy(update={"curve": rows})


__all__ = ["DEFAULT_TOLERANCE", "DEFAULT_WORKERS", "NoPlanError", "solve", "solve_auto", "solve_with_copies"]
