"""The verify report: predicted against measured, stage by stage and for the whole pipeline.

Version 2 (from 1): a stage is judged within tolerance when |measured - predicted| <= max(tolerance x
measured, tolerance_floor_us), so that a 5 us stage measured 1 us off is not a miss; `within_tolerance`
is null when the plan's predictions are for another backend than the one measured ("not compared");
the report names its inputs and carries our runner's host numbers for this machine (`runner_host`).
Later additions, optional so that earlier reports still read: the interpreter that measured, the folder of
segments verified as found (`plan verify --segments`), `--outputs-only`, and the verdict `not_compared`
(no stage time could be compared and the outputs alone were not asked for: a build must not read that as ok);
the plan's host (what a refit from the report fits), and `simulated` (a simulated device timed the stages:
its "measured" numbers are the simulation's, never a measurement of hardware).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, model_validator

from tpuplan.planner.plan import Plan, plan_digest
from tpuplan.profiles.docio import StrictModel, load_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_COUNT, MAX_PIPELINE_US, Count, Rate
from tpuplan.runtime.verify.hostcost import RunnerHost
from tpuplan.runtime.verify.tolerance import MAX_TOLERANCE

REPORT_KIND: Final = "tpuplan.verify"
REPORT_VERSION: Final = 2
Verdict = Literal["ok", "prediction_missed", "outputs_differ", "not_compared"]


Us = Annotated[float, Field(ge=0, le=MAX_PIPELINE_US)]  # a measured or predicted time in microseconds
Sha = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class StageCheck(StrictModel):
    index: Count
    device: str = Field(max_length=200)
    first_op: Count
    last_op: Count
    predicted_us: Us
    measured_us: Us = Field(description="median warm time of the stage alone here")
    measured_in_pipeline_us: Us = Field(description="median invoke time while all stages ran")
    rel_error: Rate = Field(description="|measured - predicted| / measured")
    abs_error_us: Us = Field(description="|measured - predicted|")
    within_tolerance: bool | None = Field(
        description="|measured - predicted| <= max(tolerance x measured, tolerance_floor_us); null: not compared"
    )


class VerifyReport(StrictModel):
    kind: Literal["tpuplan.verify"] = REPORT_KIND
    schema_version: Literal[2] = REPORT_VERSION
    model_sha256: Sha
    plan_sha256: Sha
    backend: str = Field(max_length=100)
    devices: list[str]
    inputs: int = Field(ge=1, le=MAX_COUNT)
    input_source: str = Field(max_length=5000, description="random (seed, distinct tensors) or the file read")
    tolerance: float = Field(ge=0, le=MAX_TOLERANCE)
    tolerance_floor_us: Us = Field(description="an error this small is within tolerance whatever its share")
    comparable: bool = Field(description="the plan's predictions are for this backend")
    outputs_only: bool = Field(False, description="only the outputs were judged (--outputs-only)")
    interpreter: str | None = Field(None, max_length=200, description="the TFLite interpreter that measured")
    segments: str | None = Field(
        None, max_length=5000, description="the folder of segments verified as found; null: split here"
    )
    host: str | None = Field(None, max_length=200, description="the plan's host spec (null: not recorded)")
    simulated: bool = Field(False, description="SIMULATED device: stage times from a model, not hardware")
    stages: list[StageCheck]
    predicted_bottleneck_us: Us
    measured_bottleneck_us: Us
    predicted_latency_us: Us
    measured_latency_us: Us = Field(description="one input through all stages in turn, median")
    effective_cores: Rate = Field(description="measured parallel speed-up of two busy interpreters")
    predicted_throughput_ideal_per_s: Rate = Field(description="1 / slowest stage: one core per stage")
    predicted_throughput_per_s: Rate = Field(description="also limited by the usable cores")
    measured_throughput_per_s: Rate
    throughput_rel_error: Rate
    pipeline_overhead_us: Us = Field(description="measured host cost of the pipeline per item and stage")
    runner_host: RunnerHost
    pipeline_latency_p50_us: Us
    pipeline_latency_p90_us: Us
    pipeline_latency_p99_us: Us
    outputs_match: bool | None = Field(description="pipeline outputs bit-identical to the unsplit model")
    outputs_note: str
    worst_stage: Count
    verdict: Verdict
    notes: list[str]

    @model_validator(mode="after")
    def _consistent(self) -> VerifyReport:
        """Stages numbered 0..n-1, contiguous, and the worst one among them."""
        first = self.stages[0].first_op if self.stages else 0
        for i, s in enumerate(self.stages):
            if s.index != i or s.first_op != first or s.last_op < s.first_op:
                raise ValueError(f"stage {i} does not continue the one before it (ops {s.first_op}..{s.last_op})")
            first = s.last_op + 1
        if not self.stages or self.worst_stage >= len(self.stages):
            raise ValueError(f"worst_stage {self.worst_stage} is not one of the {len(self.stages)} stages")
        return self


def load_report(path: Path) -> VerifyReport:
    return load_doc(path, VerifyReport, kind=REPORT_KIND, version=REPORT_VERSION)


def check_report_matches(report: VerifyReport, plan: Plan, where: str) -> None:
    """A report is used only with the plan it was made for: same model, same plan digest, and the same
    stages (a report edited apart from its digest, with a stage added or removed, is refused here rather
    than mis-paired stage by stage)."""
    if report.model_sha256 != plan.model.sha256 or report.plan_sha256 != plan_digest(plan):
        raise TpuplanError(f"{where}: this verify report is for another plan")
    ranges = [(c.index, c.first_op, c.last_op) for c in report.stages]
    if ranges != [(s.index, s.first_op, s.last_op) for s in plan.stages]:
        raise TpuplanError(f"{where}: the report's stages are not the plan's")


def within(measured: float, predicted: float, tolerance: float, floor_us: float) -> bool:
    """The rule: an error within `tolerance` of the measured time, or within `floor_us` microseconds."""
    return abs(measured - predicted) <= max(tolerance * measured, floor_us)


@dataclass(frozen=True)
class Judged:
    """What a verify judges: the tolerance (relative, floor in us), whether the plan's predictions are for
    the backend measured, and whether only the outputs count (--outputs-only)."""

    tolerance: tuple[float, float]
    comparable: bool
    outputs_only: bool = False


def decide(
    checks: Sequence[StageCheck], outputs_match: bool | None, outputs_note: str, judged: Judged
) -> tuple[Verdict, list[str]]:
    """The verdict and the note that explains it. Differing outputs fail whatever else; with
    --outputs-only the outputs alone decide; otherwise a stage outside tolerance misses, and a run in
    which no stage time could be compared (a CPU run of an Edge TPU plan) is `not_compared`, never ok."""
    if outputs_match is False:
        return "outputs_differ", []
    if judged.outputs_only:
        if outputs_match:
            return "ok", ["--outputs-only: the outputs were judged; stage times are reported, not judged"]
        return "not_compared", [f"--outputs-only, but the outputs were {outputs_note}"]
    missed = [c for c in checks if c.within_tolerance is False]
    if missed:
        worst = max(missed, key=lambda c: c.abs_error_us)
        tolerance, floor = judged.tolerance
        return "prediction_missed", [
            f"stage {worst.index} measured {worst.measured_us:.0f} us vs predicted {worst.predicted_us:.0f} us "
            f"({worst.rel_error:.0%} off, tolerance {tolerance:.0%} or {floor:g} us)"
        ]
    if not judged.comparable:
        return "not_compared", [
            "no stage time was compared with a prediction, so this run cannot pass as a check of the plan "
            "(exit 4); run on the backend the plan is for, or ask --outputs-only to judge the outputs alone"
        ]
    return "ok", []
