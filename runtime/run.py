"""Run segments as a pipeline and measure it: the one pipeline run `plan run` and `plan verify` share.

`run_pipeline` takes ready stages and inputs and returns what a run measured; `run_split` builds the
stages of a split read from disk on a backend and reports (no predictions involved).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from tpuplan.planner.plan import Plan
from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.backends import Backend, InterpreterStage, get_backend, random_inputs
from tpuplan.runtime.manifest import LoadedSplit, SegmentManifest
from tpuplan.runtime.pipeline import Pipeline, StageStats
from tpuplan.runtime.probe import probe_models
from tpuplan.runtime.stage import Array, StageRunner


@dataclass(frozen=True)
class PipelineRun:
    """What one pipeline run measured: the results in input order, wall time, per-stage statistics."""

    results: list[dict[str, Array]]
    wall_s: float
    stats: list[StageStats]
    latencies_us: list[float]


def run_pipeline(stages: Sequence[StageRunner], feeds: Iterable[Mapping[str, Array]], *,
                 model_outputs: Sequence[str], stage_timeout_s: float | None = 60.0,
                 queue_size: int = 2) -> PipelineRun:
    """Push every feed through the stages (one thread each), collect all results, time the whole run."""
    start = time.perf_counter()
    with Pipeline(stages, model_outputs=model_outputs, queue_size=queue_size,
                  stage_timeout_s=stage_timeout_s) as pipe:
        results = pipe.run_all(feeds)
        wall = time.perf_counter() - start
        return PipelineRun(results, wall, pipe.stats(), pipe.latencies_us())


def build_stages(split: LoadedSplit, backend: Backend, devices: Sequence[str | None]) -> list[InterpreterStage]:
    """One interpreter per segment of the split, on its device."""
    return [
        InterpreterStage(f"stage{seg.index}", split.contents[seg.index], where=split.where(seg.index),
                         backend=backend, device=devices[seg.index])
        for seg in split.manifest.segments
    ]


class StageTiming(StrictModel):
    index: int = Field(ge=0)
    device: str
    items: int = Field(ge=0)
    invoke_median_us: float
    invoke_p90_us: float
    invoke_p99_us: float
    wait_in_us: float
    blocked_out_us: float


class RunResult(StrictModel):
    """Measured on this machine: throughput, latency percentiles and per-stage times."""

    backend: str
    inputs: int = Field(ge=1)
    wall_s: float
    throughput_per_s: float
    latency_p50_us: float
    latency_p90_us: float
    latency_p99_us: float
    stages: list[StageTiming]


def check_split_matches_plan(manifest: SegmentManifest, plan: Plan, where: str) -> None:
    """Segments and plan must describe the same model cut at the same places; say which part differs."""
    if manifest.model.sha256 != plan.model.sha256:
        raise TpuplanError(
            f"{where} holds segments of model sha256 {manifest.model.sha256[:12]}, but the plan is for model "
            f"sha256 {plan.model.sha256[:12]}"
        )
    if manifest.cuts != plan.cuts:
        raise TpuplanError(f"{where} was split at cuts {manifest.cuts}, but the plan cuts at {plan.cuts}: "
                           "split again with this plan")


def external_inputs(stages: Sequence[InterpreterStage]) -> list[dict[str, Any]]:
    """Input details of the tensors no stage produces: what the caller feeds."""
    produced = {n for st in stages for n in st.output_names}
    needed: dict[str, dict[str, Any]] = {}
    for st in stages:
        for d in st.input_details():
            if str(d["name"]) not in produced:
                needed.setdefault(str(d["name"]), d)
    return list(needed.values())


def run_split(split: LoadedSplit, *, backend: str | Backend = "cpu", devices: Sequence[str] | None = None,
              inputs: int = 100, seed: int = 0, stage_timeout_s: float | None = 60.0) -> RunResult:
    """Push `inputs` random inputs through the segments of a split and time everything."""
    if inputs < 1:
        raise TpuplanError("inputs must be at least 1")
    chosen = get_backend(backend)
    if chosen.compiled != split.compiled:
        raise TpuplanError(f"the {chosen.name} backend runs {'compiled' if chosen.compiled else 'CPU'} segments")
    k = len(split.manifest.segments)
    devs = chosen.devices(k, devices)
    probe_models([(split.where(i), data) for i, data in enumerate(split.contents)])
    stages = build_stages(split, chosen, devs)
    rng = np.random.default_rng(seed)
    details = external_inputs(stages)
    feeds = [random_inputs(details, rng) for _ in range(inputs)]
    run = run_pipeline(stages, feeds, model_outputs=split.manifest.model.outputs, stage_timeout_s=stage_timeout_s)
    lat = np.asarray(run.latencies_us)
    return RunResult(
        backend=chosen.name,
        inputs=inputs,
        wall_s=round(run.wall_s, 4),
        throughput_per_s=round(inputs / run.wall_s, 2),
        latency_p50_us=round(float(np.percentile(lat, 50)), 1),
        latency_p90_us=round(float(np.percentile(lat, 90)), 1),
        latency_p99_us=round(float(np.percentile(lat, 99)), 1),
        stages=[
            StageTiming(index=i, device=devs[i] or "cpu", items=s.items, invoke_median_us=round(s.median_us, 1),
                        invoke_p90_us=round(s.p90_us, 1), invoke_p99_us=round(s.p99_us, 1),
                        wait_in_us=round(s.wait_in_us, 1), blocked_out_us=round(s.blocked_out_us, 1))
            for i, s in enumerate(run.stats)
        ],
    )
