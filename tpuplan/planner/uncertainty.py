"""How sure a prediction is: a plan priced again in every scenario its device and host specs keep.

A calibrated spec keeps scenarios (`pricing.scenarios`): the fit made again without one source at a time,
each a plausible set of its coefficients. A plan's cuts and copies priced in each of them (and as fitted)
give its period and latency as a value and a range; two plans whose ranges overlap cannot be told apart
by the calibration. Only the plan's own stages are priced again (one row of the pricer per stage start),
so this costs little next to the solve.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, model_validator

from tpuplan.compat import zip_strict
from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.limits import PipelineUs
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing import formula, pipeline_formula
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.profiles.pricing.plancost import stage_pairs
from tpuplan.profiles.pricing.scenarios import NOMINAL, scenario_names, with_scenario
from tpuplan.profiles.pricing.stagecost import StagePricer


class Span(StrictModel):
    """The least and the most of a predicted number over the calibration's scenarios."""

    low: PipelineUs
    high: PipelineUs


class PredictionRange(StrictModel):
    """A plan's period and latency over every scenario its specs keep (its own value among them)."""

    period_us: Span
    latency_us: Span
    scenarios: list[str] = Field(max_length=64, description="the scenarios priced (nominal: as fitted)")
    widest: str = Field("", max_length=200, description="the scenario of the longest period")

    def overlaps(self, other: PredictionRange) -> bool:
        """Whether the two periods' ranges meet: the calibration cannot say which is faster."""
        return self.period_us.low <= other.period_us.high and other.period_us.low <= self.period_us.high


class ScenarioRow(StrictModel):
    """A robust plan in one scenario: its period, the scenario's own optimum, and the nominal plan's."""

    scenario: str = Field(max_length=200)
    period_us: PipelineUs = Field(description="this plan's period in the scenario")
    best_period_us: PipelineUs = Field(description="the least period of any plan in the scenario (its own optimum)")
    best_proven: bool = Field(description="that optimum was proven")
    nominal_plan_period_us: PipelineUs = Field(description="the nominal plan's period in the scenario")


class RobustInfo(StrictModel):
    """What --robust chose and gave up: the least worst-case period over the calibration's scenarios."""

    worst_period_us: PipelineUs = Field(description="this plan's longest period over the scenarios")
    nominal_worst_period_us: PipelineUs = Field(description="the nominal plan's longest period over them")
    rounds: int = Field(ge=1, le=1 << 10, description="searches run (scenario bounds added as needed)")
    scenarios: list[ScenarioRow] = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _worst(self) -> RobustInfo:
        if self.worst_period_us != max(r.period_us for r in self.scenarios):
            raise ValueError("worst_period_us is not the longest period over the scenarios")
        if self.nominal_worst_period_us != max(r.nominal_plan_period_us for r in self.scenarios):
            raise ValueError("nominal_worst_period_us is not the nominal plan's longest period")
        return self


def scenario_values(
    profile: Profile, devices: Sequence[DeviceSpec], host: HostSpec, cuts: Sequence[int], name: str
) -> list[dict[str, int]]:
    """The stage values of the plan `cuts` (stage k on devices[k]) in one scenario."""
    pricers: dict[str, StagePricer] = {}
    out = []
    spec_host = with_scenario(host, name)
    for dev, (a, b) in zip_strict(devices, stage_pairs(cuts, len(profile.ops))):
        key = dev.model_dump_json()
        if key not in pricers:
            pricers[key] = StagePricer(profile, with_scenario(dev, name), spec_host)
        row = pricers[key].row(a)
        out.append({k: int(v[b - a]) for k, v in row["values"].items()})
    return out


def prediction_range(
    profile: Profile, devices: Sequence[DeviceSpec], host: HostSpec, cuts: Sequence[int], copies: Sequence[int]
) -> PredictionRange:
    """The plan priced in every scenario of its devices and host (nominal first)."""
    names = scenario_names(*devices, host)
    periods, latencies = [], []
    start_host = host
    for name in names:
        stages = scenario_values(profile, devices, host, cuts, name)
        start = formula.whole_us(with_scenario(start_host, name).start_us)
        got = pipeline_formula.pipeline(stages, copies, start)
        periods.append(int(got.period))
        latencies.append(int(got.latency))
    widest = names[periods.index(max(periods))]
    return PredictionRange(
        period_us=Span(low=min(periods), high=max(periods)),
        latency_us=Span(low=min(latencies), high=max(latencies)),
        scenarios=names,
        widest="" if widest == NOMINAL else widest,
    )
