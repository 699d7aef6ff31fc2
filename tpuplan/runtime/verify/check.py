"""`plan verify`: split a plan's model, run it, and compare the plan's predictions with measurements.

Measured numbers come from this machine's runs; predicted numbers come from the plan. Both are
labelled. Stage times are measured in isolation (one stage at a time, warm, median), because that is
what a stage prediction describes; the pipeline's throughput is measured with all stages running. The
report (`runtime.verify.report`) also carries our runner's host numbers measured here (`runtime.verify.hostcost`).
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from tpuplan.planner.plan import Plan, StagePlan, plan_digest
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.tflite.reader import LoadedModel
from tpuplan.runtime.backends.registry import Backend, InterpreterStage, get_backend
from tpuplan.runtime.devicemap import assign, per_copy
from tpuplan.runtime.pipeline.runners import default_queue_size
from tpuplan.runtime.pipeline.stage import Array
from tpuplan.runtime.progress import Progress, ticker
from tpuplan.runtime.run import PipelineRun, build_stages, run_pipeline
from tpuplan.runtime.split.manifest import load_split
from tpuplan.runtime.split.write import write_split
from tpuplan.runtime.tensors.inputs import InputSpec, open_inputs, random_input
from tpuplan.runtime.verify.hostcost import runner_host
from tpuplan.runtime.verify.report import (
    REPORT_KIND,
    REPORT_VERSION,
    TOLERANCE_FLOOR_US,
    StageCheck,
    VerifyReport,
    load_report,
    within,
)

__all__ = [
    "REPORT_KIND",
    "REPORT_VERSION",
    "TOLERANCE_FLOOR_US",
    "VerifyReport",
    "invoke_part_us",
    "load_report",
    "verify",
]


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


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


@dataclass(frozen=True)
class _Measured:
    """Everything measured on this machine for one verify."""

    feeds_from: str
    alone: list[float]
    chained: list[float]
    run: PipelineRun
    queue_size: int
    outputs_match: bool | None
    outputs_note: str


def verify(
    plan: Plan,
    loaded: LoadedModel,
    *,
    backend: str | Backend = "cpu",
    devices: Sequence[str] | None = None,
    inputs: int = 50,
    input_path: Path | None = None,
    tolerance: float = 0.15,
    tolerance_floor_us: float = TOLERANCE_FLOOR_US,
    repeats: int = 30,
    seed: int = 0,
    progress: Progress | None = None,
) -> VerifyReport:
    """Split, run, measure and compare. Raises TpuplanError on bad input; the verdict says the rest.

    Inputs are `inputs` random tensors, or the first `inputs` of `input_path` (all of it when it holds
    fewer); they are kept in memory, as the outputs are compared with the unsplit model's."""
    chosen = get_backend(backend)
    if inputs < 1:
        raise TpuplanError("inputs must be at least 1")
    if plan.model.sha256 != loaded.sha256:
        raise TpuplanError(
            f"{loaded.path}: the plan is for model sha256 {plan.model.sha256[:12]}, but this model is "
            f"{loaded.sha256[:12]}"
        )
    planned = per_copy([s.device for s in plan.stages], [s.copies for s in plan.stages])
    devs = chosen.devices(sum(s.copies for s in plan.stages), assign(planned, devices) if devices else devices)
    plan_backends = {s.backend for s in plan.devices}
    comparable = plan_backends == {chosen.name}
    notes: list[str] = []
    if not comparable:
        notes.append(
            f"the plan predicts {'/'.join(sorted(plan_backends))} times; measuring on {chosen.name} checks outputs "
            "and reports times, but stage times are not compared against the predictions"
        )
    feeds, feeds_from = _feeds(loaded, inputs, input_path, seed)
    measured = _measure(plan, loaded, chosen, devs, feeds, feeds_from, repeats, progress)
    cores = float(len(devs)) if chosen.compiled else effective_cores(loaded.data)
    return _report(plan, chosen, devs, (tolerance, tolerance_floor_us), comparable, notes, measured, cores)


