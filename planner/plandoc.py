"""The Plan document and its parts, and the checks that make a plan agree with itself when it is read.

A plan is written by `planner.plan.build_plan` from the stage tables; everything it predicts follows from
a few numbers per stage by the formulas of `profiles.stagecost` and `planner.costs`. A plan read from a
file is checked against those formulas, so a plan whose cuts, stages, devices, counts or predictions were
edited apart from each other is refused by name instead of being shown, split or verified.
"""

from __future__ import annotations

import math
from typing import Final, Literal

from pydantic import Field, model_validator

from tpuplan.planner.costs import Goal, Objective, throughput_per_s
from tpuplan.profiles.device import DeviceSpec
from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.host import HostSpec
from tpuplan.profiles.limits import ObjectiveUs, PipelineUs, StageUs, TotalBytes
from tpuplan.profiles.model import ModelRef
from tpuplan.profiles.stagecost import PipelineCost

PLAN_KIND: Final = "tpuplan.plan"
PLAN_VERSION: Final = 2

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
    param_bytes: TotalBytes = Field(description="parameter bytes as stored in the model")
    predicted_onchip_bytes: TotalBytes = Field(description="cached-layout bytes the compiler keeps on chip")
    predicted_offchip_bytes: TotalBytes = Field(description="cached-layout bytes streamed every inference")
    bytes_in: TotalBytes = Field(description="activation bytes entering the stage")
    bytes_out: TotalBytes = Field(description="activation bytes leaving the stage")
    predicted_us: StageUs = Field(description="one input through this stage (T)")
    predicted_device_us: StageUs
    predicted_compute_us: StageUs
    predicted_spill_us: StageUs
    predicted_link_us: StageUs
    predicted_host_ops_us: StageUs
    predicted_runner_us: StageUs
    predicted_serial_us: StageUs
    predicted_bus_us: StageUs
    predicted_oneoff_us: StageUs
    uncalibrated_share: float = Field(0.0, ge=0, le=1, description="share of its time from uncalibrated costs")
    fits_on_chip: bool


class SolverParameters(StrictModel):
    workers: int = Field(ge=1, le=64)
    time_limit_s: float | None = Field(None, gt=0, le=86_400)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    allow_spill: bool = False


class SolverInfo(StrictModel):
    """How the plan was found and what is proven about it (objective J in us, see planner.costs)."""

    status: Status
    objective: ObjectiveUs
    best_bound: ObjectiveUs
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
    predicted_period_us: PipelineUs
    predicted_latency_us: PipelineUs
    predicted_throughput_per_s: float = Field(ge=0, le=1e9)
    objective: ObjectiveUs
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
    predicted_period_us: PipelineUs = Field(description="time between results in steady state")
    period_bound: Bound
    predicted_throughput_per_s: float = Field(ge=0, le=1e9)
    predicted_latency_us: PipelineUs = Field(description="one input through every stage")
    predicted_oneoff_us: PipelineUs = Field(description="once per run: start-up, first-inference upload")
    predicted_per_input_us: float | None = Field(None, ge=0, le=1e18, description="over the goal's batch")
    fits_on_chip: bool
    tpus_needed_on_chip: int | None = Field(None, ge=1, le=1 << 31,
                                            description="fewest stages keeping every parameter on chip")
    solver: SolverInfo
    curve: list[CurveRow] | None = None
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        """Cuts, stages, devices and counts must describe one segmentation of n_ops ops, and every
        predicted number must be what its parts add up to: a plan edited by hand is refused."""
        _check_segmentation(self)
        for s, dev in zip(self.stages, self.devices, strict=True):
            _check_stage(s, dev, self.host)
        _check_pipeline(self)
        return self


def _check_segmentation(plan: Plan) -> None:
    first = 0
    for i, s in enumerate(plan.stages):
        if s.index != i or s.first_op != first or s.last_op < s.first_op or s.n_ops != s.last_op - s.first_op + 1:
            raise ValueError(f"stage {i} does not continue the one before it (ops {s.first_op}..{s.last_op})")
        first = s.last_op + 1
    if first != plan.n_ops:
        raise ValueError(f"the stages cover {first} ops, the model has {plan.n_ops}")
    if plan.cuts != [s.last_op for s in plan.stages[:-1]]:
        raise ValueError(f"cuts {plan.cuts} do not match the stages")
    if len(plan.devices) != len(plan.stages) or [d.name for d in plan.devices] != [s.device for s in plan.stages]:
        raise ValueError("there must be one device per stage, named as the stage says")
    if plan.tpus != sum(s.copies for s in plan.stages):
        raise ValueError(f"tpus is {plan.tpus} but the stages use {sum(s.copies for s in plan.stages)}")


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)


def _check_stage(s: StagePlan, dev: DeviceSpec, host: HostSpec) -> None:
    """A stage's time is its device, host-op and runner time (profiles.stagecost): same parts, same sum."""
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
    slowest = max(s.predicted_us for s in stages)
    serial, bus = sum(s.predicted_serial_us for s in stages), sum(s.predicted_bus_us for s in stages)
    period = max(slowest, serial, bus)
    bound: Bound = "stage" if period == slowest else ("serialized" if period == serial else "bus")
    latency = sum(s.predicted_us for s in stages)
    oneoff = _ceil(plan.host.start_us) + sum(s.predicted_oneoff_us for s in stages)
    got = (plan.predicted_period_us, plan.period_bound, plan.predicted_latency_us, plan.predicted_oneoff_us,
           plan.predicted_throughput_per_s, plan.fits_on_chip)
    want = (period, bound, latency, oneoff, throughput_per_s(period), all(s.fits_on_chip for s in stages))
    for name, g, w in zip(("predicted_period_us", "period_bound", "predicted_latency_us", "predicted_oneoff_us",
                           "predicted_throughput_per_s", "fits_on_chip"), got, want, strict=True):
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
        raise ValueError(f"the solver's objective {solver.objective} (bound {solver.best_bound}) is not the "
                         f"plan's {objective}")
    if solver.proven_optimal != (solver.status in ("OPTIMAL", "REFERENCE")):
        raise ValueError(f"solver status {solver.status} disagrees with proven_optimal {solver.proven_optimal}")
