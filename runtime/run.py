"""`plan run`: run a split directory as a pipeline and measure it (no predictions involved)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from profiles.docio import read_bytes
from profiles.errors import TpuplanError
from runtime.backends import InterpreterStage, random_inputs
from runtime.edgetpu import parse_device, require_tpus
from runtime.manifest import SegmentManifest, load_manifest, segment_path
from runtime.pipeline import Pipeline
from runtime.probe import probe_models


class StageTiming(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int
    device: str
    items: int
    invoke_median_us: float
    invoke_p90_us: float
    invoke_p99_us: float
    wait_in_us: float
    blocked_out_us: float


class RunResult(BaseModel):
    """Measured on this machine: throughput, latency percentiles and per-stage times."""

    model_config = ConfigDict(extra="forbid")
    backend: Literal["cpu", "edgetpu"]
    inputs: int
    wall_s: float
    throughput_per_s: float
    latency_p50_us: float
    latency_p90_us: float
    latency_p99_us: float
    stages: list[StageTiming]


def _devices(backend: str, devices: list[str] | None, k: int) -> list[str | None]:
    if backend == "cpu":
        if devices:
            raise TpuplanError("--devices applies to the edgetpu backend only")
        return [None] * k
    if backend != "edgetpu":
        raise TpuplanError(f"unknown backend {backend!r} (use cpu or edgetpu)")
    chosen = [parse_device(d) for d in devices] if devices else require_tpus(k)
    if len(chosen) != k:
        raise TpuplanError(f"{k} segments need {k} devices, got {len(chosen)}: {', '.join(chosen)}")
    return list(chosen)


def check_split_matches_plan(manifest: SegmentManifest, directory: Path, plan_path: Path) -> None:
    """Segments and plan must describe the same model cut at the same places; say which part differs."""
    from planner.plan import load_plan

    plan = load_plan(plan_path)
    if manifest.model.sha256 != plan.model.sha256:
        raise TpuplanError(
            f"{directory} holds segments of model sha256 {manifest.model.sha256[:12]}, but {plan_path} is "
            f"a plan for model sha256 {plan.model.sha256[:12]}"
        )
    if manifest.cuts != plan.cuts:
        raise TpuplanError(
            f"{directory} was split at cuts {manifest.cuts}, but {plan_path} cuts at {plan.cuts}: "
            f"split again with `plan split MODEL {plan_path}`"
        )


def run_split(
    directory: Path,
    *,
    plan: Path | None = None,
    backend: str = "cpu",
    devices: list[str] | None = None,
    inputs: int = 100,
    seed: int = 0,
    stage_timeout_s: float | None = 60.0,
) -> RunResult:
    """Push `inputs` random inputs through the segments of `directory` and time everything; with
    `plan`, first check that the segments are that plan's."""
    if inputs < 1:
        raise TpuplanError("--inputs must be at least 1")
    manifest = load_manifest(Path(directory))
    if plan is not None:
        check_split_matches_plan(manifest, Path(directory), plan)
    k = len(manifest.segments)
    chosen = _devices(backend, devices, k)
    compiled = backend == "edgetpu"
    paths = [segment_path(Path(directory), seg, compiled=compiled) for seg in manifest.segments]
    contents = [read_bytes(p, what="segment file") for p in paths]
    probe_models([(str(p), data) for p, data in zip(paths, contents, strict=True)])
    stages = [
        InterpreterStage(f"stage{seg.index}", path=paths[seg.index], content=contents[seg.index],
                         device=chosen[seg.index])
        for seg in manifest.segments
    ]
    produced = {t.name for seg in manifest.segments for t in seg.outputs}
    model_outputs = manifest.model.outputs
    rng = np.random.default_rng(seed)
    needed: dict[str, dict[str, Any]] = {}
    for st in stages:
        for d in st.input_details():
            if str(d["name"]) not in produced:
                needed.setdefault(str(d["name"]), d)
    feeds = [random_inputs(list(needed.values()), rng) for _ in range(inputs)]
    start = time.perf_counter()
    with Pipeline(stages, model_outputs=model_outputs, stage_timeout_s=stage_timeout_s) as pipe:
        pipe.run_all(feeds)
        wall = time.perf_counter() - start
        stats = pipe.stats()
        lat = np.asarray(pipe.latencies_us())
    return RunResult(
        backend=backend,  # type: ignore[arg-type]
        inputs=inputs,
        wall_s=round(wall, 4),
        throughput_per_s=round(inputs / wall, 2),
        latency_p50_us=round(float(np.percentile(lat, 50)), 1),
        latency_p90_us=round(float(np.percentile(lat, 90)), 1),
        latency_p99_us=round(float(np.percentile(lat, 99)), 1),
        stages=[
            StageTiming(index=i, device=chosen[i] or "cpu", items=s.items, invoke_median_us=round(s.median_us, 1),
                        invoke_p90_us=round(s.p90_us, 1), invoke_p99_us=round(s.p99_us, 1),
                        wait_in_us=round(s.wait_in_us, 1), blocked_out_us=round(s.blocked_out_us, 1))
            for i, s in enumerate(stats)
        ],
    )

