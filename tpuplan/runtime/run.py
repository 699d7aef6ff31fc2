"""Run segments as a pipeline and measure it: the one pipeline run `plan run` and `plan verify` share.

`drive` streams a source through a started pipeline (any runner) and returns what the run measured;
`run_pipeline` does it for ready stages on threads (verify, benchmarks); `run_split` builds the stages of
a split read from disk on a backend and runner, feeds random or real inputs, optionally saves every
output, and reports (no predictions involved).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Final, Literal, TypeVar

import numpy as np
from pydantic import Field

from tpuplan.compat import zip_strict
from tpuplan.planner.plan import Plan, plan_digest
from tpuplan.profiles.docio import StrictModel, path_text
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_COUNT, MAX_PIPELINE_US, Count, Rate, Seconds
from tpuplan.runtime.backends.kinds import Backend, get_backend
from tpuplan.runtime.backends.probe import probe_models
from tpuplan.runtime.backends.registry import InterpreterStage
from tpuplan.runtime.devicemap import assign, per_copy
from tpuplan.runtime.pipeline.base import PipelineBase, StageStats
from tpuplan.runtime.pipeline.runners import DEFAULT_RUNNER, check_runner, default_queue_size, open_pipeline
from tpuplan.runtime.pipeline.stage import Array, StageRunner, StageSource
from tpuplan.runtime.pipeline.threads import Pipeline
from tpuplan.runtime.progress import Progress, ticker
from tpuplan.runtime.split.manifest import LoadedSplit, SegmentManifest, TensorSpec
from tpuplan.runtime.tensors.inputs import InputSpec, open_inputs
from tpuplan.runtime.tensors.outputs import NpzWriter

T = TypeVar("T")
RUN_KIND: Final = "tpuplan.run"
RUN_VERSION: Final = 1


@dataclass(frozen=True)
class PipelineRun:
    """What one pipeline run measured: count, wall and CPU time, per-stage statistics, latencies, and the
    results in input order when they were kept."""

    count: int
    wall_s: float
    cpu_s: float  # host CPU time during the run: this process, plus the stage processes of that runner
    stats: list[StageStats]
    latencies_us: list[float]
    results: list[dict[str, Array]] = field(default_factory=list)


def drive(
    pipe: PipelineBase,
    feeds: Iterable[Mapping[str, Array]],
    *,
    total: int | None = None,
    on_result: Callable[[dict[str, Array]], None] | None = None,
    keep: bool = False,
    progress: Progress | None = None,
) -> PipelineRun:
    """Stream `feeds` through a started pipeline, hand each result on (or keep it), time the run."""
    tick = ticker(progress, "running", total) if progress is not None else None
    results: list[dict[str, Array]] = []
    n = 0
    with pipe:
        start = last = time.perf_counter()
        cpu0 = time.process_time()
        for out in pipe.stream(feeds):
            n += 1
            if on_result is not None:
                on_result(out)
            if keep:
                results.append(out)
            if tick is not None:
                tick(n)
            last = time.perf_counter()
        wall = last - start  # to the last result: stages winding down afterwards are not the run
        cpu = time.process_time() - cpu0
    stage_cpu = getattr(pipe, "stage_cpu_s", None)
    cpu += float(stage_cpu()) if callable(stage_cpu) else 0.0
    return PipelineRun(n, wall, cpu, pipe.stats(), pipe.latencies_us(), results)


def run_pipeline(
    stages: Sequence[StageRunner | Sequence[StageRunner]],
    feeds: Iterable[Mapping[str, Array]],
    *,
    model_outputs: Sequence[str],
    stage_timeout_s: float | None = 60.0,
    queue_size: int = 2,
    keep: bool = True,
    progress: Progress | None = None,
    total: int | None = None,
) -> PipelineRun:
    """Push every feed through ready stages (one thread each, a list for copies), keep the results in order,
    time the run."""
    pipe = Pipeline(stages, model_outputs=model_outputs, queue_size=queue_size, stage_timeout_s=stage_timeout_s)
    return drive(pipe, feeds, total=total, keep=keep, progress=progress)


Us = Annotated[float, Field(ge=0, le=MAX_PIPELINE_US)]  # a measured time in microseconds


class StageTiming(StrictModel):
    index: Count
    device: str = Field(max_length=5000, description="its device, or its copies' devices joined by commas")
    copies: int = Field(1, ge=1, le=64)
    items: Count
    invoke_median_us: Us | None = Field(description="null when the runner does not time its stages")
    invoke_p90_us: Us | None
    invoke_p99_us: Us | None
    wait_in_us: Us | None
    blocked_out_us: Us | None


class RunResult(StrictModel):
    """Measured on this machine: throughput, latency percentiles and per-stage times."""

    kind: Literal["tpuplan.run"] = RUN_KIND
    schema_version: Literal[1] = RUN_VERSION
    backend: str = Field(max_length=100)
    runner: str = Field(DEFAULT_RUNNER, max_length=40, description="threads, processes or pycoral")
    queue_size: int = Field(ge=1, le=1 << 20)
    inputs: int = Field(ge=1, le=MAX_COUNT)
    input_source: str = Field(max_length=5000, description="random (seed, distinct tensors) or the file read")
    outputs_file: str | None = Field(None, max_length=5000, description="where every output was saved (-o)")
    wall_s: Seconds
    throughput_per_s: Rate
    latency_p50_us: Us
    latency_p90_us: Us
    latency_p99_us: Us
    host_cpu_us_per_input: Us = Field(description="CPU time of this host per input, all threads/processes")
    stages: list[StageTiming]


def check_split_matches_plan(manifest: SegmentManifest, plan: Plan, where: str) -> None:
    """Segments and plan must describe the same model cut at the same places with the same copies per
    stage, and when split recorded the plan it was split from, that must be this plan (its reproducible
    part); say which part differs."""
    if manifest.model.sha256 != plan.model.sha256:
        raise TpuplanError(
            f"{where} holds segments of model sha256 {manifest.model.sha256[:12]}, but the plan is for model "
            f"sha256 {plan.model.sha256[:12]}"
        )
    if manifest.cuts != plan.cuts:
        raise TpuplanError(
            f"{where} was split at cuts {manifest.cuts}, but the plan cuts at {plan.cuts}: split again with this plan"
        )
    digest = plan_digest(plan)
    if manifest.plan_sha256 is not None and manifest.plan_sha256 != digest:
        raise TpuplanError(
            f"{where} was split from plan sha256 {manifest.plan_sha256[:12]}, not from this plan "
            f"(sha256 {digest[:12]}): split again with this plan"
        )
    copies, planned = [seg.copies for seg in manifest.segments], [s.copies for s in plan.stages]
    if copies != planned:
        raise TpuplanError(
            f"{where} runs its segments on {copies} devices each, but the plan gives the stages {planned} copies: "
            "split again with this plan"
        )


def check_split_backend(split: LoadedSplit, backend: Backend) -> None:
    """A compiled backend runs the Edge TPU compiler's files, the CPU backend the CPU segments."""
    if backend.compiled != split.compiled:
        kind = "compiled" if backend.compiled else "CPU"
        raise TpuplanError(f"the {backend.name} backend runs {kind} segments; {split.directory} was read for another")


