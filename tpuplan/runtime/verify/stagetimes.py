"""What `plan verify` measures on this machine besides the pipeline run: its inputs, each stage timed
alone, and the pipeline's outputs against the unsplit model.

Apart from the comparison (`runtime.verify.check`), which only reads these numbers against the plan's:
a stage timed alone is what a stage prediction describes, so it is timed one input at a time, warm,
stages alternating so that a slow spell of the machine hits them alike.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.profiles.tflite.reader import LoadedModel
from tpuplan.runtime.backends.kinds import Backend
from tpuplan.runtime.backends.registry import InterpreterStage
from tpuplan.runtime.pipeline.stage import Array
from tpuplan.runtime.progress import Progress, ticker
from tpuplan.runtime.run import input_specs
from tpuplan.runtime.split.manifest import LoadedSplit
from tpuplan.runtime.tensors.inputs import InputSpec, open_inputs, random_input
from tpuplan.runtime.verify.tolerance import DEFAULT_INPUTS


def verify_inputs(
    loaded: LoadedModel | None, split: LoadedSplit | None, n: int | None, path: Path | None, seed: int
) -> tuple[list[dict[str, Array]], str]:
    """The inputs of a verify, in memory: n random ones, or the first n of `path` (as `plan run` reads it:
    asking for more than it holds is an error; not asking takes at most DEFAULT_INPUTS); shaped as the
    model's inputs (or, without the model, as the split's manifest records them)."""
    if loaded is not None:
        whole = InterpreterStage("whole", loaded.data, where=str(loaded.path))
        specs = [InputSpec.from_details(d) for d in whole.input_details()]
        whole.close()
    else:
        assert split is not None
        specs = input_specs(split.manifest)
    if path is None:
        rng = np.random.default_rng(seed)
        count = DEFAULT_INPUTS if n is None else n
        return [random_input(specs, rng) for _ in range(count)], f"random (seed {seed}, {count} distinct tensors)"
    source = open_inputs(path, specs, count=n)
    return list(itertools.islice(source, min(DEFAULT_INPUTS, source.count) if n is None else n)), source.description


def time_alone(
    stages: list[InterpreterStage],
    feeds: list[dict[str, Array]],
    repeats: int,
    progress: Progress | None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> tuple[list[float], list[float]]:
    """One input at a time through the stages in turn: each stage's median time alone, and the chained
    single-input latencies (stages alternate, so a slow spell of the machine hits them alike)."""
    per_stage: list[list[float]] = [[] for _ in stages]
    chained: list[float] = []
    warmup = 3
    tick = ticker(progress, "timing each stage alone", repeats + warmup)
    for r in range(repeats + warmup):
        available = dict(feeds[r % len(feeds)])
        total = 0.0
        for k, st in enumerate(stages):
            feed = {name: available[name] for name in st.input_names}
            t0 = clock()
            available.update(st.run(feed))
            dt = (clock() - t0) / 1000.0
            total += dt
            if r >= warmup:
                per_stage[k].append(dt)
        if r >= warmup:
            chained.append(total)
        tick(r + 1)
    for st in stages:
        st.close()
    return [float(statistics.median(x)) for x in per_stage], chained


def compare_outputs(
    backend: Backend,
    model_content: bytes,
    feeds: list[dict[str, Array]],
    results: list[dict[str, Array]],
    progress: Progress | None,
) -> tuple[bool | None, str]:
    """Pipeline outputs against the unsplit model (CPU kernels on both sides: bit-identical expected)."""
    if backend.compiled:
        return None, "not compared: Edge TPU segments against the CPU model differ by design"
    whole = InterpreterStage("whole", model_content)
    tick = ticker(progress, "running the unsplit model", len(feeds))
    reference = []
    try:
        for i, feed in enumerate(feeds):
            reference.append(whole.run(feed))
            tick(i + 1)
    finally:
        whole.close()
    mismatches = [
        i
        for i, (got, ref) in enumerate(zip_strict(results, reference))
        if set(got) != set(ref) or any(not np.array_equal(got[k], ref[k]) for k in ref)
    ]
    if not mismatches:
        return True, f"all {len(feeds)} outputs bit-identical to the unsplit model"
    return False, f"{len(mismatches)} of {len(feeds)} inputs differ, first #{mismatches[0]}"
