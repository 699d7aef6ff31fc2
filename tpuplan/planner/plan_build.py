"""Assembling plans: a cut list (and copies) priced by the stage tables becomes a Plan document; the
checks of what a caller asks for (K, cuts, copies, a profile against its model)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tpuplan.compat import pairwise, zip_strict
from tpuplan.planner.costs import Goal, Totals, stage_tables, throughput_per_s, totals
from tpuplan.planner.plan import GoalInfo, Plan, SolverInfo, SolverParameters, StagePlan
from tpuplan.planner.search.reference import fewest_onchip_stages
from tpuplan.planner.uncertainty import prediction_range
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.plancost import stage_pairs
from tpuplan.profiles.pricing.tables import StageCostTable, TooManyStages
from tpuplan.profiles.state import copied_state, loops_of
from tpuplan.profiles.tflite.reader import parse_model, sha256_of

MAX_COPIES = 64  # TPUs one plan may use in all
UNCALIBRATED_WARNING = 0.5  # a bottleneck stage with more uncalibrated time than this gets a note


def expand_devices(
    profile: Profile, devices: Sequence[DeviceSpec] | None, k: int, what: str = "TPUs"
) -> list[DeviceSpec]:
    """One device per stage: none = the profile's, one = the same for all, else exactly k (`what` they
    are counted as: TPUs, or stages when a stage's copies share its device)."""
    if not devices:
        return [profile.device] * k
    if len(devices) == 1:
        return [devices[0]] * k
    if len(devices) != k:
        one = what.rstrip("s")
        shared = "; a stage's copies share its device" if what == "stages" else ""
        raise TpuplanError(f"{len(devices)} devices given for {k} {what} (give one for all, or one per {one}{shared})")
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
    if any(b <= a for a, b in pairwise(cuts)):
        raise TpuplanError(f"cuts must be strictly increasing (got {','.join(map(str, cuts))})")
    return cuts


FACTS = (
    "op_type",
    "op_class",
    "inputs",
    "outputs",
    "param_bytes",
    "param_shapes",
    "per_channel",
    "macs",
    "input_bytes",
    "output_bytes",
    "supported",
    "edgetpu",
)


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
    for op, want in zip_strict(profile.ops, fresh.ops):
        for key in FACTS:
            if getattr(op, key) != getattr(want, key):
                raise TpuplanError(
                    f"{where}: the profile's op {op.index} ({op.op_type}) differs from the model's "
                    f"({want.op_type}) in {key}; make the profile again from this model"
                )
    for key in ("inputs", "outputs", "tensors", "cuts"):
        if getattr(profile, key) != getattr(fresh, key):
            raise TpuplanError(f"{where}: the profile's {key} differ from the model's; make it again from this model")


def stage_plans(
    tables: Sequence[StageCostTable], cuts: Sequence[int], copies: Sequence[int] | None = None
) -> list[StagePlan]:
    stages = []
    reps = list(copies) if copies is not None else [1] * (len(cuts) + 1)
    for i, ((a, b), r) in enumerate(zip_strict(stage_pairs(cuts, tables[0].n), reps)):
        t = tables[i]
        p = t.stage_parts(a, b)
        stages.append(
            StagePlan(
                index=i,
                device=t.device_name,
                first_op=a,
                last_op=b,
                n_ops=b - a + 1,
                copies=r,
                tpu_ops=p.tpu_ops,
                param_bytes=p.param_bytes,
                predicted_onchip_bytes=p.onchip_bytes,
                predicted_offchip_bytes=p.offchip_bytes,
                bytes_in=p.bytes_in,
                bytes_out=p.bytes_out,
                predicted_us=p.total_us,
                predicted_interval_us=t.copied_time_us(a, b, r),
                predicted_terms=p.terms,
                predicted_values=p.values,
                uncalibrated_share=round(p.uncalibrated_us / max(p.total_us, 1), 4),
                fits_on_chip=p.fits,
                measured_invoke_us=p.measured_us,
                in_state_loop=p.in_loop,
            )
        )
    return stages


def _notes(profile: Profile, devices: Sequence[DeviceSpec], stages: Sequence[StagePlan], tot: Totals) -> list[str]:
    notes = []
    slowest = max(stages, key=lambda s: s.predicted_us)
    if tot.bound == "stage" and slowest.uncalibrated_share > UNCALIBRATED_WARNING:
        notes.append(
            f"the bottleneck, stage {slowest.index}, is {slowest.uncalibrated_share:.0%} uncalibrated cost "
            "(op classes with no real measurements here): treat its time as a rough guess"
        )
    for s, dev in zip_strict(stages, devices):
        if s.tpu_ops == 0 and dev.backend == "edgetpu":
            notes.append(f"stage {s.index} runs only host ops on its TPU")
    if any(s.copies > 1 for s in stages):
        notes.append(
            "copies: "
            + ", ".join(f"stage {s.index} on {s.copies} TPUs" for s in stages if s.copies > 1)
            + " (inputs dealt to them in turn; each holds the whole stage)"
        )
    measured = [s.index for s in stages if s.measured_invoke_us is not None]
    if measured:
        notes.append(
            f"stage(s) {', '.join(map(str, measured))}: invoke MEASURED by plan verify (measured_invoke_us), "
            "the rest of every number predicted"
        )
    tpu_devices = sorted({d.name for d in devices if d.backend == "edgetpu"})
    if profile.source == "measured" and tpu_devices:
        host_ops = sum(s.n_ops - s.tpu_ops for s in stages)
        tpu_ops = sum(s.tpu_ops for s in stages)
        models = ", ".join(tpu_devices)
        notes.append(
            f"measured profile on Edge TPUs: the {tpu_ops} Edge TPU op(s) are predicted by the {models} "
            "cost model, not measured"
            + (
                f"; the {host_ops} host op(s) are priced by their times measured on a CPU"
                if host_ops
                else "; no measured time is used"
            )
        )
    return notes


