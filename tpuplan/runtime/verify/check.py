"""`plan verify`: split a plan's model, run it, and compare the plan's predictions with measurements.

Measured numbers come from this machine's runs; predicted numbers come from the plan. Both are
labelled. Stage times are measured in isolation (one stage at a time, warm, median), because that is
what a stage prediction describes; the pipeline's throughput is measured with all stages running. The
report (`runtime.verify.report`) also carries our runner's host numbers measured here (`runtime.verify.hostcost`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.planner.plan import Plan, StagePlan, plan_digest
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing import formula, pipeline_formula
from tpuplan.profiles.tflite.reader import LoadedModel
from tpuplan.runtime.backends.kinds import Backend, get_backend
from tpuplan.runtime.backends.litert import interpreter_name
from tpuplan.runtime.devicemap import assign, per_copy
from tpuplan.runtime.pipeline.runners import default_queue_size
from tpuplan.runtime.pipeline.stage import Array
from tpuplan.runtime.progress import Progress
from tpuplan.runtime.run import (
    PipelineRun,
    build_stages,
    check_split_backend,
    check_split_matches_plan,
    run_pipeline,
)
from tpuplan.runtime.scratch import temporary_directory
from tpuplan.runtime.split.manifest import LoadedSplit, load_split
from tpuplan.runtime.split.write import write_split
from tpuplan.runtime.verify.hostcost import RunnerHost, effective_cores, overlapped_us, runner_host
from tpuplan.runtime.verify.report import (
    REPORT_KIND,
    REPORT_VERSION,
    Judged,
    StageCheck,
    VerifyReport,
    decide,
    load_report,
    within,
)
from tpuplan.runtime.verify.simrun import SIMULATED_NOTE, simulated_run
from tpuplan.runtime.verify.stagetimes import compare_outputs, time_alone, verify_inputs
from tpuplan.runtime.verify.tolerance import DEFAULT_INPUTS, MAX_TOLERANCE, MAX_VERIFY_INPUTS, TOLERANCE_FLOOR_US

__all__ = [
    "DEFAULT_INPUTS",
    "MAX_TOLERANCE",
    "MAX_VERIFY_INPUTS",
    "REPORT_KIND",
    "REPORT_VERSION",
    "TOLERANCE_FLOOR_US",
    "VerifyReport",
    "invoke_part_us",
    "load_report",
    "verify",
]


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
    cores: float
    host: RunnerHost | None = None  # a simulated device's (else measured here, with empty stages)


def verify(
    plan: Plan,
    loaded: LoadedModel | None,
    *,
    segments: LoadedSplit | None = None,
    backend: str | Backend = "cpu",
    devices: Sequence[str] | None = None,
    inputs: int | None = None,
    input_path: Path | None = None,
    tolerance: float = 0.15,
    tolerance_floor_us: float = TOLERANCE_FLOOR_US,
    outputs_only: bool = False,
    repeats: int = 30,
    seed: int = 0,
    progress: Progress | None = None,
) -> VerifyReport:
    """Split (or take `segments` already split, e.g. compiled on another machine), run, measure and
    compare. Raises TpuplanError on bad input; the verdict says the rest.

    With `segments` the model is optional: without it the outputs are not compared (nothing to compare
    them with), and the compiler is never needed. `outputs_only` judges the outputs alone (stage times are
    still reported). Inputs are `inputs` random tensors, or the first `inputs` of `input_path` (an error
    when it holds fewer); None: DEFAULT_INPUTS, or all of a shorter `input_path`. They are kept in memory,
    as the outputs are compared with the unsplit model's."""
    chosen = get_backend(backend)
    if inputs is not None and not 1 <= inputs <= MAX_VERIFY_INPUTS:
        raise TpuplanError(f"inputs must be from 1 to {MAX_VERIFY_INPUTS:,} (got {inputs:,})")
    if not 0 <= tolerance <= MAX_TOLERANCE:
        raise TpuplanError(f"tolerance must be from 0 to {MAX_TOLERANCE:g} (got {tolerance:g})")
    if loaded is None and segments is None:
        raise TpuplanError("verify needs the model (to split it here) or segments already split")
    if loaded is not None and plan.model.sha256 != loaded.sha256:
        raise TpuplanError(
            f"{loaded.path}: the plan is for model sha256 {plan.model.sha256[:12]}, but this model is "
            f"{loaded.sha256[:12]}"
        )
    if segments is not None:
        check_split_matches_plan(segments.manifest, plan, str(segments.directory))
        check_split_backend(segments, chosen)
    planned = per_copy([s.device for s in plan.stages], [s.copies for s in plan.stages])
    devs = chosen.devices(sum(s.copies for s in plan.stages), assign(planned, devices) if devices else devices)
    comparable = {s.backend for s in plan.devices} == {chosen.checks}
    feeds, feeds_from = verify_inputs(loaded, segments, inputs, input_path, seed)
    if segments is not None:
        measured = _measure(segments, loaded, chosen, devs, feeds, feeds_from, repeats, progress)
    else:
        assert loaded is not None
        with temporary_directory("tpuplan-verify-", "the plan's segments") as tmp:
            split = _split_here(plan, loaded, chosen, Path(tmp) / "segments", progress)
            measured = _measure(split, loaded, chosen, devs, feeds, feeds_from, repeats, progress)
    judged = Judged((tolerance, tolerance_floor_us), comparable, outputs_only)
    return _report(plan, chosen, devs, judged, measured, segments)


