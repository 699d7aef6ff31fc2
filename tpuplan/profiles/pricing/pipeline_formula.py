"""The cost model's pipeline: how a plan's period, latency and one-off cost follow from its stages'
values, and what the planner minimises (J = alpha P + beta L + gamma O).

It is the second half of the formula (`profiles.pricing.formula` holds the coefficients, the stage terms
and values and the period's bounds, `PERIOD_BOUNDS`); kept apart so that each half reads on its own. The
pricer's tables, the plan check, the calibration's dual numbers, verify and the simulated backend all
evaluate the pipeline here, never again themselves; a new period bound is an entry in `PERIOD_BOUNDS` in
`formula` and needs nothing here.

    pipeline      P = max over PERIOD_BOUNDS (the slowest stage, sums of S, V and W); L = sum T;
                  O = start + sum copies x O_k
                  batch of N: (O + L + (N - 1) P) / N;  objective J = alpha P + beta L + gamma O
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from tpuplan.compat import zip_strict
from tpuplan.profiles.pricing.formula import PERIOD_BOUNDS, Coefficients, Num, PeriodBound, Round, as_is

PIPELINE_START = "host.start_us"  # once per run, whatever the stages: the runner's start-up


def pipeline_start(coef: Coefficients, round_up: Round = as_is) -> Num:
    return round_up("start", coef(PIPELINE_START))


def interval(time: int, serial: int, copies: int) -> int:
    """A stage's time between results with `copies` devices taking its inputs in turn, each with its own
    device and runner thread: its work divides among them except its serialized share."""
    if copies == 1:
        return time
    fixed = min(serial, time)
    return -(-(time - fixed) // copies) + fixed


@dataclass(frozen=True)
class PipelineValues:
    """A plan's pipeline numbers: period, what sets it, latency, one-off, and every bound's value."""

    period: Num
    bound: str
    latency: Num
    oneoff: Num
    bounds: dict[str, Num]


def pipeline(
    stages: Sequence[Mapping[str, Num]],
    copies: Sequence[int] | None = None,
    start: Num = 0,
    maximum: Callable[[Num, Num], Num] = max,
    of: Sequence[PeriodBound] = PERIOD_BOUNDS,
) -> PipelineValues:
    """Period P = max over PERIOD_BOUNDS (or the bounds `of`: planner.robust's, one set per scenario),
    latency L = sum of T, one-off O = start + sum copies x O_k, from the stages' values (`stage_values`).
    With copies (integer values only) the `max` bounds read the stage's interval. `maximum` is the larger
    of two values of the number type used."""
    reps = list(copies) if copies is not None else [1] * len(stages)
    bounds: dict[str, Num] = {}
    for b in of:
        each = [
            interval(s["time"], s["serial"], r) if b.value == "time" and r > 1 else s[b.value]
            for s, r in zip_strict(stages, reps)
        ]
        value = each[0]
        for v in each[1:]:
            value = maximum(value, v) if b.combine == "max" else value + v
        bounds[b.name] = value
    period = bounds[of[0].name]
    for b in of[1:]:
        period = maximum(period, bounds[b.name])
    bound = next((b.name for b in of if _same(bounds[b.name], period)), of[0].name)
    latency = sum(s["time"] for s in stages)
    oneoff = start + sum(r * s["oneoff"] for s, r in zip_strict(stages, reps))
    return PipelineValues(period, bound, latency, oneoff, bounds)


def _same(a: Num, b: Num) -> bool:
    return isinstance(a, numbers.Real) and isinstance(b, numbers.Real) and a == b  # not a question for arrays


def per_input(period: Num, latency: Num, oneoff: Num, batch: int) -> Num:
    """Time per input of a batch pushed at once into a fresh pipeline: (O + L + (N - 1) P) / N."""
    return (oneoff + latency + (batch - 1) * period) / batch


# ---------------------------------------------------------------------------------------------------
# The objective.

Objective = Literal["throughput", "latency"]


def objective_weights(objective: Objective, batch: int | None) -> tuple[int, int, int]:
    """(alpha, beta, gamma) of J = alpha P + beta L + gamma O, all integers (planner.costs.Goal):
    throughput              J = P                  (tie-break: least L)
    throughput, batch N     J = (N - 1) P + L + O  (= N x time per input)
    latency                 J = L                  (tie-break: least P)
    latency, batch N        J = N L + O            (one input at a time, one-offs spread over N)"""
    if objective == "throughput":
        return (1, 0, 0) if batch is None else (batch - 1, 1, 1)
    return (0, 1, 0) if batch is None else (0, batch, 1)
