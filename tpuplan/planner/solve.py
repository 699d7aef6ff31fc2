"""Profile -> Plan: the optimal plan for at most K TPUs (devices in order, or a pool the planner assigns,
with or without copies), and the --tpus auto curve.

Every solve is one search of `planner.search.engine` under one deadline that starts before any stage is
priced: "at most K TPUs" is one problem whose plans may stop after any stage (the tie-break prefers the
fewest TPUs), not K searches. The curve of --tpus auto has one such search per K, so a larger K is never
worse than a smaller one (its plans include the smaller one's); a point the time limit cut short says so,
and the choice says which points it was made from.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tpuplan.compat import zip_strict
from tpuplan.planner.costs import Goal, throughput_per_s, totals
from tpuplan.planner.defaults import DEFAULT_WORKERS
from tpuplan.planner.devices import POOL_RANK, DeviceSet, Tables
from tpuplan.planner.plan import CurveRow, Plan
from tpuplan.planner.plan_build import check_k, expand_devices
from tpuplan.planner.search.engine import Outcome, secondary_rank
from tpuplan.planner.search.problem import Problem
from tpuplan.planner.search.replicate import COPIES_RANK, MAX_REPLICATED_TPUS
from tpuplan.planner.solving import (
    GoalSettings,
    NoPlanError,
    Options,
    SearchSettings,
    checked_search,
    no_tpu_ops_message,
    plan_of,
)
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import resolve_host
from tpuplan.profiles.pricing.plancost import stage_pairs

if TYPE_CHECKING:
    from typing_extensions import Unpack

DEFAULT_TOLERANCE = 0.05


def rank_of(dset: DeviceSet, goal: Goal) -> tuple[str, ...]:
    """The tie-break among plans of equal objective: fewest TPUs (with copies: then the most stages),
    then the secondary number (then the smallest ends, device kinds, copies stage by stage)."""
    return COPIES_RANK if dset.copies else (*POOL_RANK, *secondary_rank(goal))


def shape(problem: Problem, got: Outcome) -> str:
    """A plan's shape for people: stages, copies, data parallelism."""
    copies = got.copies if problem.copies else [1] * len(got.options)
    if len(copies) == 1 and copies[0] > 1:
        return f"whole model on each of {copies[0]} TPUs (data parallel)"
    if any(r > 1 for r in copies):
        return f"{len(copies)} stages, copies {','.join(map(str, copies))}"
    return f"{len(copies)} stage{'s' if len(copies) != 1 else ''}"


def solve_set(
    profile: Profile,
    dset: DeviceSet,
    k: int,
    **settings: Unpack[GoalSettings],
) -> Plan:
    """The best plan over at most k TPUs of the device set (fewest TPUs among the best), proven."""
    start = time.monotonic()
    goal = settings.get("goal")
    if dset.copies:  # copies: more TPUs than ops is fine (data parallelism)
        if not 1 <= k <= MAX_REPLICATED_TPUS:
            raise TpuplanError(f"copies are planned for 1 to {MAX_REPLICATED_TPUS} TPUs (got {k})")
    else:
        check_k(profile, k)
    if dset.total is not None and k > dset.total:
        raise TpuplanError(f"{k} TPUs asked, but the pool has {dset.total} ({dset.describe()})")
    if dset.copies and (goal or Goal()) != Goal():
        raise TpuplanError("copies are planned for the least period: drop --objective latency and --batch")
    opts = Options.of(goal, settings)
    tables = Tables(profile, opts.host or resolve_host(profile.host))
    problem = dset.problem(tables, k)
    got = checked_search(profile, problem, opts, rank_of(dset, opts.goal), True)
    notes = _notes(profile, dset, problem, got, k, tables, opts)
    note = "tie-break with copies: fewest TPUs, then fewest copies, then least latency" if dset.copies else ""
    return plan_of(profile, problem, got, opts, k, notes, start if opts.timings else None, note)


def _notes(
    profile: Profile, dset: DeviceSet, problem: Problem, got: Outcome, k: int, tables: Tables, opts: Options
) -> list[str]:
    used = sum(got.copies) if dset.copies else len(got.options)
    notes = []
    if dset.is_pool:
        notes.append(f"pool {dset.describe()}: the planner chose which device runs which stage")
    if dset.copies:
        plain = checked_search(
            profile, DeviceSet(dset.kinds, dset.counts).problem(tables, k), opts, ("stages", "T"), False
        )
        gain = plain.objective / max(got.objective, 1)
        notes.append(
            f"without copies the best plan over {k} TPU(s) has period {plain.objective} us "
            f"({len(plain.options)} TPU(s)): copies give x{gain:.2f}"
        )
        if gain < 1.01 and sum(got.copies) > len(plain.options):
            notes.append(
                f"the least period takes {sum(got.copies)} TPUs for under 1% over {len(plain.options)}: "
                "--tpus auto --replicate takes the fewest TPUs within --tolerance of the best"
            )
    if used < k:
        if not got.proven:
            notes.append(f"the best plan found uses {used} of the {k} TPUs (the search did not finish)")
        elif dset.copies:
            notes.append(f"{k - used} of the {k} TPUs would not shorten the period: using {used}")
        else:
            notes.append(f"K={k} gives no gain over K={used}: using {used}")
    return notes


