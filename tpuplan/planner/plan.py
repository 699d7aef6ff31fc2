"""The Plan document: one contiguous segment of ops per stage, with every predicted number.

Every number in it is priced by the cost formula (`profiles.pricing.formula`) through the stage tables
(`planner.plan_build` assembles it), so a plan from the solver, from a baseline or from `--cuts` is
comparable number for number. A plan is checked against itself when it is read (`planner.plan_check`):
a plan whose cuts, stages, devices, counts or predictions were edited apart from each other is refused
by name (`planner.matching` checks a plan against its model, where one is at hand). Plans of schema 1
and 2 are read through `planner.plan_v1` and `planner.plan_v2`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, model_validator

from tpuplan.compat import zip_strict
from tpuplan.planner.plan_check import check_pipeline, check_stage
from tpuplan.planner.plan_v1 import migrate_v1
from tpuplan.planner.plan_v2 import migrate_v2
from tpuplan.planner.uncertainty import PredictionRange, RobustInfo
from tpuplan.profiles.docio import StrictModel, dump_json, load_json, parse_doc, read_bytes, validate_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_OBJECTIVE, StageUs
from tpuplan.profiles.model import BIG, ModelRef, StateLoop
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.formula import (
    BOUND_NAMES,
    STAGE_VALUES,
    Part,
    invoke_part,
    measured_parts,
    part_sums,
)
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.profiles.pricing.pipeline_formula import Objective

PLAN_KIND: Final = "tpuplan.plan"
PLAN_VERSION: Final = 3
Status = Literal["OPTIMAL", "FEASIBLE", "EVALUATED", "REFERENCE"]


class StagePlan(StrictModel):
    """One pipeline stage: ops first_op..last_op on one device. Every `predicted_*` is predicted; the
    terms and values are those of the cost formula (`profiles.pricing.formula`), in whole microseconds."""

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
        description="time between its results: predicted_us, less with copies (formula.interval)",
    )
    predicted_terms: dict[str, StageUs] = Field(description="every term of the cost formula, by name")
    predicted_values: dict[str, StageUs] = Field(description="T (time), S (serial), V (bus), O (oneoff)")
    uncalibrated_share: float = Field(0.0, ge=0, le=1, description="share of its time from uncalibrated costs")
    fits_on_chip: bool
    measured_invoke_us: int | None = Field(
        None,
        ge=0,
        le=BIG,
        description="MEASURED: its invoke timed alone by plan verify, in place of the predicted device and host "
        "parts in its values (its terms stay the prediction); null: predicted",
    )
    in_state_loop: bool = Field(False, description="holds an op of a state loop: never copied, waits for state")

    def part_us(self, part: Part) -> int:
        """The sum of its terms in one part of the formula (device, host or runner), as measured where its
        invoke was (`formula.measured_parts`)."""
        parts, _ = measured_parts(part_sums(self.predicted_terms), self.measured_invoke_us)
        out: int = round(parts[part])
        return out

    @property
    def invoke_us(self) -> int:
        """Its interpreter run alone (device + host parts): what a stage timed on its own measures; the
        measured time where there is one."""
        out: int = round(invoke_part(self.predicted_terms, self.measured_invoke_us))
        return out


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
    tpus_used: int | None = Field(None, ge=1, le=1 << 10, description="TPUs the best plan over at most `tpus` uses")
    shape: str | None = Field(None, max_length=200, description="its stages and copies (data parallel: one stage)")


class Plan(StrictModel):
    kind: Literal["tpuplan.plan"] = PLAN_KIND
    schema_version: Literal[3] = PLAN_VERSION
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
    period_bound: str = Field(max_length=40, description="the bound that sets the period (formula.PERIOD_BOUNDS)")
    predicted_bounds: dict[str, StageUs] = Field(description="every bound of the period, by name")
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
    predicted_range: PredictionRange | None = Field(
        None, description="period and latency over the calibration's scenarios (planner.uncertainty)"
    )
    state: list[StateLoop] = Field(default_factory=list, description="state carried between inferences")
    robust: RobustInfo | None = Field(None, description="--robust: the worst case over the scenarios, per scenario")
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Plan:
        """Cuts, stages, devices and counts must describe one segmentation of n_ops ops, and every predicted
        number must be what its parts add up to (planner.costs): a plan edited by hand is refused."""
        first = 0
        for i, s in enumerate(self.stages):
            if s.index != i or s.first_op != first or s.last_op < s.first_op or s.n_ops != s.last_op - s.first_op + 1:
                raise ValueError(f"stage {i} does not continue the one before it (ops {s.first_op}..{s.last_op})")
            one = s.predicted_interval_us == s.predicted_us
            if s.predicted_interval_us > s.predicted_us or (s.copies == 1 and not one):
                raise ValueError(f"stage {i}: predicted_interval_us must be predicted_us with one copy, less with more")
            first = s.last_op + 1
        if first != self.n_ops:
            raise ValueError(f"the stages cover {first} ops, the model has {self.n_ops}")
        if self.cuts != [s.last_op for s in self.stages[:-1]]:
            raise ValueError(f"cuts {self.cuts} do not match the stages")
        if len(self.devices) != len(self.stages) or [d.name for d in self.devices] != [s.device for s in self.stages]:
            raise ValueError("there must be one device per stage, named as the stage says")
        if self.tpus != sum(s.copies for s in self.stages):
            raise ValueError(f"tpus is {self.tpus} but the stages use {sum(s.copies for s in self.stages)}")
        for s, dev in zip_strict(self.stages, self.devices):
            check_stage(s, dev, self.host)
            held = any(s.first_op <= lp.last_op and s.last_op >= lp.first_op for lp in self.state)
            if s.in_state_loop != held or (held and s.copies > 1):
                raise ValueError(
                    f"stage {s.index}: in_state_loop must say whether it holds an op of a state loop "
                    "(and such a stage has one copy)"
                )
        check_pipeline(self)
        return self


def added_numbers(obj: dict[str, Any]) -> dict[str, Any]:
    """A plan written before the formula had some of its stage values or period bounds (the state loop's)
    reads them as 0: that plan knew of no state."""
    for stage in obj.get("stages") or []:
        values = stage.get("predicted_values") if isinstance(stage, dict) else None
        if isinstance(values, dict):
            for name in STAGE_VALUES:
                values.setdefault(name, 0)
    bounds = obj.get("predicted_bounds")
    if isinstance(bounds, dict):
        for name in BOUND_NAMES:
            bounds.setdefault(name, 0)
    return obj


def load_plan(path: Path) -> Plan:
    """A plan file; one of schema 1 or 2 is read as schema 3 (`planner.plan_v1`, `planner.plan_v2`)."""
    raw = read_bytes(Path(path), what=f"{PLAN_KIND} JSON document", max_bytes=1 << 30)
    return parse_plan(raw, str(path))


def parse_plan(raw: bytes, source: str) -> Plan:
    try:
        obj = load_json(raw)
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, a key given twice
        return parse_doc(raw, Plan, kind=PLAN_KIND, version=PLAN_VERSION, source=source)  # says what is wrong
    if isinstance(obj, dict) and obj.get("kind") == PLAN_KIND and obj.get("schema_version") in (1, 2):
        try:
            obj = migrate_v2(migrate_v1(obj) if obj["schema_version"] == 1 else obj)
        except TpuplanError as exc:
            raise TpuplanError(f"{source}: {exc}") from None
    if isinstance(obj, dict) and obj.get("kind") == PLAN_KIND and obj.get("schema_version") == PLAN_VERSION:
        obj = added_numbers(obj)
    return validate_doc(obj, Plan, kind=PLAN_KIND, version=PLAN_VERSION, source=source)


def stable_json(plan: Plan) -> str:
    """The plan's JSON without what varies between runs of the same solve (wall time, worker count)."""
    params = plan.solver.parameters.model_copy(update={"workers": None})
    solver = plan.solver.model_copy(update={"wall_time_s": None, "parameters": params})
    return dump_json(plan.model_copy(update={"solver": solver}))


def plan_digest(plan: Plan) -> str:
    """sha256 of the reproducible part of a plan: the same for the same inputs, whatever the run."""
    return hashlib.sha256(stable_json(plan).encode()).hexdigest()
