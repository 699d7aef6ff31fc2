"""What a plan costs and what the planner minimises: the cost formula's pipeline and objective
(`profiles.pricing.formula`), read from the stage tables of `profiles.pricing.tables`.

    period P = max over formula.PERIOD_BOUNDS    latency L = sum of T    one-off O = start + sum O_k
    J = alpha P + beta L + gamma O              (pipeline_formula.objective_weights)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_BATCH, MAX_OBJECTIVE, describe
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.formula import PERIOD_BOUNDS, Num, PeriodBound
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.profiles.pricing.pipeline_formula import Objective, objective_weights
from tpuplan.profiles.pricing.plancost import PipelineCost, pipeline_cost
from tpuplan.profiles.pricing.tables import StageCostTable, stage_table

__all__ = ["Goal", "Objective", "Totals", "check_exact", "stage_tables", "throughput_per_s", "totals"]


@dataclass(frozen=True)
class Goal:
    """The objective and the batch size that one-off costs are spread over (None: steady state); its
    weights are the cost formula's (`pipeline_formula.objective_weights`)."""

    objective: Objective = "throughput"
    batch: int | None = None

    def __post_init__(self) -> None:
        if self.objective not in ("throughput", "latency"):
            raise TpuplanError(f"unknown objective {self.objective!r} (use throughput or latency)")
        if self.batch is not None and not 1 <= self.batch <= MAX_BATCH:
            raise TpuplanError(f"the batch must be between 1 and {MAX_BATCH:,} (got {self.batch})")

    @property
    def weights(self) -> tuple[int, int, int]:
        """(alpha, beta, gamma) of J = alpha P + beta L + gamma O."""
        return objective_weights(self.objective, self.batch)

    def objective_of(self, period: Num, latency: Num, oneoff: Num) -> Num:
        alpha, beta, gamma = self.weights
        return alpha * period + beta * latency + gamma * oneoff

    def secondary_of(self, period: Num, latency: Num) -> Num:
        """What breaks ties among plans of equal J: the latency for a throughput goal, else the period."""
        return latency if self.objective == "throughput" else period


@dataclass(frozen=True)
class Totals(PipelineCost):
    """A plan's pipeline numbers and its objective J."""

    objective: int


def totals(
    tables: Sequence[StageCostTable],
    cuts: Sequence[int],
    goal: Goal,
    copies: Sequence[int] | None = None,
    bounds: Sequence[PeriodBound] = PERIOD_BOUNDS,
) -> Totals:
    """Period, latency, one-off cost and objective of the plan `cuts` (stage k on tables[k], with
    copies[k] devices taking its inputs in turn; None: one each), the period over `bounds`."""
    cost = pipeline_cost(tables, cuts, copies, bounds)
    objective = int(goal.objective_of(cost.period_us, cost.latency_us, cost.oneoff_us))
    if objective > MAX_OBJECTIVE:
        _refuse(tables, goal, objective)
    return Totals(cost.period_us, cost.latency_us, cost.oneoff_us, cost.bound, cost.bounds, objective)


def check_exact(tables: Sequence[StageCostTable], goal: Goal, stages: int | None = None, copies: int = 1) -> None:
    """Refuse tables whose objective could pass MAX_OBJECTIVE (2^53 us) for some plan of `stages` stages
    (default: one per table) over the stages they priced: the search adds it up in int64 and CP-SAT
    reports it as a double, both exact only below that."""
    k = len(tables) if stages is None else stages

    def top(name: str) -> int:
        return max(t.top(name) for t in tables)

    period = max(top(b.value) * (k if b.combine == "sum" else 1) for b in PERIOD_BOUNDS)
    bound = goal.objective_of(period, k * top("time"), tables[0].start_us + k * copies * top("oneoff"))
    if bound > MAX_OBJECTIVE:
        _refuse(tables, goal, int(bound))


def _refuse(tables: Sequence[StageCostTable], goal: Goal, objective: int) -> NoReturn:
    pricer = tables[0].pricer
    where = f"{pricer.where}: " if pricer is not None else ""
    batch = f" over a batch of {goal.batch:,}" if goal.batch else ""
    raise TpuplanError(
        f"{where}the {goal.objective} objective{batch} could reach {describe(objective)} us over {len(tables)} "
        f"stage(s), beyond the {MAX_OBJECTIVE:,} us the planner computes exactly; use a smaller batch, or check "
        "the model's sizes and the device's costs"
    )


def throughput_per_s(period_us: int) -> float:
    return round(1e6 / max(period_us, 1), 3)


def stage_tables(profile: Profile, devices: Sequence[DeviceSpec], host: HostSpec) -> list[StageCostTable]:
    """One table per stage, built once per distinct device."""
    cache: dict[str, StageCostTable] = {}
    out = []
    for dev in devices:
        key = dev.model_dump_json()
        if key not in cache:
            cache[key] = stage_table(profile, dev, host)
        out.append(cache[key])
    return out