def solve(
    profile: Profile,
    k: int,
    devices: Sequence[DeviceSpec] | None = None,
    **settings: Unpack[GoalSettings],
) -> Plan:
    """The best plan over at most k TPUs, devices in stage order (one for all, or one per TPU): the
    fewest TPUs that reach the least objective. More TPUs can cost more (host work that does not overlap
    grows with every stage) or add nothing; the plan then uses fewer and its notes say why."""
    check_k(profile, k)
    dset = DeviceSet(tuple(expand_devices(profile, devices, k)))
    return solve_set(profile, dset, k, **settings)


def solve_with_copies(
    profile: Profile,
    tpus: int,
    device: DeviceSpec | None = None,
    **settings: Unpack[SearchSettings],
) -> Plan:
    """The least-period plan over at most `tpus` TPUs of one kind when a stage may run on several
    (`planner.search.replicate`: one stage on every TPU is data parallelism); its notes give the best
    plan without copies for comparison."""
    dev = device or profile.device
    if dev.backend != "edgetpu":
        raise TpuplanError(f"copies are planned for Edge TPUs (device {dev.name!r} is {dev.backend})")
    return solve_set(profile, DeviceSet((dev,), copies=True), tpus, **settings)


def _curve_row(k: int, problem: Problem, got: Outcome, goal: Goal, prev: CurveRow | None) -> CurveRow:
    tables = [problem.options[o].table for o in got.options]
    tot = totals(tables, got.cuts, goal, got.copies if problem.copies else None)
    tp = throughput_per_s(tot.period_us)
    onchip = all(t.fits_on_chip(a, b) for t, (a, b) in zip_strict(tables, stage_pairs(got.cuts, problem.n)))
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
        shape=shape(problem, got),
    )


def solve_auto(
    profile: Profile,
    devices: DeviceSpec | Sequence[DeviceSpec] | DeviceSet | None,
    max_tpus: int,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    **settings: Unpack[GoalSettings],
) -> Plan:
    """`--tpus auto`: the fewest TPUs whose objective is within `tolerance` of the best up to max_tpus,
    with the whole curve (row K is the best plan over at most K TPUs: pipelines, and with a device set
    of copies also copies and data parallelism, weighed by the one objective)."""
    start = time.monotonic()
    if max_tpus < 1:
        raise TpuplanError(f"max_tpus must be at least 1 (got {max_tpus})")
    if not 0 <= tolerance <= 10:
        raise TpuplanError(f"the tolerance must be from 0 to 10 (got {tolerance:g})")
    dset = _auto_set(profile, devices, max_tpus)
    top = min(max_tpus, len(profile.ops) if not dset.copies else max_tpus, dset.total or max_tpus)
    opts = Options.of(settings.get("goal"), settings)
    tables = Tables(profile, opts.host or resolve_host(profile.host))
    rank = rank_of(dset, opts.goal)
    found: list[tuple[Problem, Outcome]] = []
    for k in range(1, top + 1):
        problem = dset.problem(tables, k)
        got = checked_search(profile, problem, opts, rank, False)
        if found and found[-1][1].objective <= got.objective:  # a cut-short search: carry K-1's plan over
            got = _carried(found[-1][1], got)
        found.append((problem, got))
    return _auto_plan(profile, found, opts, tolerance, top, rank, start if opts.timings else None)


def _auto_set(profile: Profile, devices: DeviceSpec | Sequence[DeviceSpec] | DeviceSet | None, top: int) -> DeviceSet:
    if isinstance(devices, DeviceSet):
        return devices
    devs = [devices] if isinstance(devices, DeviceSpec) else list(devices or [profile.device])
    if len(devs) != 1 and len(devs) < top:
        raise TpuplanError(f"{len(devs)} devices given for up to {top} TPUs (give one, or one per TPU)")
    return DeviceSet(tuple(devs))


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
    opts: Options,
    tolerance: float,
    top: int,
    rank: Sequence[str],
    start: float | None,
) -> Plan:
    best = min(got.objective for _, got in found)
    k_pick = next(k for k, (_, got) in enumerate(found, start=1) if got.objective <= best * (1 + tolerance))
    fastest = next(k for k, (_, got) in enumerate(found, start=1) if got.objective == best)
    problem, _ = found[k_pick - 1]
    chosen = checked_search(profile, problem, opts, rank, True)
    found[k_pick - 1] = (problem, chosen)
    rows: list[CurveRow] = []
    for k, (prob, got) in enumerate(found, start=1):
        rows.append(_curve_row(k, prob, got, opts.goal, rows[-1] if rows else None))
    pick, top_row = rows[k_pick - 1], rows[fastest - 1]
    notes = [
        f"auto: {pick.tpus_used} TPU(s), {pick.shape}: period {pick.predicted_period_us} us, latency "
        f"{pick.predicted_latency_us} us, the fewest TPUs within {tolerance:.0%} of the best of 1..{top} "
        f"({top_row.tpus_used} TPU(s), {top_row.shape}: period {top_row.predicted_period_us} us, latency "
        f"{top_row.predicted_latency_us} us); row K is the best plan over at most K TPUs"
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
    plan = plan_of(profile, problem, chosen, opts, top, notes, start)
    return plan.model_copy(update={"curve": rows})


__all__ = [
    "DEFAULT_TOLERANCE",
    "DEFAULT_WORKERS",
    "DeviceSet",
    "NoPlanError",
    "no_tpu_ops_message",
    "solve",
    "solve_auto",
    "solve_set",
    "solve_with_copies",
]
