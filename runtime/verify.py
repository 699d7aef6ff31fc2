"""`plan verify`: split a plan's model, run it, and compare the plan's predictions with measurements.

Measured numbers come from this machine's runs; predicted numbers come from the plan. Both are
labelled. Stage times are measured in isolation (one stage at a time, warm, median), because that is
what a stage prediction describes; the pipeline's throughput is measured with all stages running.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import numpy as np
from pydantic import Field

from tpuplan.planner.plan import Plan, StagePlan, plan_digest
from tpuplan.profiles.docio import StrictModel, load_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.tflite import LoadedModel
from tpuplan.runtime.backends import Backend, InterpreterStage, get_backend, random_inputs
from tpuplan.runtime.manifest import load_split
from tpuplan.runtime.run import PipelineRun, build_stages, run_pipeline
from tpuplan.runtime.segments import write_split
from tpuplan.runtime.stage import Array, FunctionStage

REPORT_KIND: Final = "tpuplan.verify"
REPORT_VERSION: Final = 1


class StageCheck(StrictModel):
    index: int
    device: str
    first_op: int
    last_op: int
    predicted_us: float
    measured_us: float = Field(description="median warm time of the stage alone on this machine")
    measured_in_pipeline_us: float = Field(description="median invoke time while all stages ran")
    rel_error: float
    within_tolerance: bool


class VerifyReport(StrictModel):
    kind: Literal["tpuplan.verify"] = REPORT_KIND
    schema_version: Literal[1] = REPORT_VERSION
    model_sha256: str
    plan_sha256: str
    backend: str
    devices: list[str]
    inputs: int
    tolerance: float
    comparable: bool = Field(description="the plan's predictions are for this backend")
    stages: list[StageCheck]
    predicted_bottleneck_us: float
    measured_bottleneck_us: float
    predicted_latency_us: float
    measured_latency_us: float = Field(description="one input through all stages in turn, median")
    effective_cores: float = Field(description="measured parallel speed-up of two busy interpreters")
    predicted_throughput_ideal_per_s: float = Field(description="1 / slowest stage: one core per stage")
    predicted_throughput_per_s: float = Field(description="also limited by the usable cores")
    measured_throughput_per_s: float
    throughput_rel_error: float
    pipeline_overhead_us: float = Field(description="measured host cost of the pipeline per item and stage")
    pipeline_latency_p50_us: float
    pipeline_latency_p90_us: float
    pipeline_latency_p99_us: float
    outputs_match: bool | None = Field(description="pipeline outputs bit-identical to the unsplit model")
    outputs_note: str
    worst_stage: int
    verdict: Literal["ok", "prediction_missed", "outputs_differ"]
    notes: list[str]


def load_report(path: Path) -> VerifyReport:
    return load_doc(path, VerifyReport, kind=REPORT_KIND, version=REPORT_VERSION)


def effective_cores(model_content: bytes, seconds: float = 0.5) -> float:
    """How many interpreters make progress at once here: invokes/s of two threads over one thread."""

    def rate(n_threads: int) -> float:
        stages = [InterpreterStage(f"probe{i}", model_content) for i in range(n_threads)]
        feed = random_inputs(stages[0].input_details(), np.random.default_rng(0))
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


def pipeline_overhead_us(k: int, items: int = 400) -> float:
    """Host time the pipeline itself spends per item and stage (queues, routing, threads), measured
    with stages that do no work; it bounds throughput for models whose stages take microseconds."""

    def forward(i: int) -> FunctionStage:
        return FunctionStage(f"probe{i}", [f"t{i}"], [f"t{i + 1}"], lambda d: {f"t{i + 1}": d[f"t{i}"]})

    feeds = [{"t0": np.zeros(4, dtype=np.int8)} for _ in range(items)]
    run = run_pipeline([forward(i) for i in range(k)], feeds, model_outputs=[f"t{k}"], stage_timeout_s=None)
    return run.wall_s * 1e6 / (items * k)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


def verify(plan: Plan, loaded: LoadedModel, *, backend: str | Backend = "cpu", devices: Sequence[str] | None = None,
           inputs: int = 50, tolerance: float = 0.15, repeats: int = 30, seed: int = 0) -> VerifyReport:
    """Split, run, measure and compare. Raises TpuplanError on bad input; the verdict says the rest."""
    chosen = get_backend(backend)
    if inputs < 1:
        raise TpuplanError("inputs must be at least 1")
    if plan.model.sha256 != loaded.sha256:
        raise TpuplanError(
            f"{loaded.path}: the plan is for model sha256 {plan.model.sha256[:12]}, but this model is "
            f"{loaded.sha256[:12]}"
        )
    devs = chosen.devices(len(plan.stages), devices)
    plan_backends = {s.backend for s in plan.devices}
    comparable = plan_backends == {chosen.name}
    notes: list[str] = []
    if not comparable:
        notes.append(
            f"the plan predicts {'/'.join(sorted(plan_backends))} times; measuring on {chosen.name} checks outputs "
            "and reports times, but stage times are not compared against the predictions"
        )
    with tempfile.TemporaryDirectory(prefix="tpuplan-verify-") as tmp:
        out_dir = Path(tmp) / "segments"
        write_split(loaded, out_dir, plan=plan, compile=chosen.compiled)
        split = load_split(out_dir, compiled=chosen.compiled)
        feeds = _feeds(loaded, inputs, seed)
        stages_alone, chained = _time_alone(build_stages(split, chosen, devs), feeds, repeats)
        run = run_pipeline(build_stages(split, chosen, devs), feeds, model_outputs=split.manifest.model.outputs,
                           stage_timeout_s=None)
    outputs_match, outputs_note = _compare_outputs(chosen, loaded.data, feeds, run.results)
    cores = float(len(devs)) if chosen.compiled else effective_cores(loaded.data)
    return _report(plan, chosen, devs, tolerance, comparable, notes, stages_alone, chained, run, cores,
                   outputs_match, outputs_note)


def _feeds(loaded: LoadedModel, n: int, seed: int) -> list[dict[str, Array]]:
    whole = InterpreterStage("whole", loaded.data, where=str(loaded.path))
    rng = np.random.default_rng(seed)
    feeds = [random_inputs(whole.input_details(), rng) for _ in range(n)]
    whole.close()
    return feeds


def _time_alone(stages: list[InterpreterStage], feeds: list[dict[str, Array]], repeats: int
                ) -> tuple[list[float], list[float]]:
    """One input at a time through the stages in turn: each stage's median time alone, and the chained
    single-input latencies (stages alternate, so a slow spell of the machine hits them alike)."""
    per_stage: list[list[float]] = [[] for _ in stages]
    chained: list[float] = []
    warmup = 3
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
    for st in stages:
        st.close()
    return [float(statistics.median(x)) for x in per_stage], chained


def _compare_outputs(backend: Backend, model_content: bytes, feeds: list[dict[str, Array]],
                     results: list[dict[str, Array]]) -> tuple[bool | None, str]:
    """Pipeline outputs against the unsplit model (CPU kernels on both sides: bit-identical expected)."""
    if backend.compiled:
        return None, "not compared: Edge TPU segments against the CPU model differ by design"
    whole = InterpreterStage("whole", model_content)
    try:
        reference = [whole.run(feed) for feed in feeds]
    finally:
        whole.close()
    mismatches = [
        i for i, (got, ref) in enumerate(zip(results, reference, strict=True))
        if set(got) != set(ref) or any(not np.array_equal(got[k], ref[k]) for k in ref)
    ]
    if not mismatches:
        return True, f"all {len(feeds)} outputs bit-identical to the unsplit model"
    return False, f"{len(mismatches)} of {len(feeds)} inputs differ, first #{mismatches[0]}"


def invoke_part_us(stage: StagePlan) -> int:
    """What one stage's own run takes (its interpreter's invoke: device and host ops), without the runner's
    queues and hand-offs: what a stage timed alone measures."""
    return stage.predicted_device_us + stage.predicted_host_ops_us


def _stage_checks(plan: Plan, alone: list[float], run: PipelineRun, tolerance: float) -> list[StageCheck]:
    checks = []
    for sp, t, stat in zip(plan.stages, alone, run.stats, strict=True):
        predicted = invoke_part_us(sp)
        rel = abs(t - predicted) / max(t, 1e-9)
        checks.append(StageCheck(
            index=sp.index, device=sp.device, first_op=sp.first_op, last_op=sp.last_op,
            predicted_us=float(predicted), measured_us=round(t, 1),
            measured_in_pipeline_us=round(stat.median_us, 1), rel_error=round(rel, 4),
            within_tolerance=rel <= tolerance,
        ))
    return checks


def _report(plan: Plan, backend: Backend, devices: list[str | None], tolerance: float, comparable: bool,
            notes: list[str], alone: list[float], chained: list[float], run: PipelineRun, cores: float,
            outputs_match: bool | None, outputs_note: str) -> VerifyReport:
    """Predicted against measured, stage by stage and for the whole pipeline, with a verdict."""
    k = len(devices)
    n_inputs = len(run.results)
    measured_tp = float(n_inputs) / run.wall_s if run.wall_s > 0 else 0.0
    checks = _stage_checks(plan, alone, run, tolerance)
    total_pred = float(sum(invoke_part_us(sp) for sp in plan.stages))
    bottleneck = float(max(invoke_part_us(sp) for sp in plan.stages))
    overhead = pipeline_overhead_us(k)
    ideal = 1e6 / (bottleneck + overhead) if bottleneck + overhead > 0 else 0.0
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
    if outputs_match is False:
        verdict = "outputs_differ"
    elif comparable and any(not c.within_tolerance for c in checks):
        verdict = "prediction_missed"
        notes.append(
            f"stage {worst.index} measured {worst.measured_us:.0f} us vs predicted {worst.predicted_us:.0f} us "
            f"({worst.rel_error:.0%} off, tolerance {tolerance:.0%})"
        )
    lat = run.latencies_us
    return VerifyReport(
        model_sha256=plan.model.sha256, plan_sha256=plan_digest(plan), backend=backend.name,
        devices=[d or backend.name for d in devices], inputs=n_inputs, tolerance=tolerance, comparable=comparable,
        stages=checks, predicted_bottleneck_us=bottleneck, measured_bottleneck_us=round(max(alone), 1),
        predicted_latency_us=total_pred, measured_latency_us=round(float(statistics.median(chained)), 1),
        effective_cores=cores, predicted_throughput_ideal_per_s=round(ideal, 2),
        predicted_throughput_per_s=round(limited, 2), measured_throughput_per_s=round(measured_tp, 2),
        throughput_rel_error=round(abs(measured_tp - limited) / max(measured_tp, 1e-9), 4),
        pipeline_overhead_us=round(overhead, 1), pipeline_latency_p50_us=round(_percentile(lat, 50), 1),
        pipeline_latency_p90_us=round(_percentile(lat, 90), 1), pipeline_latency_p99_us=round(_percentile(lat, 99), 1),
        outputs_match=outputs_match, outputs_note=outputs_note, worst_stage=worst.index, verdict=verdict, notes=notes,
    )