def _measure(
    plan: Plan,
    loaded: LoadedModel,
    backend: Backend,
    devs: list[str | None],
    feeds: list[dict[str, Array]],
    feeds_from: str,
    repeats: int,
    progress: Progress | None,
) -> _Measured:
    """Split into a temporary directory, time each stage alone, run the pipeline, compare the outputs."""
    with tempfile.TemporaryDirectory(prefix="tpuplan-verify-") as tmp:
        if progress is not None:
            progress("splitting", 0, 1)
        out_dir = Path(tmp) / "segments"
        write_split(loaded, out_dir, plan=plan, compile=backend.compiled)
        split = load_split(out_dir, compiled=backend.compiled)
        if progress is not None:
            progress("splitting", 1, 1)
        alone, chained = _time_alone(
            [g[0] for g in build_stages(split, backend, devs, copies=False)], feeds, repeats, progress
        )
        boundary = max(
            sum(int(v.nbytes) for v in feeds[0].values()),
            *(
                sum(int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize for t in seg.outputs)
                for seg in split.manifest.segments
            ),
        )
        queue_size = default_queue_size(boundary)
        run = run_pipeline(
            build_stages(split, backend, devs),
            feeds,
            model_outputs=split.manifest.model.outputs,
            stage_timeout_s=None,
            queue_size=queue_size,
            progress=progress,
            total=len(feeds),
        )
    outputs_match, outputs_note = _compare_outputs(backend, loaded.data, feeds, run.results, progress)
    return _Measured(feeds_from, alone, chained, run, queue_size, outputs_match, outputs_note)


def _feeds(loaded: LoadedModel, n: int, path: Path | None, seed: int) -> tuple[list[dict[str, Array]], str]:
    """The inputs of a verify, in memory: n random ones, or the first n of `path`."""
    whole = InterpreterStage("whole", loaded.data, where=str(loaded.path))
    specs = [InputSpec.from_details(d) for d in whole.input_details()]
    whole.close()
    if path is None:
        rng = np.random.default_rng(seed)
        return [random_input(specs, rng) for _ in range(n)], f"random (seed {seed}, {n} distinct tensors)"
    source = open_inputs(path, specs)
    return list(itertools.islice(source, min(n, source.count))), source.description


