"""The pipeline figures of a verify on a SIMULATED device (`runtime.backends.simulated`).

The stages really run (on the CPU, for their outputs), but their times are the simulation's: each stage
alone takes its true invoke on the virtual clock, and the pipeline's period and latency are what the same
hidden true model gives the whole pipeline (`pipeline_formula.pipeline` over its stage values, copies included).
The CPU's wall clock says nothing about the simulated device, so none of it is reported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from tpuplan.compat import zip_strict
from tpuplan.profiles.pricing import formula, pipeline_formula
from tpuplan.runtime.backends.kinds import Backend
from tpuplan.runtime.pipeline.base import StageStats
from tpuplan.runtime.run import PipelineRun
from tpuplan.runtime.split.manifest import LoadedSplit
from tpuplan.runtime.verify.hostcost import RunnerHost

SIMULATED_NOTE = (
    "SIMULATED: no hardware ran this; every 'measured' time is a simulated Edge TPU's (a hidden true device "
    "model on a virtual clock), the outputs are the CPU segments' own"
)


def simulated_run(
    backend: Backend, split: LoadedSplit, run: PipelineRun, alone: Sequence[float]
) -> tuple[PipelineRun, RunnerHost]:
    """The run as the simulated device would have timed it, and the runner's numbers of its true host."""
    assert backend.simulator is not None
    sim = backend.simulator()
    true = [sim.stage(content) for content in split.contents]
    copies = [seg.copies for seg in split.manifest.segments]
    pipe = pipeline_formula.pipeline(
        [t.values for t in true],
        copies,
        pipeline_formula.pipeline_start(formula.spec_coefficients(sim.device, sim.host)),
    )
    period, latency = float(pipe.period), float(pipe.latency)
    k, n = len(true), max(run.count, 1)
    stats = [StageStats(s.name, s.items, t, t, t, t, 0.0, 0.0) for s, t in zip_strict(run.stats, alone)]
    timed = PipelineRun(run.count, n * period / 1e6, 0.0, stats, [latency] * n, run.results)
    extra = round(sum(t.values["time"] - t.invoke_us for t in true) / k, 2)  # the true runner work per stage
    host = RunnerHost(
        runner="simulated",
        stages=k,
        empty_stage_us=sim.host.stage_us,
        empty_single_stage_us=sim.host.stage_us,
        serialized=sim.host.serialized if k > 1 else None,
        real_stage_us=extra,
        real_stage_cpu_us=extra,
        cpu_count=os.cpu_count() or 1,
        machine=f"SIMULATED Edge TPU ({backend.name}): true device model on a virtual clock",
    )
    return timed, host