def input_specs(manifest: SegmentManifest) -> list[InputSpec]:
    """The tensors a run must feed (read by a segment, made by none), model inputs first, in model order."""
    produced = {t.name for seg in manifest.segments for t in seg.outputs}
    found: dict[str, InputSpec] = {}
    for seg in manifest.segments:
        for t in seg.inputs:
            if t.name in produced or t.name in found:
                continue
            try:
                dtype = np.dtype(t.dtype)
            except TypeError:
                raise TpuplanError(f"input tensor {t.name!r} is of type {t.dtype}, which cannot be fed") from None
            found[t.name] = InputSpec(t.name, tuple(t.shape), dtype, t.scale, t.zero_point)
    order = {n: i for i, n in enumerate(manifest.model.inputs)}
    return sorted(found.values(), key=lambda s: order.get(s.name, len(order)))


@dataclass(frozen=True)
class RunOptions:
    """How to run a split: runner, queue depth (None: from the tensor sizes), timeout, and where the
    inputs come from (`input_path`, else `inputs` random ones from `seed`) and the outputs go."""

    runner: str = DEFAULT_RUNNER
    inputs: int | None = None
    input_path: Path | None = None
    seed: int = 0
    outputs_path: Path | None = None  # "-": standard output
    overwrite_outputs: bool = False  # replace a file at outputs_path (never one that appears without this)
    queue_size: int | None = None
    stage_timeout_s: float | None = 60.0


def copies_of(split: LoadedSplit) -> list[int]:
    """Devices per segment: a segment the plan replicated runs on that many, taking inputs in turn."""
    return [seg.copies for seg in split.manifest.segments]


def grouped(items: Sequence[T], copies: Sequence[int]) -> list[list[T]]:
    """Consecutive items per stage: copies[k] of them for stage k."""
    ends = list(itertools.accumulate(copies))
    if not ends or ends[-1] != len(items):
        raise TpuplanError(f"{len(items)} runners for {sum(copies)} stage copies")
    return [list(items[e - c : e]) for e, c in zip_strict(ends, copies)]


