"""The Plan document: one contiguous segment of ops per stage, with every predicted number.

Everything here is priced by `StageCostTable.stage_parts` and `planner.costs.totals`, the single
definitions of a stage's and a pipeline's time, so a plan from the solver, from a baseline or from
`--cuts` is comparable number for number. A plan is checked against itself when it is read: a plan whose
cuts, stages, devices, counts or predictions were edited apart from each other is refused by name
(planner.matching checks a plan against its model, where one is at hand).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

from pydantic import Field, model_validator

from tpuplan.planner.costs import Goal, Objective, Totals, stage_tables, throughput_per_s, totals
from tpuplan.planner.plan_v1 import migrate_v1
from tpuplan.planner.search.reference import fewest_onchip_stages
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import StrictModel, dump_json, load_json, parse_doc, read_bytes, validate_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_OBJECTIVE
from tpuplan.profiles.model import BIG, ModelRef, Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.stagecost import PipelineCost, StageCostTable
from tpuplan.profiles.tflite.reader import parse_model, sha256_of

PLAN_KIND: Final = "tpuplan.plan"
PLAN_VERSION: Final = 2
MAX_COPIES = 64  # TPUs one plan may use in all
UNCALIBRATED_WARNING = 0.5  # a bottleneck stage with more uncalibrated time than this gets a note

Status = Literal["OPTIMAL", "FEASIBLE", "EVALUATED", "REFERENCE"]
Bound = Literal["stage", "serialized", "bus"]


class StagePlan(StrictModel):
    """One pipeline stage: ops first_op..last_op on one device. Every `predicted_*` is predicted."""

    index: int = Field(ge=0, le=1 << 20)
    device: str = Field(max_length=200)
    first_op: int = Field(ge=0, le=1 << 31)
    last_op: int = Field(ge=0, le=1 << 31)
    n_ops: int = Field(ge=1, le=1 << 31)
    copies: int = Field(1, ge=1, le=1 << 10, description="devices running this stage, inputs dealt in turn")
    tpu_ops: int = Field(ge=0, le=1 << 31, description="ops the Edge TPU runs (the rest run on the host)")
    param_bytes: int = Field(ge=0, le=BIG, description="parameter bytes as stored in the model")
    predicted_onchip_bytes: int = Field(ge=0, le=BIG, description="cached-layout bytes the compiler keeps on chip")
    predicted_offchip_bytes: int = Field(ge=0, le=BIG, description="cached-layout bytes streamed every inference")
    bytes_in: int = Field(ge=0, le=BIG, description="activation bytes entering the stage")
    bytes_out: int = Field(ge=0, le=BIG, description="activation bytes leaving the stage")
    predicted_us: int = Field(ge=0, le=BIG, description="one input through this stage (T)")
    predicted_interval_us: int = Field(
        ge=0,
        le=BIG,
        description="time between its results: predicted_us, "
        "less with copies (their device and host-op work divides, the runner's not)",
    )
    predicted_device_us: int = Field(ge=0, le=BIG)
    predicted_compute_us: int = Field(ge=0, le=BIG)
    predicted_spill_us: int = Field(ge=0, le=BIG)
    predicted_link_us: int = Field(ge=0, le=BIG)
    predicted_host_ops_us: int = Field(ge=0, le=BIG)
    predicted_runner_us: int = Field(ge=0, le=BIG)
    predicted_serial_us: int = Field(ge=0, le=BIG)
    predicted_bus_us: int = Field(ge=0, le=BIG)
    predicted_oneoff_us: int = Field(ge=0, le=BIG)
    uncalibrated_share: float = Field(0.0, ge=0, le=1, description="share of its time from uncalibrated costs")
    fits_on_chip: bool


class SolverParameters(StrictModel):
    workers: int | None = Field(None, ge=1, le=64, description="CP-SAT workers; recorded only with --timings")
    time_limit_s: float | None = Field(None, gt=0, le=86_400)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    allow_spill: bool = False


class SolverInfo(StrictModel):
    """How the plan was found and what is proven about it (objective J in us, see planner.costs)."""

    status: Status
    objective: int = Field(ge=0, le=MAX_OBJECTIVE)
    best_bound: int = Field(ge=0, le=MAX_OBJECTIVE)
    parameters: SolverParameters
    proven_optimal: bool
    wall_time_s: float | None = Field(None, ge=0, le=1e7, description="left out unless asked (--timings)")
    note: str = Field("", max_length=10_000)


class GoalInfo(StrictModel):
    objective: Objective = "throughput"
    batch: int | None = Field(None, ge=1, le=1_000_000)


class CurveRow(StrictModel):
    """What K TPUs would give (the --tpus auto curve)."""

    tpus: int = Field(ge=1, le=1 << 10)
    predicted_period_us: int = Field(ge=0, le=BIG)
    predicted_latency_us: int = Field(ge=0, le=BIG)
    predicted_throughput_per_s: float = Field(ge=0, le=1e9)
    objective: int = Field(ge=0, le=MAX_OBJECTIVE)
    gain_vs_previous: float | None = Field(None, ge=0, le=1e9, description="throughput ratio vs K-1 TPUs")
    fits_on_chip: bool
    proven_optimal: bool


class Plan(StrictModel):
    kind: Literal["tpuplan.plan"] = PLAN_KIND
    schema_version: Literal[2] = PLAN_VERSION
    model: ModelRef
    profile_source: Literal["static", "measured"]
    n_ops: int = Field(ge=1, le=1 << 31)
    goal: GoalInfo = Field(default_factory=GoalInfo)
    host: HostSpec
    tpus: int = Field(ge=1, le=1 << 10, description="TPUs the plan uses")
    tpus_requested: int = Field(ge=1, le=1 << 10)
    devices: list[DeviceSpec] = Field(min_length=1, description="one full device spec per stage")
    cuts: list[int] = Field(description="stage k ends at op cuts[k]; the last stage ends at the last op")
    stages: list[StagePlan] = Field(min_length=1)
    predicted_period_us: int = Field(ge=0, le=BIG, description="time between results in steady state")
    period_bound: Literal["stage", "serialized", "bus"]
    predicted_throughput_per_s: float = Field(ge=0, le=1e9)
    predicted_latency_us: int = Field(ge=0, le=BIG, description="one input through every stage")
    predicted_oneoff_us: int = Field(ge=0, le=BIG, description="once per run: start-up, first-inference upload")
    predicted_per_input_us: float | None = Field(None, ge=0, le=1e18, description="over the goal's batch")
    fits_on_chip: bool
    tpus_needed_on_chip: int | None = Field(
        None, ge=1, le=1 << 31, description="fewest stages keeping every parameter on chip"
    )
    solver: SolverInfo
    curve: list[CurveRow] | None = None
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        """Cuts, stages, devices and counts must describe one segmentation of n_ops ops, and every predicted
        number must be what its parts add up to (planner.costs): a plan edited by hand is refused."""
        first = 0
        for i, s in enumerate(self.stages):
            if s.index != i or s.first_op != first or s.last_op < s.first_op or s.n_ops != s.last_op - s.first_op + 1:
                raise ValueError(f"stage {i} does not continue the one before it (ops {s.first_op}..{s.last_op})")
            interval = _copied_us(s.predicted_us, s.predicted_serial_us, s.copies)
            if s.predicted_interval_us != interval:
                raise ValueError(
                    f"stage {i}: predicted_interval_us is {s.predicted_interval_us}, but {s.copies} copies of a "
                    f"{s.predicted_us} us stage give {interval}"
                )
            first = s.last_op + 1
        if first != self.n_ops:
            raise ValueError(f"the stages cover {first} ops, the model has {self.n_ops}")
        if self.cuts != [s.last_op for s in self.stages[:-1]]:
            raise ValueError(f"cuts {self.cuts} do not match the stages")
        if len(self.devices) != len(self.stages) or [d.name for d in self.devices] != [s.device for s in self.stages]:
            raise ValueError("there must be one device per stage, named as the stage says")
        if self.tpus != sum(s.copies for s in self.stages):
            raise ValueError(f"tpus is {self.tpus} but the stages use {sum(s.copies for s in self.stages)}")
        for s, dev in zip(self.stages, self.devices, strict=True):
            _check_stage(s, dev, self.host)
        _check_pipeline(self)
        return self


def _copied_us(total: int, serial: int, copies: int) -> int:
    """A stage's time between results with `copies` devices: its work divides except the serialized share.
    The same arithmetic as StageCostTable.copied_time_us (profiles.pricing.stagecost), applied to a plan's
    own numbers so that copies edited apart from the interval are refused."""
    if copies == 1:
        return total
    fixed = min(serial, total)
    return -(-(total - fixed) // copies) + fixed


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)


def _check_stage(s: StagePlan, dev: DeviceSpec, host: HostSpec) -> None:
    """A stage's time is its device, host-op and runner time (profiles.pricing.stagecost): same parts, same sum."""
    if s.tpu_ops > s.n_ops:
        raise ValueError(f"stage {s.index}: {s.tpu_ops} Edge TPU ops out of {s.n_ops}")
    if dev.backend == "cpu" and (s.tpu_ops or s.predicted_onchip_bytes or s.predicted_offchip_bytes):
        raise ValueError(f"stage {s.index} runs on a CPU device but claims Edge TPU ops or on-chip bytes")
    if s.fits_on_chip != (s.predicted_offchip_bytes == 0):
        raise ValueError(f"stage {s.index}: fits_on_chip disagrees with its {s.predicted_offchip_bytes} off-chip bytes")
    device = _ceil(dev.invoke_overhead_us) + s.predicted_compute_us + s.predicted_spill_us + s.predicted_link_us
    if s.predicted_device_us != device:
        raise ValueError(f"stage {s.index}: predicted_device_us is {s.predicted_device_us}, its parts add to {device}")
    streams = s.predicted_offchip_bytes > 0 and dev.backend == "edgetpu"
    total = device + s.predicted_host_ops_us + s.predicted_runner_us + (_ceil(host.stream_extra_us) if streams else 0)
    if s.predicted_us != total:
        raise ValueError(f"stage {s.index}: predicted_us is {s.predicted_us}, its parts add up to {total}")


