"""The calibration's documents: each measured row beside the prediction, each file's summary, the result."""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field

from tpuplan.profiles.docio import StrictModel, load_doc
from tpuplan.profiles.limits import MAX_BATCH, Count, Rate, Real, Share
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec


class CalibrationPoint(StrictModel):
    """One measured row beside the planner's prediction for it on the fitted specs."""

    file: str
    family: str
    x: Count
    runner: str | None = Field(description="the pipeline runner; None: one invoke() of the one-segment model")
    device_name: str = Field("", max_length=200, description="the device it ran on")
    host_name: str = Field("", max_length=200, description="the host that ran it")
    batch: int = Field(ge=1, le=MAX_BATCH)
    cuts: list[Count] = Field(description="op ending each stage but the last")
    cuts_inferred: bool
    measured_ms: Rate
    predicted_ms: Rate = Field(description="PREDICTED: stage_table + totals on the fitted specs")
    rel_error: Rate = Field(description="|predicted - measured| / measured")
    bound: str = Field(description="what sets the predicted period: stage, serialized, bus (single: one invoke)")
    measured_onchip_mib: list[Rate]
    predicted_onchip_mib: list[Rate]
    measured_offchip_mib: list[Rate]
    predicted_offchip_mib: list[Rate]
    memory_ok: bool = Field(description="every segment's on- and off-chip MiB within 0.1 MiB of the report")


class FileSummary(StrictModel):
    file: str
    runner: str | None
    batch: int = Field(ge=1, le=MAX_BATCH)
    rows: Count
    median_rel_error: Rate
    p90_rel_error: Rate
    worst_rel_error: Rate
    memory_within_0_1_mib: Share


CALIBRATION_KIND: Final = "tpuplan.calibration"
CALIBRATION_VERSION: Final = 2


class ParamValue(StrictModel):
    """One fitted parameter: its value, its plausible range and where that comes from, and whether the fit
    ended at an edge of the range (then the data would have liked it beyond: said, not hidden)."""

    name: str = Field(max_length=200)
    value: Real
    low: Real
    high: Real
    why: str = Field(max_length=1000)
    used: bool = Field(description="some row depends on it; else it keeps its base value")
    at_edge: Literal["", "low", "high"] = ""
    spread: tuple[Real, Real] | None = Field(None, description="least and most over leave-one-source-out refits")


class CalibrationResult(StrictModel):
    """The fitted devices and hosts (by name), every parameter, the points and each file's summary."""

    kind: Literal["tpuplan.calibration"] = CALIBRATION_KIND
    schema_version: Literal[2] = CALIBRATION_VERSION
    device: DeviceSpec = Field(description="the base device (the first source's)")
    devices: dict[str, DeviceSpec]
    hosts: dict[str, HostSpec]
    params: list[ParamValue]
    files: list[FileSummary]
    points: list[CalibrationPoint]


def load_calibration(path: Path) -> CalibrationResult:
    """A `plan calibrate --json` result read back, checked like every document."""
    return load_doc(path, CalibrationResult, kind=CALIBRATION_KIND, version=CALIBRATION_VERSION)
