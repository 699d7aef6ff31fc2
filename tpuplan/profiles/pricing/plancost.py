"""A cut list priced on stage tables: the pipeline's period, latency and one-off, the one definition every
part of the planner uses (the searches' totals, the plan document, the calibration's report).

Apart from the tables (`profiles.pricing.tables`), which hold stages; this module composes them with
the formula's pipeline (`profiles.pricing.pipeline_formula`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tpuplan.compat import zip_strict
from tpuplan.profiles.pricing import formula, pipeline_formula

if TYPE_CHECKING:
    from tpuplan.profiles.pricing.tables import StageCostTable


@dataclass(frozen=True)
class PipelineCost:
    """The pipeline-level numbers of one cut list (all integer us); see pipeline_formula.pipeline."""

    period_us: int
    latency_us: int
    oneoff_us: int
    bound: str  # the period bound that sets the period (formula.PERIOD_BOUNDS)
    bounds: dict[str, int]

    def per_input_us(self, batch: int) -> float:
        """Time per input of a batch pushed at once into a fresh pipeline (pipeline_formula.per_input)."""
        out: float = pipeline_formula.per_input(self.period_us, self.latency_us, self.oneoff_us, batch)
        return out


def stage_pairs(cuts: Sequence[int], n: int) -> list[tuple[int, int]]:
    """(first op, last op) of every stage of a cut list over n ops."""
    return list(zip_strict([0, *(c + 1 for c in cuts)], [*cuts, n - 1]))


def pipeline_cost(
    tables: Sequence[StageCostTable],
    cuts: Sequence[int],
    copies: Sequence[int] | None = None,
    bounds: Sequence[formula.PeriodBound] = formula.PERIOD_BOUNDS,
) -> PipelineCost:
    """The plan `cuts` (stage k on tables[k], with copies[k] devices taking its inputs in turn) priced by
    the formula's pipeline: one input still goes through one copy of each stage (the latency), the
    serialized and bus work of every input is still done, and each copy pays the stage's one-off."""
    stages = [t.stage_values(a, b) for t, (a, b) in zip_strict(tables, stage_pairs(cuts, tables[0].n))]
    got = pipeline_formula.pipeline(stages, copies, tables[0].start_us, of=bounds)
    return PipelineCost(
        int(got.period), int(got.latency), int(got.oneoff), got.bound, {k: int(v) for k, v in got.bounds.items()}
    )
