"""Building Plan documents (planner.plandoc): one contiguous segment of ops per stage, every predicted number.

Everything here is priced by `StageCostTable.stage_parts` and `planner.costs.totals`, the single
definitions of a stage's and a pipeline's time, so a plan from the solver, from a baseline or from
`--cuts` is comparable number for number. A plan is checked against itself when it is read.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from pathlib import Path

from tpuplan.planner.costs import Goal, Totals, stage_tables, throughput_per_s, totals
from tpuplan.planner.plandoc import (
    PLAN_KIND,
    PLAN_VERSION,
    CurveRow,
    GoalInfo,
    Plan,
    SolverInfo,
    SolverParameters,
    StagePlan,
    Status,
)
from tpuplan.planner.reference import fewest_onchip_stages
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.device import DeviceSpec
from tpuplan.profiles.docio import dump_json, load_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.host import HostSpec, resolve_host
from tpuplan.profiles.model import Profile
from tpuplan.profiles.stagecost import StageCostTable
from tpuplan.profiles.tflite import LoadedModel, parse_model, sha256_of

__all__ = ["PLAN_KIND", "PLAN_VERSION", "CurveRow", "GoalInfo", "Plan", "SolverInfo", "SolverParameters", "StagePlan",
           "Status", "build_plan", "check_cuts", "check_k", "check_plan_matches", "check_profile_matches", "evaluate",
           "expand_devices", "load_plan", "plan_digest", "stable_json"]

UNCALIBRATED_WARNING = 0.5  # a bottleneck stage with more uncalibrated time than this gets a note


def load_plan(path: Path) -> Plan:
    return load_doc(Path(path), Plan, kind=PLAN_KIND, version=PLAN_VERSION)


def stable_json(plan: Plan) -> str:
    """The plan's JSON without what varies between runs of the same solve (wall time, worker count)."""
    params = plan.solver.parameters.model_copy(update={"workers": 1})
    solver = plan.solver.model_copy(update={"wall_time_s": None, "parameters": params})
    return dump_json(plan.model_copy(update={"solver": solver}))


def plan_digest(plan: Plan) -> str:
    """sha256 of the reproducible part of a plan: the same for the same inputs, whatever the run."""
    return hashlib.sha256(stable_json(plan).encode()).hexdigest()


def expand_devices(profile: Profile, devices: Sequence[DeviceSpec] | None, k: int) -> list[DeviceSpec]:
    """One device per stage: none = the profile's, one = the same for all, else exactly k."""
    if not devices:
        return [profile.device] * k
    if len(devices) == 1:
        return [devices[0]] * k
    if len(devices) != k:
        raise TpuplanError(f"{len(devices)} devices given for {k} TPUs (give one for all, or one per TPU)")
    return list(devices)


def check_k(profile: Profile, k: int) -> None:
    n = len(profile.ops)
    if k < 1:
        raise TpuplanError(f"the number of TPUs must be at least 1 (got {k})")
    if k > n:
        raise TpuplanError(f"{k} TPUs are more than the {n} ops of the model (each TPU needs an op)")


def check_cuts(cuts: Sequence[int], n: int, k: int) -> list[int]:
    """Validate a cut list: k-1 strictly increasing ops in 0..n-2."""
    cuts = [int(c) for c in cuts]
    if len(cuts) != k - 1:
        raise TpuplanError(f"{len(cuts)} cuts given for {k} TPUs (need {k - 1})")
    for c in cuts:
        if not 0 <= c <= n - 2:
            raise TpuplanError(f"cut {c} is out of range (cuts are ops 0..{n - 2} of {n})")
    if any(b <= a for a, b in itertools.pairwise(cuts)):
        raise TpuplanError(f"cuts must be strictly increasing (got {','.join(map(str, cuts))})")
    return cuts


FACTS = ("op_type", "op_class", "inputs", "outputs", "param_bytes", "param_shapes", "per_channel", "macs",
         "input_bytes", "output_bytes", "supported", "edgetpu")


