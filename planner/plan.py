"""The Plan document: one contiguous segment of ops per Edge TPU, with every predicted number.

Everything here is priced by `StageCostTable.stage_parts`, the single definition of a stage's time,
so a plan from the solver, from a baseline or from `--cuts` is comparable number for number.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

from pydantic import Field

from tpuplan.planner.costs import stage_tables, throughput_per_s
from tpuplan.planner.reference import fewest_onchip_stages
from tpuplan.profiles.device import DeviceSpec
from tpuplan.profiles.docio import StrictModel, dump_json, load_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import ModelRef, Profile
from tpuplan.profiles.stagecost import StageCostTable
from tpuplan.profiles.tflite import sha256_of

PLAN_KIND: Final = "tpuplan.plan"
PLAN_VERSION: Final = 1

Status = Literal["OPTIMAL", "FEASIBLE", "EVALUATED", "REFERENCE"]


class StagePlan(StrictModel):
    """One pipeline stage: ops first_op..last_op on one device."""

    index: int = Field(ge=0)
    device: str
    first_op: int = Field(ge=0)
    last_op: int = Field(ge=0)
    n_ops: int = Field(ge=1)
    param_bytes: int = Field(ge=0, description="parameter bytes as stored in the model")
    predicted_onchip_bytes: int = Field(ge=0, description="cached-layout bytes the compiler keeps on chip")
    predicted_offchip_bytes: int = Field(ge=0, description="cached-layout bytes streamed every inference")
    bytes_in: int = Field(ge=0, description="activation bytes entering the stage over the host link")
    bytes_out: int = Field(ge=0, description="activation bytes leaving the stage over the host link")
    predicted_us: int
    predicted_compute_us: int
    predicted_spill_us: int = Field(ge=0)
    predicted_link_us: int = Field(ge=0)
    predicted_overhead_us: int = Field(ge=0)
    fits_on_chip: bool


class SolverParameters(StrictModel):
    workers: int = Field(ge=1)
    time_limit_s: float | None = None
    seed: int = 0
    allow_spill: bool = False


class SolverInfo(StrictModel):
    """How the plan was found and what is proven about it (objective = bottleneck in us)."""

    status: Status
    objective: int
    best_bound: int
    wall_time_s: float = Field(ge=0)
    parameters: SolverParameters
    proven_optimal: bool
    note: str = ""


class AutoRow(StrictModel):
    """One row of `--tpus auto`: what K TPUs would give."""

    tpus: int = Field(ge=1)
    predicted_bottleneck_us: int
    predicted_throughput_per_s: float
    gain_vs_previous: float | None = Field(None, description="throughput ratio vs K-1 TPUs")
    fits_on_chip: bool
    proven_optimal: bool


class Plan(StrictModel):
    kind: Literal["tpuplan.plan"] = PLAN_KIND
    schema_version: Literal[1] = PLAN_VERSION
    model: ModelRef
    profile_source: Literal["static", "measured"]
    n_ops: int = Field(ge=1)
    tpus: int = Field(ge=1)
    devices: list[DeviceSpec] = Field(description="one full device spec per stage")
    cuts: list[int] = Field(description="stage k ends at op cuts[k]; the last stage ends at the last op")
    stages: list[StagePlan]
    predicted_bottleneck_us: int
    predicted_throughput_per_s: float
    predicted_latency_us: int = Field(description="one input through every stage, no overlap")
    fits_on_chip: bool
    tpus_needed_on_chip: int | None = Field(
        None, description="fewest TPUs keeping every parameter on chip (None: impossible)"
    )
    solver: SolverInfo
    auto: list[AutoRow] | None = None


def load_plan(path: Path) -> Plan:
    return load_doc(Path(path), Plan, kind=PLAN_KIND, version=PLAN_VERSION)


def stable_json(plan: Plan) -> str:
    """The plan's JSON without the facts that vary between runs (wall time, worker count)."""
    params = plan.solver.parameters.model_copy(update={"workers": 1})
    solver = plan.solver.model_copy(update={"wall_time_s": 0.0, "parameters": params})
    return dump_json(plan.model_copy(update={"solver": solver}))


def plan_digest(plan: Plan) -> str:
    """sha256 of the plan's canonical JSON: what `plan solve -o` wrote, so it equals the file's sha256."""
    return hashlib.sha256(dump_json(plan).encode()).hexdigest()


def expand_devices(profile: Profile, devices: Sequence[DeviceSpec] | None, k: int) -> list[DeviceSpec]:
    """One device per stage: none = the profile's, one = the same for all, else exactly k."""
    if not devices:
        return [profile.device] * k
    if len(devices) == 1:
        return [devices[0]] * k
    if len(devices) != k:
        raise TpuplanError(f"{len(devices)} devices given for {k} TPUs (give one for all, or one per TPU)")
    return list(devices)


