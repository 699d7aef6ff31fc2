"""Profile -> Plan: the optimal plan for K TPUs (or fewer, when more add nothing), and the --tpus auto curve."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tpuplan.compat import zip_strict
from tpuplan.planner.costs import Goal, stage_tables, throughput_per_s, totals
from tpuplan.planner.defaults import DEFAULT_TIME_LIMIT_S, DEFAULT_WORKERS
from tpuplan.planner.plan import CurveRow, Plan, SolverInfo, SolverParameters
from tpuplan.planner.plan_build import build_plan, check_k, expand_devices
from tpuplan.planner.search.cpsat import Outcome, solve_tables
from tpuplan.planner.search.replicate import solve_replicated
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.tables import StageCostTable

DEFAULT_TOLERANCE = 0.05


@dataclass
class _Options:
    goal: Goal
    allow_spill: bool
    time_limit_s: float | None
    workers: int
    seed: int


@dataclass
class _Solved:
    k: int
    outcome: Outcome
    tables: list[StageCostTable]
    devices: list[DeviceSpec]


def _solve_each(
    profile: Profile, devices: Sequence[DeviceSpec], host: HostSpec, top: int, opts: _Options
) -> list[_Solved]:
    """The optimum for every K = 1..top that has a plan (a K with fewer Edge TPU ops than stages has none)."""
    limit = DEFAULT_TIME_LIMIT_S if opts.time_limit_s is None else opts.time_limit_s
    cache: dict[str, StageCostTable] = {}
    out = []
    for k in range(1, top + 1):
        devs = list(devices[:k]) if len(devices) > 1 else list(devices) * k
        tables = []
        for dev in devs:
            key = dev.model_dump_json()
            if key not in cache:
                cache[key] = stage_tables(profile, [dev], host)[0]
            tables.append(cache[key])
        try:
            got = solve_tables(
                tables,
                opts.goal,
                allow_spill=opts.allow_spill,
                time_limit_s=limit / (top + 1),
                workers=opts.workers,
                seed=opts.seed,
                prove=False,
            )
        except TpuplanError as exc:
            if "no plan over" in str(exc):
                continue
            raise
        out.append(_Solved(k, got, tables, devs))
    if not out:
        raise NoPlanError(profile.model.path, no_tpu_ops_message(profile))
    return out


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


def _proven(solved: _Solved, opts: _Options) -> _Solved:
    """The chosen K again, proven by CP-SAT and pinned to one plan among the optimal ones."""
    limit = DEFAULT_TIME_LIMIT_S if opts.time_limit_s is None else opts.time_limit_s
    got = solve_tables(
        solved.tables, opts.goal, allow_spill=opts.allow_spill, time_limit_s=limit, workers=opts.workers, seed=opts.seed
    )
    return _Solved(solved.k, got, solved.tables, solved.devices)


def _info(got: Outcome, opts: _Options, start: float | None) -> SolverInfo:
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
        note="; ".join(got.notes),
    )


def _plan(
    profile: Profile, solved: _Solved, opts: _Options, requested: int, notes: list[str], start: float | None
) -> Plan:
    return build_plan(
        profile,
        solved.devices,
        solved.tables,
        solved.outcome.cuts,
        opts.goal,
        _info(solved.outcome, opts, start),
        tpus_requested=requested,
        notes=notes,
    )


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
    opts = _Options(goal or Goal(), allow_spill, time_limit_s, workers, seed)
    devs = expand_devices(profile, devices, k)
    solved = _solve_each(profile, devs, host or resolve_host(profile.host), k, opts)
    best = min(s.outcome.objective for s in solved)
    chosen = _proven(next(s for s in solved if s.outcome.objective == best), opts)
    notes = []
    if chosen.k < k:
        top = solved[-1]
        if top.k < k:
            notes.append(f"no plan over {k} TPUs: each stage needs an op the Edge TPU runs")
        else:
            notes.append(f"K={k} gives no gain over K={chosen.k}: using {chosen.k}")
    return _plan(profile, chosen, opts, k, notes, start if timings else None)


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
    (`planner.search.replicate`); its notes give the best plan without copies for comparison."""
    start = time.monotonic()
    dev = device or profile.device
    hosts = host or resolve_host(profile.host)
    limit = DEFAULT_TIME_LIMIT_S if time_limit_s is None else time_limit_s
    if dev.backend != "edgetpu":
        raise TpuplanError(f"copies are planned for Edge TPUs (device {dev.name!r} is {dev.backend})")
    table = stage_tables(profile, [dev], hosts)[0]
    got = solve_replicated(table, tpus, allow_spill=allow_spill, time_limit_s=limit / 2)
    plain = solve(
        profile,
        min(tpus, len(profile.ops)),
        [dev],
        host=hosts,
        allow_spill=allow_spill,
        time_limit_s=limit / 2,
        workers=workers,
        seed=seed,
    )
    gain = plain.predicted_period_us / max(got.period_us, 1)
    notes = [
        f"without copies the best plan over {tpus} TPU(s) has period {plain.predicted_period_us} us "
        f"({plain.tpus} TPU(s)): copies give x{gain:.2f}",
        *got.notes,
    ]
    if got.tpus < tpus:
        notes.append(f"{tpus - got.tpus} of the {tpus} TPUs would not shorten the period: using {got.tpus}")
    opts = _Options(Goal(), allow_spill, time_limit_s, workers, seed)
    k = len(got.copies)
    info = SolverInfo(
        status=got.status,
        objective=got.period_us,
        best_bound=got.period_us if got.proven else 0,
        proven_optimal=got.proven,
        parameters=SolverParameters(
            workers=workers if timings else None, time_limit_s=time_limit_s, seed=seed, allow_spill=allow_spill
        ),
        wall_time_s=round(time.monotonic() - start, 4) if timings else None,
        note="tie-break with copies: fewest TPUs, then fewest copies, then least latency",
    )
    return build_plan(
        profile, [dev] * k, [table] * k, got.cuts, opts.goal, info, tpus_requested=tpus, notes=notes, copies=got.copies
    )