def _check_pipeline(plan: Plan) -> None:
    """Period, latency, one-off cost, throughput, batch time and objective as planner.costs defines them."""
    stages = plan.stages
    slowest = max(s.predicted_interval_us for s in stages)  # with copies: the time between its results
    serial, bus = sum(s.predicted_serial_us for s in stages), sum(s.predicted_bus_us for s in stages)
    period = max(slowest, serial, bus)
    bound: Bound = "stage" if period == slowest else ("serialized" if period == serial else "bus")
    latency = sum(s.predicted_us for s in stages)
    oneoff = _ceil(plan.host.start_us) + sum(s.copies * s.predicted_oneoff_us for s in stages)  # each copy uploads
    got = (
        plan.predicted_period_us,
        plan.period_bound,
        plan.predicted_latency_us,
        plan.predicted_oneoff_us,
        plan.predicted_throughput_per_s,
        plan.fits_on_chip,
    )
    want = (period, bound, latency, oneoff, throughput_per_s(period), all(s.fits_on_chip for s in stages))
    for name, g, w in zip(
        (
            "predicted_period_us",
            "period_bound",
            "predicted_latency_us",
            "predicted_oneoff_us",
            "predicted_throughput_per_s",
            "fits_on_chip",
        ),
        got,
        want,
        strict=True,
    ):
        if g != w:
            raise ValueError(f"{name} is {g}, but the stages give {w}")
    goal = Goal(plan.goal.objective, plan.goal.batch)
    cost = PipelineCost(period, latency, oneoff, bound)
    per_input = round(cost.per_input_us(goal.batch), 1) if goal.batch else None
    if plan.predicted_per_input_us != per_input:
        raise ValueError(f"predicted_per_input_us is {plan.predicted_per_input_us}, but the stages give {per_input}")
    alpha, beta, gamma = goal.weights
    objective = alpha * period + beta * latency + gamma * oneoff
    solver = plan.solver
    if solver.objective != objective or solver.best_bound > objective:
        raise ValueError(
            f"the solver's objective {solver.objective} (bound {solver.best_bound}) is not the plan's {objective}"
        )
    if solver.proven_optimal != (solver.status in ("OPTIMAL", "REFERENCE")):
        raise ValueError(f"solver status {solver.status} disagrees with proven_optimal {solver.proven_optimal}")


