"""The verify report: predicted against measured, stage by stage and for the whole pipeline.

Version 2 (from 1): a stage is judged within tolerance when |measured - predicted| <= max(tolerance x
measured, tolerance_floor_us), so that a 5 us stage measured 1 us off is not a miss; `within_tolerance`
is null when the plan's predictions are for another backend than the one measured ("not compared");
the report names its inputs and carries our runner's host numbers for this machine (`runner_host`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field

from tpuplan.profiles.docio import StrictModel, load_doc
from tpuplan.runtime.hostcost import RunnerHost

REPORT_KIND: Final = "tpuplan.verify"
REPORT_VERSION: Final = 2
TOLERANCE_FLOOR_US = 20.0


class StageCheck(StrictModel):
    index: int
    device: str
    first_op: int
    last_op: int
    predicted_us: float
    measured_us: float = Field(description="median warm time of the stage alone on this machine")
    measured_in_pipeline_us: float = Field(description="median invoke time while all stages ran")
    rel_error: float = Field(description="|measured - predicted| / measured")
    abs_error_us: float = Field(description="|measured - predicted|")
    within_tolerance: bool | None = Field(description="|measured - predicted| <= max(tolerance x measured, "
                                                      "tolerance_floor_us); null: not compared")


class VerifyReport(StrictModel):
    kind: Literal["tpuplan.verify"] = REPORT_KIND
    schema_version: Literal[2] = REPORT_VERSION
    model_sha256: str
    plan_sha256: str
    backend: str
    devices: list[str]
    inputs: int
    input_source: str = Field(description="random (seed, distinct tensors) or the file or directory read")
    tolerance: float
    tolerance_floor_us: float = Field(description="an error this small is within tolerance whatever its share")
    comparable: bool = Field(description="the plan's predictions are for this backend")
    stages: list[StageCheck]
    predicted_bottleneck_us: float
    measured_bottleneck_us: float
    predicted_latency_us: float
    measured_latency_us: float = Field(description="one input through all stages in turn, median")
    effective_cores: float = Field(description="measured parallel speed-up of two busy interpreters")
    predicted_throughput_ideal_per_s: float = Field(description="1 / slowest stage: one core per stage")
    predicted_throughput_per_s: float = Field(description="also limited by the usable cores")
    measured_throughput_per_s: float
    throughput_rel_error: float
    pipeline_overhead_us: float = Field(description="measured host cost of the pipeline per item and stage")
    runner_host: RunnerHost
    pipeline_latency_p50_us: float
    pipeline_latency_p90_us: float
    pipeline_latency_p99_us: float
    outputs_match: bool | None = Field(description="pipeline outputs bit-identical to the unsplit model")
    outputs_note: str
    worst_stage: int
    verdict: Literal["ok", "prediction_missed", "outputs_differ"]
    notes: list[str]


def load_report(path: Path) -> VerifyReport:
    return load_doc(path, VerifyReport, kind=REPORT_KIND, version=REPORT_VERSION)


def within(measured: float, predicted: float, tolerance: float, floor_us: float) -> bool:
    """The rule: an error within `tolerance` of the measured time, or within `floor_us` microseconds."""
    return abs(measured - predicted) <= max(tolerance * measured, floor_us)