def build_plan(
    profile: Profile,
    devices: Sequence[DeviceSpec],
    tables: Sequence[StageCostTable],
    cuts: Sequence[int],
    goal: Goal,
    solver: SolverInfo,
    *,
    tpus_requested: int,
    notes: Sequence[str] = (),
    copies: Sequence[int] | None = None,
) -> Plan:
    """Assemble the document from a cut list (and copies per stage) already checked against the tables."""
    stages = stage_plans(tables, cuts, copies)
    tot = totals(tables, cuts, goal, copies)
    pricer = tables[0].pricer
    if pricer is None:
        raise TpuplanError("internal error: a plan needs tables priced from a profile")
    return Plan(
        model=profile.model,
        profile_source=profile.source,
        n_ops=len(profile.ops),
        goal=GoalInfo(objective=goal.objective, batch=goal.batch),
        host=pricer.host,
        tpus=sum(s.copies for s in stages),
        tpus_requested=tpus_requested,
        devices=list(devices),
        cuts=list(cuts),
        stages=stages,
        predicted_period_us=tot.period_us,
        period_bound=tot.bound,
        predicted_throughput_per_s=throughput_per_s(tot.period_us),
        predicted_latency_us=tot.latency_us,
        predicted_oneoff_us=tot.oneoff_us,
        predicted_bounds=tot.bounds,
        predicted_per_input_us=round(tot.per_input_us(goal.batch), 1) if goal.batch else None,
        fits_on_chip=all(s.fits_on_chip for s in stages),
        tpus_needed_on_chip=_needed_on_chip(tables),
        predicted_range=prediction_range(profile, devices, pricer.host, cuts, [s.copies for s in stages]),
        solver=solver,
        state=loops_of(profile),
        notes=[*notes, *_notes(profile, devices, stages, tot)],
    )


def _needed_on_chip(tables: Sequence[StageCostTable]) -> int | None:
    """Fewest stages keeping every parameter on chip; None when none does, or when too many stages may fit
    on chip to count them (a model that fits on a few chips: the plan then fits too)."""
    try:
        return fewest_onchip_stages(tables)
    except TooManyStages:
        return None


def check_copies(copies: Sequence[int] | None, k: int) -> list[int] | None:
    """Validate copies per stage: k counts, each at least 1, at most MAX_COPIES TPUs in all."""
    if copies is None:
        return None
    out = [int(r) for r in copies]
    if len(out) != k:
        raise TpuplanError(f"{len(out)} copy counts given for {k} stages (give one per stage)")
    if min(out) < 1 or sum(out) > MAX_COPIES:
        raise TpuplanError(f"copies must be at least 1 per stage and at most {MAX_COPIES} TPUs in all (got {out})")
    return out


def evaluate(
    profile: Profile,
    devices: Sequence[DeviceSpec] | None,
    cuts: Sequence[int],
    host: HostSpec | None = None,
    goal: Goal | None = None,
    copies: Sequence[int] | None = None,
) -> Plan:
    """Price a given segmentation, with copies per stage if given (status EVALUATED): what `--cuts`
    and the baselines report."""
    goal = goal or Goal()
    host = host or resolve_host(profile.host)
    k = len(cuts) + 1
    check_k(profile, k)
    cuts = check_cuts(cuts, len(profile.ops), k)
    reps = check_copies(copies, k)
    devs = expand_devices(profile, devices, k, "TPUs" if reps is None else "stages")
    tables = stage_tables(profile, devs, host)
    if reps is not None:
        why = copied_state(loops_of(profile), stage_pairs(cuts, len(profile.ops)), reps)
        if why:
            raise TpuplanError(why)
    tot = totals(tables, cuts, goal, reps)
    info = SolverInfo(
        status="EVALUATED",
        objective=tot.objective,
        best_bound=tot.objective,
        parameters=SolverParameters(allow_spill=True),
        proven_optimal=False,
        note="cuts given, priced, not optimised",
    )
    return build_plan(profile, devs, tables, cuts, goal, info, tpus_requested=sum(reps or [1] * k), copies=reps)
