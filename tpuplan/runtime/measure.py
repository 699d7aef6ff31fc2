"""Measured profiles: time every op of a model on the CPU backend, each op as its own segment.

The times are real (median of warm repeats, this machine); the stage table then predicts a stage as
the per-invoke overhead plus the sum of its ops plus copying its boundary tensors.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.profiles.build import price, profile_from_graph
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.formula import LinkCost
from tpuplan.profiles.pricing.host import resolve_host
from tpuplan.profiles.tflite.graph import analyse
from tpuplan.profiles.tflite.reader import LoadedModel
from tpuplan.runtime.backends.kinds import get_backend
from tpuplan.runtime.backends.nativelog import one_line
from tpuplan.runtime.backends.probe import probe_models
from tpuplan.runtime.backends.registry import InterpreterStage, allocate, new_interpreter, random_inputs
from tpuplan.runtime.progress import Progress, ticker
from tpuplan.runtime.split.cut import segment_bytes

WARMUP = 3


def _median_us(fn: Any, repeats: int) -> float:
    for _ in range(WARMUP):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000.0)
    return float(statistics.median(samples))


def round_robin_medians(calls: list[Any], repeats: int, progress: Progress | None = None) -> list[float]:
    """Median time of each call, timed in turns (one round calls each once) so that the machine
    getting slower or faster for a few seconds moves every op alike instead of a few of them."""
    for _ in range(WARMUP):
        for call in calls:
            call()
    samples: list[list[float]] = [[] for _ in calls]
    tick = ticker(progress, "timing every op", repeats)
    for r in range(repeats):
        for k, call in enumerate(calls):
            t0 = time.perf_counter_ns()
            call()
            samples[k].append((time.perf_counter_ns() - t0) / 1000.0)
        tick(r + 1)
    return [float(statistics.median(x)) for x in samples]


def all_tensor_values(content: bytes, seed: int = 0) -> dict[str, np.ndarray]:
    """Run the whole model once on random inputs and keep every tensor, to feed single-op segments."""
    interp = new_interpreter(content, "the model", preserve_all_tensors=True)
    allocate(interp, "the model")
    try:
        inputs = random_inputs(interp.get_input_details(), np.random.default_rng(seed))
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], inputs[str(d["name"])])
        interp.invoke()
    except (ValueError, RuntimeError) as exc:
        raise TpuplanError(f"the interpreter cannot run this model: {one_line(exc)}") from None
    values: dict[str, np.ndarray] = {}
    for d in interp.get_tensor_details():
        try:
            values[str(d["name"])] = np.array(interp.get_tensor(d["index"]))
        except ValueError:
            continue  # constants folded away or tensors without data
    return values


def _op_stages(
    where: str,
    indices: list[int],
    singles: list[bytes],
    values: dict[str, np.ndarray],
    repeats: int,
    seed: int,
    progress: Progress | None,
) -> tuple[list[InterpreterStage], list[float]]:
    """One interpreter per single-op segment, its inputs set from the whole model's tensors (random where
    none is known), and the copy rates (bytes per us) of its inputs where they are large enough to time."""
    copy_rates: list[float] = []
    stages: list[InterpreterStage] = []
    tick = ticker(progress, "building one interpreter per op", len(indices))
    for index, data in zip_strict(indices, singles):
        stage = InterpreterStage(f"op{index}", data, where=f"{where} op {index}")
        feed = {name: values[name] for name in stage.input_names if name in values}
        if len(feed) < len(stage.input_names):
            feed.update(
                random_inputs(
                    [d for d in stage.input_details() if str(d["name"]) not in feed],
                    np.random.default_rng(seed),
                )
            )
        stage.set_inputs(feed)
        in_bytes = sum(int(v.nbytes) for v in feed.values())
        if in_bytes >= 64 * 1024:
            t_copy = _median_us(lambda s=stage, f=feed: s.set_inputs(f), max(5, repeats // 3))
            copy_rates.append(in_bytes / max(t_copy, 1e-3))
        stages.append(stage)
        tick(len(stages))
    return stages, copy_rates


def measure_profile(
    loaded: LoadedModel, *, backend: str = "cpu", repeats: int = 30, seed: int = 0, progress: Progress | None = None
) -> Profile:
    """A profile whose op times are measured on `backend` (only the CPU backend can be timed per op);
    `progress` hears about building the single-op interpreters and each timing round."""
    chosen = get_backend(backend)
    if chosen.compiled:
        raise TpuplanError(
            f"per-op measurement is available on the cpu backend only, not {chosen.name!r}: an Edge TPU "
            "segment runs as one custom op; measure its stages with verify on that backend instead"
        )
    where = str(loaded.path)
    graph = analyse(loaded)
    singles = [segment_bytes(loaded, op.index, op.index) for op in graph.ops]
    probe_models(
        [(where, loaded.data)] + [(f"{where} op {op.index}", data) for op, data in zip_strict(graph.ops, singles)]
    )
    stages, copy_rates = _op_stages(
        where, [op.index for op in graph.ops], singles, all_tensor_values(loaded.data, seed), repeats, seed, progress
    )
    times = round_robin_medians([s.invoke for s in stages], repeats, progress)
    for stage in stages:
        stage.close()
    overhead = min(times)
    copy_rate = statistics.median(copy_rates) if copy_rates else 2000.0
    per_kib = round(1024 / copy_rate, 4)
    device = preset("cpu").model_copy(
        update={
            "name": "cpu-measured",
            "invoke_overhead_us": round(overhead, 1),
            "link": LinkCost(in_us_per_kib=per_kib, out_us_per_kib=per_kib, calibrated=True),
        }
    )
    host = resolve_host(None)
    static = profile_from_graph(graph, device, host)
    ops = [
        op.model_copy(update={"measured_us": round(max(0.0, t - overhead), 2)})
        for op, t in zip_strict(static.ops, times)
    ]
    measurement: dict[str, float | int | str] = {
        "backend": backend,
        "repeats": repeats,
        "warmup": WARMUP,
        "invoke_overhead_us": round(overhead, 1),
        "copy_bytes_per_us": round(copy_rate, 1),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count() or 1,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": "each op timed as its own single-op segment, fed the whole model's tensors, all ops "
        "in turns; median of warm invokes minus the per-invoke overhead (the fastest op's time)",
    }
    measured = static.model_copy(update={"ops": ops, "source": "measured", "measurement": measurement})
    return price(measured, device, host)
