"""What people do without tpuplan, priced by the same cost tables, to show what the solver buys.

Our plan with copies (a stage on several TPUs) is shown beside our plain one when it can be made.
(a) the Edge TPU compiler's `--num_segments`: equal parameter bytes per segment (a segment ends just
    before the op that would take it past total/K), (b) equal numbers of ops, (c) one TPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from tpuplan.compat import zip_strict
from tpuplan.planner.comparison import Comparison, Entry
from tpuplan.planner.costs import Goal
from tpuplan.planner.defaults import DEFAULT_WORKERS
from tpuplan.planner.plan import Plan
from tpuplan.planner.plan_build import check_k, evaluate, expand_devices
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host

if TYPE_CHECKING:
    from tpuplan.planner.solve import DeviceSet
    from tpuplan.planner.solving import SearchSettings


def param_balanced_cuts(param_bytes: Sequence[int], k: int) -> list[int]:
    """The compiler's rule: close a segment before the op that would push it past total/k bytes.

    A segment is never empty, and a cut is forced when just enough ops remain for the segments left.
    """
    n = len(param_bytes)
    target = sum(param_bytes) / k
    cuts: list[int] = []
    acc = 0
    start = 0
    for i, p in enumerate(param_bytes):
        left = k - 1 - len(cuts)  # cuts still to place
        if left == 0:
            break
        # only an op that brings parameters can push a segment past the target
        if i > start and ((p > 0 and acc + p > target) or n - i == left):
            cuts.append(i - 1)
            start, acc = i, 0
        acc += p
    return cuts


def equal_ops_cuts(n: int, k: int) -> list[int]:
    """Segments of n/k ops (rounded down at each boundary)."""
    return [(j + 1) * n // k - 1 for j in range(k - 1)]


def _entry(name: str, plan: Plan, ours: int, ours_plan: Plan | None = None) -> Entry:
    mine, theirs = (ours_plan or plan).predicted_range, plan.predicted_range
    return Entry(
        period_range=theirs.period_us if theirs is not None else None,
        within_ours=bool(mine and theirs and ours_plan is not None and theirs.overlaps(mine)),
        name=name,
        tpus=plan.tpus,
        cuts=plan.cuts,
        copies=[s.copies for s in plan.stages],
        predicted_period_us=plan.predicted_period_us,
        predicted_throughput_per_s=plan.predicted_throughput_per_s,
        predicted_latency_us=plan.predicted_latency_us,
        objective=plan.solver.objective,
        predicted_offchip_bytes=sum(s.predicted_offchip_bytes for s in plan.stages),
        fits_on_chip=plan.fits_on_chip,
        host_only_stages=sum(1 for s in plan.stages if s.tpu_ops == 0),
        speedup_of_ours=round(plan.solver.objective / max(ours, 1), 4),
    )


def baseline_plans(
    profile: Profile, k: int, devices: Sequence[DeviceSpec] | None, host: HostSpec, goal: Goal
) -> dict[str, Plan]:
    check_k(profile, k)
    devs = expand_devices(profile, devices, k)
    n = len(profile.ops)
    params = [op.param_bytes for op in profile.ops]
    return {
        "compiler --num_segments (equal params)": evaluate(profile, devs, param_balanced_cuts(params, k), host, goal),
        "equal ops": evaluate(profile, devs, equal_ops_cuts(n, k), host, goal),
        "single TPU": evaluate(profile, devs[:1], [], host, goal),
    }


def data_parallel(profile: Profile, k: int, device: DeviceSpec, host: HostSpec, goal: Goal) -> Plan | str:
    """The whole model on each of k TPUs, taking inputs in turn (Coral's advice for a model that fits on
    one), priced; or why it is not shown."""
    whole = evaluate(profile, [device], [], host, goal)
    if not whole.fits_on_chip:
        return f"the whole model does not fit on one {device.name}: no data-parallel row"
    if whole.stages[0].in_state_loop:
        return "the model carries state through every stage: no data-parallel row (copies would each hold a state)"
    return evaluate(profile, [device], [], host, goal, [k])


def compare(
    profile: Profile,
    k: int,
    devices: Sequence[DeviceSpec] | DeviceSet | None = None,
    *,
    host: HostSpec | None = None,
    goal: Goal | None = None,
    allow_spill: bool = False,
    time_limit_s: float | None = None,
    workers: int | None = None,
) -> Comparison:
    """Our plan next to the baselines and the whole model on each of k TPUs, all priced by the same
    tables; ours with copies beside ours when copies can be made. The solver (OR-Tools) is imported here,
    not with the module: the Comparison document is read without it (`plan schema`, a device install)."""
    from tpuplan.planner.search.replicate import MAX_REPLICATED_TPUS
    from tpuplan.planner.solve import DeviceSet, solve_set

    workers = DEFAULT_WORKERS if workers is None else workers
    goal = goal or Goal()
    host = host or resolve_host(profile.host)
    dset = devices if isinstance(devices, DeviceSet) else DeviceSet(tuple(expand_devices(profile, devices, k)))
    if dset.total is not None:
        k = min(k, dset.total)
    settings: SearchSettings = {
        "host": host,
        "allow_spill": allow_spill,
        "time_limit_s": time_limit_s,
        "workers": workers,
    }
    ours = solve_set(profile, replace(dset, copies=False), k, goal=goal, **settings)
    best = ours.solver.objective
    entries = [_entry("tpuplan", ours, best)]
    notes = []
    kinds = [d for d in dset.kinds if d.backend == "edgetpu"]
    mixed_order = dset.counts is None and len({d.model_dump_json() for d in dset.kinds}) > 1
    if goal == Goal() and kinds and k <= MAX_REPLICATED_TPUS and not mixed_order:
        copied = solve_set(profile, replace(dset, copies=True), k, **settings)
        entries.append(_entry("tpuplan with copies", copied, best, ours))
        whole = data_parallel(profile, k, kinds[0], host, goal)
        if isinstance(whole, str):
            notes.append(whole)
        else:
            entries.append(_entry(f"whole model on each of {k} TPUs", whole, best, ours))
    else:
        notes.append("plans with copies are made for the least period on Edge TPUs of one kind or a pool: not shown")
    order = [d for d, n in zip_strict(dset.kinds, dset.counts) for _ in range(n)] if dset.counts else list(dset.kinds)
    order = order[:k] if len(order) > 1 else order
    entries += [_entry(name, plan, best, ours) for name, plan in baseline_plans(profile, k, order, host, goal).items()]
    close = [e.name for e in entries[1:] if e.within_ours]
    if close:
        notes.append(
            f"within the calibration's range of ours (periods over its scenarios overlap): {', '.join(close)}; "
            "which is faster cannot be told from the model alone"
        )
    return Comparison(
        model=profile.model,
        tpus=k,
        goal=ours.goal,
        host=host.name,
        ours_status=ours.solver.status,
        ours_proven_optimal=ours.solver.proven_optimal,
        entries=entries,
        notes=notes,
    )