def _split_here(
    plan: Plan, loaded: LoadedModel, backend: Backend, out_dir: Path, progress: Progress | None
) -> LoadedSplit:
    """The plan's segments, written to `out_dir` (compiled for a compiled backend) and read back."""
    if progress is not None:
        progress("splitting", 0, 1)
    write_split(loaded, out_dir, plan=plan, compile=backend.compiled)
    split = load_split(out_dir, compiled=backend.compiled)
    if progress is not None:
        progress("splitting", 1, 1)
    return split


def _measure(
    split: LoadedSplit,
    loaded: LoadedModel | None,
    backend: Backend,
    devs: list[str | None],
    feeds: list[dict[str, Array]],
    feeds_from: str,
    repeats: int,
    progress: Progress | None,
) -> _Measured:
    """Time each stage of the split alone, run the pipeline, compare the outputs with the unsplit model's."""
    clock = backend.simulator().clock.now_ns if backend.simulator is not None else time.perf_counter_ns
    alone, chained = time_alone(
        [g[0] for g in build_stages(split, backend, devs, copies=False)], feeds, repeats, progress, clock
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
    if loaded is None:
        outputs_match, outputs_note = None, "not compared: no model given (outputs are compared with the unsplit model)"
    else:
        outputs_match, outputs_note = compare_outputs(backend, loaded.data, feeds, run.results, progress)
    # how many interpreters make progress at once here: measured on the model, or its largest segment
    cores = (
        float(len(devs))
        if backend.compiled or backend.simulated
        else effective_cores(loaded.data if loaded else max(split.contents, key=len))
    )
    if backend.simulated:
        run, host = simulated_run(backend, split, run, alone)
        return _Measured(feeds_from, alone, chained, run, queue_size, outputs_match, outputs_note, cores, host)
    return _Measured(feeds_from, alone, chained, run, queue_size, outputs_match, outputs_note, cores)


def invoke_part_us(stage: StagePlan) -> int:
    """What one stage's own run takes (its interpreter's invoke: device and host ops), without the runner's
    queues and hand-offs: what a stage timed alone measures."""
    return stage.invoke_us


def _stage_checks(plan: Plan, m: _Measured, judged: Judged) -> list[StageCheck]:
    checks = []
    for sp, t, stat in zip_strict(plan.stages, m.alone, m.run.stats):
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
                within_tolerance=within(t, predicted, *judged.tolerance) if judged.comparable else None,
            )
        )
    return checks


def cores_note(cores: float, overhead: float, limited: float, ideal: float) -> str:
    """How the predicted throughput on CPUs was limited, in words."""
    return (
        f"this machine ran {cores:g} interpreter{'' if cores == 1 else 's'}' worth of work at once (measured) and "
        f"the pipeline itself costs {overhead:.0f} us per item and stage (measured with empty stages), so the "
        f"predicted throughput is min(1/(slowest stage + that), {cores:g} / (sum of stages + K x that)) = "
        f"{limited:.1f}/s; with one core per stage it would be {ideal:.1f}/s"
    )


def _report(
    plan: Plan,
    backend: Backend,
    devices: list[str | None],
    judged: Judged,
    m: _Measured,
    segments: LoadedSplit | None,
) -> VerifyReport:
    """Predicted against measured, stage by stage and for the whole pipeline, with a verdict."""
    k, run, cores = len(plan.stages), m.run, m.cores
    measured_tp = float(run.count) / run.wall_s if run.wall_s > 0 else 0.0
    checks = _stage_checks(plan, m, judged)
    total_pred = float(sum(invoke_part_us(sp) for sp in plan.stages))
    bottleneck = float(max(invoke_part_us(sp) / sp.copies for sp in plan.stages))  # copies take inputs in turn
    host = m.host or runner_host(k, run, m.alone, m.queue_size)
    overlap = overlapped_us(run, m.alone)
    notes: list[str] = [SIMULATED_NOTE] if backend.simulated else []
    if overlap > 0 and not backend.simulated:
        notes.append(
            f"the pipeline's period was {overlap:.0f} us shorter than the sum of its stages timed alone: the "
            "stages overlapped on several cores, so the runner's cost with these stages reads 0 (not negative)"
        )
    overhead = host.empty_stage_us
    # the formula's pipeline with each stage's runner work as measured here, one core per stage
    here = [
        {**dict.fromkeys(formula.STAGE_VALUES, 0), "time": formula.whole_us(invoke_part_us(sp) + overhead)}
        for sp in plan.stages
    ]
    period = pipeline_formula.pipeline(here, [sp.copies for sp in plan.stages]).period
    ideal = 1e6 / period if period > 0 else 0.0
    limited = min(ideal, cores * 1e6 / (total_pred + k * overhead))
    if not judged.comparable:
        predicted_for = "/".join(sorted({d.backend for d in plan.devices}))
        notes.append(
            f"the plan predicts {predicted_for} times and this run measured {backend.name}: stage times are "
            "reported, not compared with the predictions"
        )
    if not backend.compiled and not backend.simulated:
        notes.append(cores_note(cores, overhead, limited, ideal))
    worst = max(checks, key=lambda c: c.rel_error)
    verdict, why = decide(checks, m.outputs_match, m.outputs_note, judged)
    notes += why
    lat = run.latencies_us
    return VerifyReport(
        model_sha256=plan.model.sha256,
        plan_sha256=plan_digest(plan),
        backend=backend.name,
        devices=[d or backend.name for d in devices],
        inputs=run.count,
        input_source=m.feeds_from,
        tolerance=judged.tolerance[0],
        tolerance_floor_us=judged.tolerance[1],
        comparable=judged.comparable,
        outputs_only=judged.outputs_only,
        interpreter=interpreter_name(),
        segments=str(segments.directory) if segments is not None else None,
        host=plan.host.name,
        simulated=backend.simulated,
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
