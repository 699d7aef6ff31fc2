"""The pipeline runners by name: one place that turns stage sources into a running pipeline.

- threads: one Python thread per stage in this process (`runtime.pipeline.threads`), the default;
- processes: one process per stage, tensors handed over in shared memory (`runtime.pipeline.processes`), so that
  the host work of different stages overlaps on a multi-core host;
- pycoral: Google pycoral's C++ PipelinedModelRunner (`runtime.pipeline.pycoral`), where installed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Final

from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.backends.registry import InterpreterStage
from tpuplan.runtime.pipeline.base import PipelineBase
from tpuplan.runtime.pipeline.processes import ProcessPipeline
from tpuplan.runtime.pipeline.pycoral import PycoralPipeline
from tpuplan.runtime.pipeline.stage import StageSource
from tpuplan.runtime.pipeline.threads import Pipeline

RUNNERS: Final = ("threads", "processes", "pycoral")
DEFAULT_RUNNER: Final = "threads"
QUEUE_BUDGET_BYTES = 16 << 20  # per stage input: the default queue holds about this many bytes of tensors
MAX_QUEUE = 32


def check_runner(name: str) -> str:
    if name not in RUNNERS:
        raise TpuplanError(f"unknown runner {name!r} (known: {', '.join(RUNNERS)})")
    return name


def default_queue_size(boundary_bytes: int) -> int:
    """Deep queues let a stage take several inputs per wake-up (fewer thread switches per input), bounded
    by memory: about QUEUE_BUDGET_BYTES of the largest boundary tensor set, between 2 and 32 inputs."""
    return max(2, min(MAX_QUEUE, QUEUE_BUDGET_BYTES // max(1, boundary_bytes)))


def open_pipeline(
    runner: str,
    sources: Sequence[StageSource],
    *,
    model_outputs: Sequence[str],
    queue_size: int,
    stage_timeout_s: float | None,
    copies: Sequence[int] | None = None,
) -> PipelineBase:
    """A started pipeline of `runner` over `sources` (already probed; copies[k] consecutive ones are the
    copies of stage k, one each by default); close it with `with`."""
    check_runner(runner)
    counts = list(copies) if copies is not None else [1] * len(sources)
    if sum(counts) != len(sources):
        raise TpuplanError(f"{len(sources)} stage sources for {sum(counts)} stage copies")
    if runner != "threads" and max(counts) > 1:
        raise TpuplanError(
            f"stages with copies run on the threads runner, not {runner} (the split's plan gives copies {counts})"
        )
    if runner == "processes":
        return ProcessPipeline(
            sources, model_outputs=model_outputs, queue_size=queue_size, stage_timeout_s=stage_timeout_s
        )
    if runner == "pycoral":  # pycoral itself is imported only now, by PycoralPipeline
        return PycoralPipeline(
            sources, model_outputs=model_outputs, queue_size=queue_size, stage_timeout_s=stage_timeout_s
        )
    stages = [InterpreterStage(s.name, s.content, where=s.where, backend=s.backend, device=s.device) for s in sources]
    ends = list(itertools.accumulate(counts))
    groups = [stages[e - c : e] for e, c in zip_strict(ends, counts)]
    try:
        return Pipeline(groups, model_outputs=model_outputs, queue_size=queue_size, stage_timeout_s=stage_timeout_s)
    except BaseException:
        for stage in stages:
            stage.close()
        raise
