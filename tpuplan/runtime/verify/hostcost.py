"""Our own runner's host cost on this machine: what the `tpuplan` host preset models, measured.

Per stage and input the runner does host work outside the stages' own run (queues, hand-offs, routing),
`stage_us` in `profiles.pricing.host`; with stages that do nothing, the pipeline's time per input is that work
alone. Measured with K pass-through stages and with one, the extra wall time over the extra CPU time
says how much of the added stages' work overlaps (`serialized`: 1 = none does, as under Python's
interpreter lock or on a single core; 0 = all of it, on idle cores). Differences cancel the fixed cost
of feeding inputs and taking results, which one stage alone would otherwise be charged with.
`plan verify` reports these numbers for the host it runs on, next to the same quantity seen with the
real stages, so `plan calibrate` can fit the preset from verify reports; benchmarks/runtime_overhead.py
measures them over 1, 2, 4 and 8 stages.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Sequence

import numpy as np
from pydantic import Field

from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.limits import MAX_COUNT, MAX_PIPELINE_US, Real
from tpuplan.runtime.backends.registry import InterpreterStage
from tpuplan.runtime.pipeline.stage import Array
from tpuplan.runtime.pipeline.threads import Pipeline
from tpuplan.runtime.run import PipelineRun, drive
from tpuplan.runtime.tensors.inputs import InputSpec, random_input

EMPTY_ITEMS = 400
REPEATS = 3  # the best of a few short runs: a busy machine only ever makes a run slower


class PassStage:
    """A stage that does no work: it hands its input on by reference (the runner's own cost remains)."""

    def __init__(self, name: str, src: str, dst: str) -> None:
        self.name, self.input_names, self.output_names = name, [src], [dst]

    def run(self, inputs: dict[str, Array]) -> dict[str, Array]:
        return {self.output_names[0]: inputs[self.input_names[0]]}

    def run_arrays(self, values: list[Array]) -> list[Array]:
        return values

    def close(self) -> None:
        pass


def empty_period_us(
    k: int, *, items: int = EMPTY_ITEMS, queue_size: int = 2, repeats: int = REPEATS
) -> tuple[float, float]:
    """Wall and CPU time per input of K pass-through stages on the threads runner (the run of least wall
    time among `repeats`)."""
    feed = {"t0": np.zeros(4, dtype=np.int8)}
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        stages = [PassStage(f"pass{i}", f"t{i}", f"t{i + 1}") for i in range(k)]
        pipe = Pipeline(stages, model_outputs=[f"t{k}"], queue_size=queue_size)
        run = drive(pipe, (feed for _ in range(items)))
        best = min(best, (run.wall_s * 1e6 / items, run.cpu_s * 1e6 / items))
    return best


class RunnerHost(StrictModel):
    """Measured on this machine: our threads runner's host time per input and stage (see runtime.verify.hostcost)."""

    runner: str = Field("threads", max_length=40)
    stages: int = Field(ge=1, le=MAX_COUNT)
    empty_stage_us: float = Field(
        ge=0, le=MAX_PIPELINE_US, description="wall time per input and stage with K pass-through stages"
    )
    empty_single_stage_us: float = Field(
        ge=0, le=MAX_PIPELINE_US, description="wall time per input with one pass-through stage"
    )
    serialized: float | None = Field(
        ge=0,
        le=1,
        description="(wall - wall of one) / (CPU - CPU of one) per input, K "
        "against one empty stage, in 0..1: 1 = the stages' host work never overlaps",
    )
    real_stage_us: Real = Field(
        description="(measured period - sum of the stage times alone) / K, real stages; 0 when the stages "
        "overlapped (a period shorter than that sum: more than one core at work), never negative"
    )
    real_stage_cpu_us: Real = Field(
        description="(host CPU time per input - sum of the stage times alone) / K; 0 rather than negative"
    )
    cpu_count: int = Field(ge=1, le=1 << 20)
    machine: str = Field(max_length=500)


def serialized_share(one: tuple[float, float], many: tuple[float, float]) -> float | None:
    """How much of the host work that more stages add also adds to the wall time (0..1), from (wall, CPU)
    per input with one stage and with more; None when more stages add no CPU time to compare with."""
    extra_cpu = many[1] - one[1]
    if extra_cpu <= 0:
        return None
    return round(min(1.0, max(0.0, (many[0] - one[0]) / extra_cpu)), 3)


def overlapped_us(real: PipelineRun, alone_us: Sequence[float]) -> float:
    """How much shorter the measured period was than the sum of the stages timed alone (0 if not):
    the stages ran at once on several cores, so no host cost of the runner can be read from it."""
    return max(0.0, float(sum(alone_us)) - real.wall_s * 1e6 / max(real.count, 1))


def runner_host(k: int, real: PipelineRun, alone_us: Sequence[float], queue_size: int = 2) -> RunnerHost:
    """The runner's numbers on this host: empty stages measured now (same queue depth as the real run),
    real stages from `real`."""
    one = empty_period_us(1, queue_size=queue_size)
    many = empty_period_us(k, queue_size=queue_size) if k > 1 else one
    n = max(real.count, 1)
    period, cpu, work = real.wall_s * 1e6 / n, real.cpu_s * 1e6 / n, float(sum(alone_us))
    return RunnerHost(
        stages=k,
        empty_stage_us=round(many[0] / k, 2),
        empty_single_stage_us=round(one[0], 2),
        serialized=serialized_share(one, many) if k > 1 else None,
        real_stage_us=round(max(0.0, period - work) / k, 2),  # stages that overlapped cost no extra time
        real_stage_cpu_us=round(max(0.0, cpu - work) / k, 2),
        cpu_count=os.cpu_count() or 1,
        machine=f"{platform.machine()} {platform.system()} {platform.release()}, Python {platform.python_version()}",
    )


def effective_cores(model_content: bytes, seconds: float = 0.5) -> float:
    """How many interpreters make progress at once here: invokes/s of two threads over one thread."""

    def rate(n_threads: int) -> float:
        stages = [InterpreterStage(f"probe{i}", model_content) for i in range(n_threads)]
        feed = random_input([InputSpec.from_details(d) for d in stages[0].input_details()], np.random.default_rng(0))
        for s in stages:
            s.run(feed)
        counts = [0] * n_threads
        stop = time.perf_counter() + seconds

        def loop(k: int) -> None:
            while time.perf_counter() < stop:
                stages[k].run(feed)
                counts[k] += 1

        threads = [threading.Thread(target=loop, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts) / seconds

    one = rate(1)
    two = rate(2)
    return round(max(1.0, min(2.0, two / max(one, 1e-9))), 2)