def _time_alone(
    stages: list[InterpreterStage], feeds: list[dict[str, Array]], repeats: int, progress: Progress | None
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
            t0 = time.perf_counter_ns()
            available.update(st.run(feed))
            dt = (time.perf_counter_ns() - t0) / 1000.0
            total += dt
            if r >= warmup:
                per_stage[k].append(dt)
        if r >= warmup:
            chained.append(total)
        tick(r + 1)
    for st in stages:
        st.close()
    return [float(statistics.median(x)) for x in per_stage], chained


def _compare_outputs(
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
        for i, (got, ref) in enumerate(zip(results, reference, strict=True))
        if set(got) != set(ref) or any(not np.array_equal(got[k], ref[k]) for k in ref)
    ]
    if not mismatches:
        return True, f"all {len(feeds)} outputs bit-identical to the unsplit model"
    return False, f"{len(mismatches)} of {len(feeds)} inputs differ, first #{mismatches[0]}"


def invoke_part_us(stage: StagePlan) -> int:
    """What one stage's own run takes (its interpreter's invoke: device and host ops), without the runner's
    queues and hand-offs: what a stage timed alone measures."""
    return stage.invoke_us


def _stage_checks(plan: Plan, m: _Measured, tolerance: tuple[float, float], comparable: bool) -> list[StageCheck]:
    checks = []
    for sp, t, stat in zip(plan.stages, m.alone, m.run.stats, strict=True):
        predicted = float(invoke_part_us(sp))
        checks.append(
            StageCheck(
                index=sp.index,
                device=sp.device,
                first_op=sp.first_op,
                last_op=sp.last_op,
                predicted_us=predicted,
                measured_us=round(t, 1),
                measured_in_pipeline_us=round(stat.median_us, 1),
                rel_error=round(abs(t - predicted) / max(t, 1e-9), 4),
                abs_error_us=round(abs(t - predicted), 1),
                within_tolerance=within(t, predicted, *tolerance) if comparable else None,
            )
        )
    return checks


def _report(
    plan: Plan,
    backend: Backend,
    devices: list[str | None],
    tolerance: tuple[float, float],
    comparable: bool,
    notes: list[str],
    m: _Measured,
    cores: float,
) -> VerifyReport:
    """Predicted against measured, stage by stage and for the whole pipeline, with a verdict."""
    k, run = len(plan.stages), m.run
    measured_tp = float(run.count) / run.wall_s if run.wall_s > 0 else 0.0
    checks = _stage_checks(plan, m, tolerance, comparable)
    total_pred = float(sum(invoke_part_us(sp) for sp in plan.stages))
    bottleneck = float(max(invoke_part_us(sp) / sp.copies for sp in plan.stages))  # copies take inputs in turn
    host = runner_host(k, run, m.alone, m.queue_size)
    overhead = host.empty_stage_us
    # the formula's pipeline with each stage's runner work as measured here, one core per stage
    here = [
        {**dict.fromkeys(formula.STAGE_VALUES, 0), "time": formula.whole_us(invoke_part_us(sp) + overhead)}
        for sp in plan.stages
    ]
    period = formula.pipeline(here, [sp.copies for sp in plan.stages]).period
    ideal = 1e6 / period if period > 0 else 0.0
    limited = min(ideal, cores * 1e6 / (total_pred + k * overhead))
    if not backend.compiled:
        notes.append(
            f"this machine ran {cores:g} interpreters' worth of work at once (measured) and the pipeline "
            f"itself costs {overhead:.0f} us per item and stage (measured with empty stages), so the predicted "
            f"throughput is min(1/(slowest stage + that), {cores:g} / (sum of stages + K x that)) = {limited:.1f}/s; "
            f"with one core per stage it would be {ideal:.1f}/s"
        )
    worst = max(checks, key=lambda c: c.rel_error)
    verdict: Literal["ok", "prediction_missed", "outputs_differ"] = "ok"
    if m.outputs_match is False:
        verdict = "outputs_differ"
    elif any(c.within_tolerance is False for c in checks):
        missed = max((c for c in checks if c.within_tolerance is False), key=lambda c: c.abs_error_us)
        verdict = "prediction_missed"
        notes.append(
            f"stage {missed.index} measured {missed.measured_us:.0f} us vs predicted {missed.predicted_us:.0f} us "
            f"({missed.rel_error:.0%} off, tolerance {tolerance[0]:.0%} or {tolerance[1]:g} us)"
        )
    lat = run.latencies_us
    return VerifyReport(
        model_sha256=plan.model.sha256,
        plan_sha256=plan_digest(plan),
        backend=backend.name,
        devices=[d or backend.name for d in devices],
        inputs=run.count,
        input_source=m.feeds_from,
        tolerance=tolerance[0],
        tolerance_floor_us=tolerance[1],
        comparable=comparable,
        stages=checks,
        predicted_bottleneck_us=bottleneck,
        measured_bottleneck_us=round(max(m.alone), 1),
        predicted_latency_us=total_pred,
        measured_latency_us=round(float(statistics.median(m.chained)), 1),
        effective_cores=cores,
        predicted_throughput_ideal_per_s=round(ideal, 2),
        predicted_throughput_per_s=round(limited, 2),
        measured_throughput_per_s=round(measured_tp, 2),
        throughput_rel_error=round(abs(measured_tp - limited) / max(measured_tp, 1e-9), 4),
        pipeline_overhead_us=round(overhead, 1),
        runner_host=host,
        pipeline_latency_p50_us=round(_percentile(lat, 50), 1),
        pipeline_latency_p90_us=round(_percentile(lat, 90), 1),
        pipeline_latency_p99_us=round(_percentile(lat, 99), 1),
        outputs_match=m.outputs_match,
        outputs_note=m.outputs_note,
        worst_stage=worst.index,
        verdict=verdict,
        notes=notes,
    )