def build_stages(
    split: LoadedSplit, backend: Backend, devices: Sequence[str | None], *, copies: bool = True
) -> list[list[InterpreterStage]]:
    """The interpreters of each segment of the split, each on its device: one per copy, or with
    `copies=False` only the first copy's (timing a stage alone)."""
    groups = grouped(stage_sources(split, backend, devices), copies_of(split))
    return [
        [
            InterpreterStage(s.name, s.content, where=s.where, backend=backend, device=s.device)
            for s in (g if copies else g[:1])
        ]
        for g in groups
    ]


def stage_sources(split: LoadedSplit, backend: Backend, devices: Sequence[str | None]) -> list[StageSource]:
    """One source per copy of every segment of the split, each on its own device (`devices` holds one per
    copy, in order); probed here, once per segment."""
    probe_models([(split.where(i), data) for i, data in enumerate(split.contents)])
    return [
        StageSource(f"stage{seg.index}", split.contents[seg.index], split.where(seg.index), backend.name, dev)
        for seg, devs in zip_strict(split.manifest.segments, grouped(list(devices), copies_of(split)))
        for dev in devs
    ]


def run_split(
    split: LoadedSplit,
    *,
    backend: str | Backend = "cpu",
    devices: Sequence[str] | None = None,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Push the inputs through the segments of a split, time everything, save the outputs if asked."""
    o = options or RunOptions()
    check_runner(o.runner)
    chosen = get_backend(backend)
    if chosen.simulated:
        raise TpuplanError(
            f"the {chosen.name} backend simulates stage times for plan verify and plan tune; plan run measures a "
            "real run: use cpu or edgetpu"
        )
    check_split_backend(split, chosen)
    manifest = split.manifest
    planned = per_copy([seg.device for seg in manifest.segments], copies_of(split))
    devs = chosen.devices(sum(copies_of(split)), assign(planned, devices) if devices else devices)
    specs = input_specs(manifest)
    source = open_inputs(o.input_path, specs, count=o.inputs, seed=o.seed)
    boundary = max([sum(s.nbytes for s in specs)] + [_bytes(seg.outputs) for seg in manifest.segments])
    queue_size = o.queue_size or default_queue_size(boundary)
    sources = stage_sources(split, chosen, devs)
    writer = (
        NpzWriter(o.outputs_path, manifest.model.outputs, overwrite=o.overwrite_outputs)
        if o.outputs_path is not None
        else None
    )
    try:
        pipe = open_pipeline(
            o.runner,
            sources,
            model_outputs=manifest.model.outputs,
            queue_size=queue_size,
            stage_timeout_s=o.stage_timeout_s,
            copies=copies_of(split),
        )
        run = drive(pipe, source, total=source.count, on_result=writer.add if writer else None, progress=progress)
        if writer is not None:
            writer.commit()
    finally:
        if writer is not None:
            writer.abort()
    return _result(
        run,
        chosen,
        o,
        queue_size,
        source.description,
        [",".join(d or chosen.name for d in g) for g in grouped(devs, copies_of(split))],
    )


def _bytes(tensors: Sequence[TensorSpec]) -> int:
    """Bytes of the tensors crossing a boundary (0 for a type without a fixed size)."""
    total = 0
    for t in tensors:
        try:
            total += int(np.prod(t.shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize
        except TypeError:
            continue
    return total


def _result(
    run: PipelineRun, backend: Backend, o: RunOptions, queue_size: int, source: str, devs: Sequence[str]
) -> RunResult:
    lat = np.asarray(run.latencies_us) if run.latencies_us else np.zeros(1)

    def us(value: float, timed: bool) -> float | None:
        return round(value, 1) if timed else None

    return RunResult(
        backend=backend.name,
        runner=o.runner,
        queue_size=queue_size,
        inputs=run.count,
        input_source=source,
        outputs_file=path_text(o.outputs_path) if o.outputs_path is not None else None,
        wall_s=round(run.wall_s, 4),
        throughput_per_s=round(run.count / max(run.wall_s, 1e-9), 2),
        latency_p50_us=round(float(np.percentile(lat, 50)), 1),
        latency_p90_us=round(float(np.percentile(lat, 90)), 1),
        latency_p99_us=round(float(np.percentile(lat, 99)), 1),
        host_cpu_us_per_input=round(run.cpu_s * 1e6 / max(run.count, 1), 1),
        stages=[
            StageTiming(
                index=i,
                device=devs[i],
                copies=devs[i].count(",") + 1,
                items=s.items,
                invoke_median_us=us(s.median_us, s.timed),
                invoke_p90_us=us(s.p90_us, s.timed),
                invoke_p99_us=us(s.p99_us, s.timed),
                wait_in_us=us(s.wait_in_us, s.timed),
                blocked_out_us=us(s.blocked_out_us, s.timed),
            )
            for i, s in enumerate(run.stats)
        ],
    )
