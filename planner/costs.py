"""What the planner minimises, from the per-stage tables of `tpuplan.profiles.stagecost`.

The objective is the pipeline's period, the time between results in steady state:

    period = max over stages k of stage_time_k(a_k, b_k)

and the latency of one input is the sum of its stage times. Stage k covers ops a_k..b_k on device k.
"""

from __future__ import annotations

from collections.abc import Sequence

from tpuplan.profiles.device import DeviceSpec
from tpuplan.profiles.model import Profile
from tpuplan.profiles.stagecost import StageCostTable, stage_table


def throughput_per_s(bottleneck_us: int) -> float:
    return round(1e6 / max(bottleneck_us, 1), 3)


def stage_tables(profile: Profile, devices: Sequence[DeviceSpec]) -> list[StageCostTable]:
    """One table per stage, built once per distinct device."""
    cache: dict[str, StageCostTable] = {}
    out = []
    for dev in devices:
        key = dev.model_dump_json()
        if key not in cache:
            cache[key] = stage_table(profile, dev)
        out.append(cache[key])
    return out