def check_k(profile: Profile, k: int) -> None:
    n = len(profile.ops)
    if k < 1:
        raise TpuplanError(f"the number of TPUs must be at least 1 (got {k})")
    if k > n:
        raise TpuplanError(f"{k} TPUs are more than the {n} ops of the model (each TPU needs an op)")


def check_cuts(cuts: Sequence[int], n: int, k: int) -> list[int]:
    """Validate a cut list: k-1 strictly increasing ops in 0..n-2."""
    cuts = [int(c) for c in cuts]
    if len(cuts) != k - 1:
        raise TpuplanError(f"{len(cuts)} cuts given for {k} TPUs (need {k - 1})")
    for c in cuts:
        if not 0 <= c <= n - 2:
            raise TpuplanError(f"cut {c} is out of range (cuts are ops 0..{n - 2} of {n})")
    if any(b <= a for a, b in itertools.pairwise(cuts)):
        raise TpuplanError(f"cuts must be strictly increasing (got {','.join(map(str, cuts))})")
    return cuts


def check_profile_matches(profile: Profile, model: bytes, where: str) -> None:
    """Refuse a profile made from another model than the one given (the model's bytes, from `where`)."""
    digest = sha256_of(model)
    if digest != profile.model.sha256:
        raise TpuplanError(
            f"{where}: the profile is for another model ({profile.model.path}, "
            f"sha256 {profile.model.sha256[:12]} != {digest[:12]})"
        )


def stage_plans(tables: Sequence[StageCostTable], cuts: Sequence[int]) -> list[StagePlan]:
    n = tables[0].n
    stages = []
    a = 0
    for i, b in enumerate([*cuts, n - 1]):
        t = tables[i]
        p = t.stage_parts(a, b)
        stages.append(
            StagePlan(
                index=i,
                device=t.device_name,
                first_op=a,
                last_op=b,
                n_ops=b - a + 1,
                param_bytes=p["param_bytes"],
                predicted_onchip_bytes=p["onchip_bytes"],
                predicted_offchip_bytes=p["offchip_bytes"],
                bytes_in=p["bytes_in"],
                bytes_out=p["bytes_out"],
                predicted_us=p["total_us"],
                predicted_compute_us=p["compute_us"],
                predicted_spill_us=p["spill_us"],
                predicted_link_us=p["link_us"],
                predicted_overhead_us=p["overhead_us"],
                fits_on_chip=t.fits_on_chip(a, b),
            )
        )
        a = b + 1
    return stages


def build_plan(
    profile: Profile,
    devices: Sequence[DeviceSpec],
    tables: Sequence[StageCostTable],
    cuts: Sequence[int],
    solver: SolverInfo,
    *,
    tpus_needed_on_chip: int | None,
) -> Plan:
    """Assemble the document from a cut list already checked against the tables."""
    stages = stage_plans(tables, cuts)
    bottleneck = max(s.predicted_us for s in stages)
    return Plan(
        model=profile.model,
        profile_source=profile.source,
        n_ops=len(profile.ops),
        tpus=len(stages),
        devices=list(devices),
        cuts=list(cuts),
        stages=stages,
        predicted_bottleneck_us=bottleneck,
        predicted_throughput_per_s=throughput_per_s(bottleneck),
        predicted_latency_us=sum(s.predicted_us for s in stages),
        fits_on_chip=all(s.fits_on_chip for s in stages),
        tpus_needed_on_chip=tpus_needed_on_chip,
        solver=solver,
    )


def evaluate(profile: Profile, devices: Sequence[DeviceSpec] | None, cuts: Sequence[int]) -> Plan:
    """Price a given segmentation (status EVALUATED): what `--cuts` and the baselines report."""
    k = len(cuts) + 1
    check_k(profile, k)
    cuts = check_cuts(cuts, len(profile.ops), k)
    devs = expand_devices(profile, devices, k)
    tables = stage_tables(profile, devs)
    stages = stage_plans(tables, cuts)
    bottleneck = max(s.predicted_us for s in stages)
    info = SolverInfo(
        status="EVALUATED",
        objective=bottleneck,
        best_bound=bottleneck,
        wall_time_s=0.0,
        parameters=SolverParameters(workers=1, allow_spill=True),
        proven_optimal=False,
        note="cuts given by the user, priced, not optimised",
    )
    return build_plan(profile, devs, tables, cuts, info, tpus_needed_on_chip=fewest_onchip_stages(tables))