def check_profile_matches(profile: Profile, model: bytes, where: str) -> None:
    """Refuse a profile made from another model than the one given (the model's bytes, from `where`), or
    one whose ops were edited since: the same sha256 is not enough, every op's facts must be the model's."""
    digest = sha256_of(model)
    if digest != profile.model.sha256:
        raise TpuplanError(
            f"{where}: the profile is for another model ({profile.model.path}, "
            f"sha256 {profile.model.sha256[:12]} != {digest[:12]})"
        )
    fresh = build_profile(parse_model(model, Path(where)), profile.device, resolve_host(None))
    if len(fresh.ops) != len(profile.ops):
        raise TpuplanError(f"{where}: the model has {len(fresh.ops)} ops, the profile {len(profile.ops)}")
    for op, want in zip(profile.ops, fresh.ops, strict=True):
        for key in FACTS:
            if getattr(op, key) != getattr(want, key):
                raise TpuplanError(f"{where}: the profile's op {op.index} ({op.op_type}) differs from the model's "
                                   f"({want.op_type}) in {key}; make the profile again from this model")
    for key in ("inputs", "outputs", "tensors", "cuts"):
        if getattr(profile, key) != getattr(fresh, key):
            raise TpuplanError(f"{where}: the profile's {key} differ from the model's; make it again from this model")


STAGE_FACTS = ("n_ops", "tpu_ops", "param_bytes", "bytes_in", "bytes_out", "predicted_onchip_bytes",
               "predicted_offchip_bytes", "fits_on_chip")


def check_plan_matches(plan: Plan, loaded: LoadedModel) -> None:
    """A plan used on its model must be what the cost model gives for its cuts on its devices and host.

    A plan checks its own sums when it is read; this catches what only the model can show: stages moved
    with their cuts but not their numbers, or a device spec edited after solving. A plan from a measured
    profile is compared on the facts that need no measurement (ops, bytes, on-chip memory).
    """
    if plan.model.sha256 != loaded.sha256:
        raise TpuplanError(f"{loaded.path}: the plan is for model sha256 {plan.model.sha256}, but this model has "
                           f"sha256 {loaded.sha256}")
    profile = build_profile(loaded, plan.devices[0], plan.host)
    if len(profile.ops) != plan.n_ops:
        raise TpuplanError(f"{loaded.path}: the plan has {plan.n_ops} ops, this model {len(profile.ops)}")
    again = evaluate(profile, plan.devices, plan.cuts, plan.host, Goal(plan.goal.objective, plan.goal.batch))
    keys = STAGE_FACTS if plan.profile_source == "measured" else tuple(StagePlan.model_fields)
    for mine, fresh in zip(plan.stages, again.stages, strict=True):
        for key in keys:
            if getattr(mine, key) != getattr(fresh, key):
                raise TpuplanError(
                    f"{loaded.path}: the plan's stage {mine.index} has {key} {getattr(mine, key)}, but this model on "
                    f"the plan's devices and host gives {getattr(fresh, key)} for cuts {plan.cuts}: the plan was "
                    "edited after it was made; solve again")


def stage_plans(tables: Sequence[StageCostTable], cuts: Sequence[int]) -> list[StagePlan]:
    stages = []
    bounds = zip([0, *(c + 1 for c in cuts)], [*cuts, tables[0].n - 1], strict=True)
    for i, (a, b) in enumerate(bounds):
        t = tables[i]
        p = t.stage_parts(a, b)
        stages.append(StagePlan(
            index=i, device=t.device_name, first_op=a, last_op=b, n_ops=b - a + 1, tpu_ops=p.tpu_ops,
            param_bytes=p.param_bytes, predicted_onchip_bytes=p.onchip_bytes, predicted_offchip_bytes=p.offchip_bytes,
            bytes_in=p.bytes_in, bytes_out=p.bytes_out, predicted_us=p.total_us, predicted_device_us=p.device_us,
            predicted_compute_us=p.compute_us, predicted_spill_us=p.spill_us, predicted_link_us=p.link_us,
            predicted_host_ops_us=p.host_ops_us, predicted_runner_us=p.runner_us, predicted_serial_us=p.serial_us,
            predicted_bus_us=p.bus_us, predicted_oneoff_us=p.oneoff_us,
            uncalibrated_share=round(p.uncalibrated_us / max(p.total_us, 1), 4), fits_on_chip=p.fits,
        ))
    return stages


