"""The `plan compare` document: our plan beside what people do without tpuplan, all priced alike.

Its own module, apart from the solving in `baselines`, so that reading or describing a comparison
(`plan schema comparison`) does not load OR-Tools.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tpuplan.planner.plan import GoalInfo
from tpuplan.planner.uncertainty import Span
from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.limits import Count, ObjectiveUs, PipelineUs, Rate, TotalBytes
from tpuplan.profiles.model import ModelRef


class Entry(StrictModel):
    name: str = Field(max_length=200)
    tpus: int = Field(ge=1, le=1 << 10)
    cuts: list[Count]
    copies: list[Count] = Field(description="TPUs per stage (1 each without copies)")
    predicted_period_us: PipelineUs
    predicted_throughput_per_s: Rate
    predicted_latency_us: PipelineUs
    objective: ObjectiveUs
    predicted_offchip_bytes: TotalBytes = Field(description="cached-layout bytes streamed, all stages")
    fits_on_chip: bool
    host_only_stages: Count = Field(description="stages whose TPU runs no op")
    speedup_of_ours: Rate = Field(description="this entry's objective / ours")
    period_range: Span | None = Field(None, description="its period over the calibration's scenarios")
    within_ours: bool = Field(False, description="its period range meets ours: not told apart by the calibration")


class Comparison(StrictModel):
    kind: Literal["tpuplan.comparison"] = "tpuplan.comparison"
    schema_version: Literal[2] = 2
    model: ModelRef
    tpus: int = Field(ge=1, le=1 << 10)
    goal: GoalInfo
    host: str = Field(max_length=200)
    ours_status: str = Field(max_length=40)
    ours_proven_optimal: bool
    entries: list[Entry]
    notes: list[str] = Field(default_factory=list)
