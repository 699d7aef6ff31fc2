"""What a plan costs and what the planner minimises, from the stage tables of `tpuplan.profiles.pricing.stagecost`.

For stages k = 1..K with stage time T_k, serialized share S_k, shared-bus time V_k and one-off O_k:

    period      P = max( max_k T_k,  sum_k S_k,  sum_k V_k )      time between results, steady state
    latency     L = sum_k T_k                                      one input through every stage
    one-off     O = start_us + sum_k O_k                           once per run (start-up, uploads)
    batch of N  W_N = (O + L + (N - 1) P) / N                      time per input, N inputs pushed at once

Objectives, all as one integer  J = alpha P + beta L + gamma O  (the planner minimises J):
    throughput              J = P                  (tie-break: least L)
    throughput, batch N     J = (N - 1) P + L + O  (= N W_N)
    latency                 J = L                  (tie-break: least P)
    latency, batch N        J = N L + O            (one input at a time, one-offs spread over N)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NoReturn

from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_BATCH, MAX_OBJECTIVE, describe
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.profiles.pricing.stagecost import PipelineCost, StageCostTable, pipeline_cost, stage_table, start_us

Objective = Literal["throughput", "latency"]


@dataclass(frozen=True)
class Goal:
    """The objective and the batch size that one-off costs are spread over (None: steady state)."""

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
        n = self.batch
        if self.objective == "throughput":
            return (1, 0, 0) if n is None else (n - 1, 1, 1)
        return (0, 1, 0) if n is None else (0, n, 1)


@dataclass(frozen=True)
class Totals(PipelineCost):
    """A plan's pipeline numbers and its objective J."""

    objective: int


def totals(
    tables: Sequence[StageCostTable], cuts: Sequence[int], goal: Goal, copies: Sequence[int] | None = None
) -> Totals:
    """Period, latency, one-off cost and objective of the plan `cuts` (stage k on tables[k], with
    copies[k] devices taking its inputs in turn; None: one each)."""
    cost = pipeline_cost(tables, cuts, copies)
    alpha, beta, gamma = goal.weights
    objective = alpha * cost.period_us + beta * cost.latency_us + gamma * cost.oneoff_us
    if objective > MAX_OBJECTIVE:
        _refuse(tables, goal, objective)
    return Totals(cost.period_us, cost.latency_us, cost.oneoff_us, cost.bound, objective)


def check_exact(tables: Sequence[StageCostTable], goal: Goal) -> None:
    """Refuse, before any search, tables whose objective could pass MAX_OBJECTIVE (2^53 us) for some cut
    list: the reference adds it up in int64 and CP-SAT reports it as a double, both exact only below that."""
    k = len(tables)
    top = {
        key: max(int(getattr(t, key).max(initial=0)) for t in tables)
        for key in ("time_us", "serial_us", "bus_us", "oneoff_us")
    }
    period = max(top["time_us"], k * top["serial_us"], k * top["bus_us"])
    alpha, beta, gamma = goal.weights
    bound = alpha * period + beta * k * top["time_us"] + gamma * (start_us(tables) + k * top["oneoff_us"])
    if bound > MAX_OBJECTIVE:
        _refuse(tables, goal, bound)


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