def _notes(profile: Profile, devices: Sequence[DeviceSpec], stages: Sequence[StagePlan], tot: Totals) -> list[str]:
    notes = []
    slowest = max(stages, key=lambda s: s.predicted_us)
    if tot.bound == "stage" and slowest.uncalibrated_share > UNCALIBRATED_WARNING:
        notes.append(f"the bottleneck, stage {slowest.index}, is {slowest.uncalibrated_share:.0%} uncalibrated cost "
                     "(op classes with no real measurements here): treat its time as a rough guess")
    for s, dev in zip(stages, devices, strict=True):
        if s.tpu_ops == 0 and dev.backend == "edgetpu":
            notes.append(f"stage {s.index} runs only host ops on its TPU")
    tpu_devices = sorted({d.name for d in devices if d.backend == "edgetpu"})
    if profile.source == "measured" and tpu_devices:
        host_ops = sum(s.n_ops - s.tpu_ops for s in stages)
        tpu_ops = sum(s.tpu_ops for s in stages)
        models = ", ".join(tpu_devices)
        notes.append(f"measured profile on Edge TPUs: the {tpu_ops} Edge TPU op(s) are predicted by the {models} "
                     "cost model, not measured" + (f"; the {host_ops} host op(s) are priced by their times measured "
                                                   "on a CPU" if host_ops else "; no measured time is used"))
    return notes


def build_plan(profile: Profile, devices: Sequence[DeviceSpec], tables: Sequence[StageCostTable], cuts: Sequence[int],
               goal: Goal, solver: SolverInfo, *, tpus_requested: int, notes: Sequence[str] = ()) -> Plan:
    """Assemble the document from a cut list already checked against the tables."""
    stages = stage_plans(tables, cuts)
    tot = totals(tables, cuts, goal)
    pricer = tables[0].pricer
    if pricer is None:
        raise TpuplanError("internal error: a plan needs tables priced from a profile")
    return Plan(
        model=profile.model, profile_source=profile.source, n_ops=len(profile.ops),
        goal=GoalInfo(objective=goal.objective, batch=goal.batch), host=pricer.host,
        tpus=len(stages), tpus_requested=tpus_requested, devices=list(devices), cuts=list(cuts), stages=stages,
        predicted_period_us=tot.period_us, period_bound=tot.bound,
        predicted_throughput_per_s=throughput_per_s(tot.period_us), predicted_latency_us=tot.latency_us,
        predicted_oneoff_us=tot.oneoff_us,
        predicted_per_input_us=round(tot.per_input_us(goal.batch), 1) if goal.batch else None,
        fits_on_chip=all(s.fits_on_chip for s in stages), tpus_needed_on_chip=fewest_onchip_stages(tables),
        solver=solver, notes=[*notes, *_notes(profile, devices, stages, tot)],
    )


def evaluate(profile: Profile, devices: Sequence[DeviceSpec] | None, cuts: Sequence[int],
             host: HostSpec | None = None, goal: Goal | None = None) -> Plan:
    """Price a given segmentation (status EVALUATED): what `--cuts` and the baselines report."""
    goal = goal or Goal()
    host = host or resolve_host(profile.host)
    k = len(cuts) + 1
    check_k(profile, k)
    cuts = check_cuts(cuts, len(profile.ops), k)
    devs = expand_devices(profile, devices, k)
    tables = stage_tables(profile, devs, host)
    tot = totals(tables, cuts, goal)
    info = SolverInfo(status="EVALUATED", objective=tot.objective, best_bound=tot.objective,
                      parameters=SolverParameters(workers=1, allow_spill=True), proven_optimal=False,
                      note="cuts given, priced, not optimised")
    return build_plan(profile, devs, tables, cuts, goal, info, tpus_requested=k)