def load_plan(path: Path) -> Plan:
    """A plan file; one of schema 1 is read as schema 2 (`planner.plan_v1`)."""
    raw = read_bytes(Path(path), what=f"{PLAN_KIND} JSON document", max_bytes=1 << 30)
    return parse_plan(raw, str(path))


def parse_plan(raw: bytes, source: str) -> Plan:
    try:
        obj = load_json(raw)
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, a key given twice
        return parse_doc(raw, Plan, kind=PLAN_KIND, version=PLAN_VERSION, source=source)  # says what is wrong
    if isinstance(obj, dict) and obj.get("kind") == PLAN_KIND and obj.get("schema_version") == 1:
        try:
            obj = migrate_v1(obj)
        except TpuplanError as exc:
            raise TpuplanError(f"{source}: {exc}") from None
    return validate_doc(obj, Plan, kind=PLAN_KIND, version=PLAN_VERSION, source=source)


def stable_json(plan: Plan) -> str:
    """The plan's JSON without what varies between runs of the same solve (wall time, worker count)."""
    params = plan.solver.parameters.model_copy(update={"workers": None})
    solver = plan.solver.model_copy(update={"wall_time_s": None, "parameters": params})
    return dump_json(plan.model_copy(update={"solver": solver}))


def plan_digest(plan: Plan) -> str:
    """sha256 of the reproducible part of a plan: the same for the same inputs, whatever the run."""
    return hashlib.sha256(stable_json(plan).encode()).hexdigest()