def _curve(solved: Sequence[_Solved], goal: Goal) -> list[CurveRow]:
    rows: list[CurveRow] = []
    for s in solved:
        tot = totals(s.tables, s.outcome.cuts, goal)
        tp = throughput_per_s(tot.period_us)
        prev = rows[-1].predicted_throughput_per_s if rows else None
        onchip = all(t.onchip[a, b] for t, (a, b) in zip_strict(s.tables, _pairs(s)))
        rows.append(
            CurveRow(
                tpus=s.k,
                predicted_period_us=tot.period_us,
                predicted_latency_us=tot.latency_us,
                predicted_throughput_per_s=tp,
                objective=tot.objective,
                gain_vs_previous=round(tp / prev, 4) if prev else None,
                fits_on_chip=onchip,
                proven_optimal=s.outcome.proven,
            )
        )
    return rows


def _pairs(s: _Solved) -> list[tuple[int, int]]:
    cuts = s.outcome.cuts
    return list(zip_strict([0, *(c + 1 for c in cuts)], [*cuts, s.tables[0].n - 1]))


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
    with the whole curve (K, period, latency, gain per added TPU)."""
    start = time.monotonic()
    if max_tpus < 1:
        raise TpuplanError(f"max_tpus must be at least 1 (got {max_tpus})")
    if not 0 <= tolerance <= 10:
        raise TpuplanError(f"the tolerance must be from 0 to 10 (got {tolerance:g})")
    devs = [devices] if isinstance(devices, DeviceSpec) else list(devices or [profile.device])
    if len(devs) != 1 and len(devs) < max_tpus:
        raise TpuplanError(f"{len(devs)} devices given for up to {max_tpus} TPUs (give one, or one per TPU)")
    top = min(max_tpus, len(profile.ops))
    opts = _Options(goal or Goal(), allow_spill, time_limit_s, workers, seed)
    solved = _solve_each(profile, devs, host or resolve_host(profile.host), top, opts)
    best = min(s.outcome.objective for s in solved)
    chosen = _proven(next(s for s in solved if s.outcome.objective <= best * (1 + tolerance)), opts)
    fastest = next(s for s in solved if s.outcome.objective == best)
    notes = [f"auto: {chosen.k} TPU(s), the fewest within {tolerance:.0%} of the best of 1..{top} ({fastest.k} TPU(s))"]
    if fastest.k == 1:
        notes.append("this model is fastest on one TPU: splitting it only adds transfers and host work")
    plan = _plan(profile, chosen, opts, top, notes, start if timings else None)
    return plan.model_copy(update={"curve": _curve(solved, opts.goal)})


__all__ = ["DEFAULT_TOLERANCE", "DEFAULT_WORKERS", "solve", "solve_auto", "solve_with_copies"]