def expand_devices(profile: Profile, devices: Sequence[DeviceSpec] | None, k: int) -> list[DeviceSpec]:
    """One device per stage: none = the profile's, one = the same for all, else exactly k (a stage's
    copies share its device)."""
    if not devices:
        return [profile.device] * k
    if len(devices) == 1:
        return [devices[0]] * k
    if len(devices) != k:
        raise TpuplanError(
            f"{len(devices)} devices given for {k} stage(s) (give one for all, or one per stage; a stage's copies "
            "share its device)"
        )
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
    for op, want in zip(profile.ops, fresh.ops, strict=True):
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
    bounds = zip([0, *(c + 1 for c in cuts)], [*cuts, tables[0].n - 1], strict=True)
    reps = list(copies) if copies is not None else [1] * (len(cuts) + 1)
    for i, ((a, b), r) in enumerate(zip(bounds, reps, strict=True)):
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
                predicted_device_us=p.device_us,
                predicted_compute_us=p.compute_us,
                predicted_spill_us=p.spill_us,
                predicted_link_us=p.link_us,
                predicted_host_ops_us=p.host_ops_us,
                predicted_runner_us=p.runner_us,
                predicted_serial_us=p.serial_us,
                predicted_bus_us=p.bus_us,
                predicted_oneoff_us=p.oneoff_us,
                uncalibrated_share=round(p.uncalibrated_us / max(p.total_us, 1), 4),
                fits_on_chip=p.fits,
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
    for s, dev in zip(stages, devices, strict=True):
        if s.tpu_ops == 0 and dev.backend == "edgetpu":
            notes.append(f"stage {s.index} runs only host ops on its TPU")
    if any(s.copies > 1 for s in stages):
        notes.append(
            "copies: "
            + ", ".join(f"stage {s.index} on {s.copies} TPUs" for s in stages if s.copies > 1)
            + " (inputs dealt to them in turn; each holds the whole stage)"
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
        predicted_per_input_us=round(tot.per_input_us(goal.batch), 1) if goal.batch else None,
        fits_on_chip=all(s.fits_on_chip for s in stages),
        tpus_needed_on_chip=fewest_onchip_stages(tables),
        solver=solver,
        notes=[*notes, *_notes(profile, devices, stages, tot)],
    )


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
    devs = expand_devices(profile, devices, k)
    tables = stage_tables(profile, devs, host)
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
