"""`plan verify`: split a plan's model, run it, and compare the plan's predictions with measurements.

Measured numbers come from this machine's runs; predicted numbers come from the plan. Both are
labelled. Stage times are measured in isolation (one stage at a time, warm, median), because that is
what a stage prediction describes; the pipeline's throughput is measured with all stages running.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from planner.plan import Plan, load_plan
from profiles.docio import load_doc, read_bytes
from profiles.errors import TpuplanError
from profiles.tflite import load_model
from runtime.backends import InterpreterStage, random_inputs
from runtime.edgetpu import require_tpus
from runtime.manifest import SegmentManifest, segment_path
from runtime.pipeline import FunctionStage, Pipeline
from runtime.segments import write_split

REPORT_KIND: Final = "tpuplan.verify"
REPORT_VERSION: Final = 1


class StageCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int
    device: str
    first_op: int
    last_op: int
    predicted_us: float
    measured_us: float = Field(description="median warm time of the stage alone on this machine")
    measured_in_pipeline_us: float = Field(description="median invoke time while all stages ran")
    rel_error: float
    within_tolerance: bool


class VerifyReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["tpuplan.verify"] = REPORT_KIND
    schema_version: Literal[1] = REPORT_VERSION
    model_sha256: str
    plan_sha256: str
    backend: Literal["cpu", "edgetpu"]
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
        stages = [InterpreterStage(f"probe{i}", content=model_content) for i in range(n_threads)]
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

    stages = [forward(i) for i in range(k)]
    feeds = [{"t0": np.zeros(4, dtype=np.int8)} for _ in range(items)]
    start = time.perf_counter()
    with Pipeline(stages, model_outputs=[f"t{k}"], queue_size=2) as pipe:
        pipe.run_all(feeds)
    return (time.perf_counter() - start) * 1e6 / (items * k)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


def verify(
    plan_path: Path,
    model_path: Path,
    *,
    backend: str = "cpu",
    devices: list[str] | None = None,
    inputs: int = 50,
    tolerance: float = 0.15,
    repeats: int = 30,
    seed: int = 0,
) -> VerifyReport:
    """Split, run, measure and compare. Raises TpuplanError on bad input; the verdict says the rest."""
    if backend not in ("cpu", "edgetpu"):
        raise TpuplanError(f"unknown backend {backend!r} (use cpu or edgetpu)")
    if inputs < 1:
        raise TpuplanError("--inputs must be at least 1")
    plan = load_plan(plan_path)
    loaded = load_model(model_path, allow_edgetpu=False)
    if plan.model.sha256 != loaded.sha256:
        raise TpuplanError(
            f"{plan_path}: plan is for model sha256 {plan.model.sha256[:12]}, but {model_path} is "
            f"{loaded.sha256[:12]}"
        )
    k = len(plan.stages)
    if backend == "edgetpu":
        devices = devices or require_tpus(k)
        if len(devices) != k:
            raise TpuplanError(f"{k} stages need {k} devices, got {len(devices)}: {', '.join(devices)}")
    plan_backends = {s.backend for s in plan.devices}
    comparable = plan_backends == {backend}
    notes: list[str] = []
    if not comparable:
        notes.append(
            f"the plan predicts {'/'.join(sorted(plan_backends))} times; measuring on {backend} checks outputs "
            "and reports times, but stage times are not compared against the predictions"
        )
    with tempfile.TemporaryDirectory(prefix="tpuplan-verify-") as tmp:
        out_dir = Path(tmp) / "segments"
        manifest = write_split(model_path, plan_path, out_dir, compile=(backend == "edgetpu"))
        return _measure(plan, plan_path, loaded.data, manifest, out_dir, backend, devices, inputs,
                        tolerance, repeats, seed, comparable, notes)


def _reference_outputs(content: bytes, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    whole = InterpreterStage("whole", content=content)
    try:
        return [whole.run(feed) for feed in feeds]
    finally:
        whole.close()


def _measure(
    plan: Plan,
    plan_path: Path,
    model_content: bytes,
    manifest: SegmentManifest,
    out_dir: Path,
    backend: str,
    devices: list[str] | None,
    n_inputs: int,
    tolerance: float,
    repeats: int,
    seed: int,
    comparable: bool,
    notes: list[str],
) -> VerifyReport:
    compiled = backend == "edgetpu"

    def make_stages() -> list[InterpreterStage]:
        return [
            InterpreterStage(
                f"stage{seg.index}",
                path=segment_path(out_dir, seg, compiled=compiled),
                device=devices[seg.index] if devices else None,
            )
            for seg in manifest.segments
        ]

    whole = InterpreterStage("whole", content=model_content)
    rng = np.random.default_rng(seed)
    feeds = [random_inputs(whole.input_details(), rng) for _ in range(n_inputs)]
    model_outputs = whole.output_names
    whole.close()

    # 1. one input at a time through the stages in turn: each stage timed alone, the rounds giving the
    #    single-input latency too (stages alternate, so a slow spell of the machine hits them alike)
    stages = make_stages()
    per_stage: list[list[float]] = [[] for _ in stages]
    chained: list[float] = []
    for r in range(repeats + 3):
        available = dict(feeds[r % len(feeds)])
        total = 0.0
        for k, st in enumerate(stages):
            feed = {name: available[name] for name in st.input_names}
            t0 = time.perf_counter_ns()
            available.update(st.run(feed))
            dt = (time.perf_counter_ns() - t0) / 1000.0
            total += dt
            if r >= 3:  # warm-up rounds
                per_stage[k].append(dt)
        if r >= 3:
            chained.append(total)
    stage_alone = [float(statistics.median(x)) for x in per_stage]
    for st in stages:
        st.close()

    # 2. the pipeline, every stage in its own thread
    start = time.perf_counter()
    with Pipeline(make_stages(), model_outputs=model_outputs, queue_size=2) as pipe:
        results = pipe.run_all(feeds)
        wall = time.perf_counter() - start
        stats = pipe.stats()
        latencies = pipe.latencies_us()
    measured_tp = float(n_inputs) / wall if wall > 0 else 0.0

    # 3. outputs against the unsplit model (CPU kernels on both sides: bit-identical expected)
    if compiled:
        outputs_match: bool | None = None
        outputs_note = "not compared: Edge TPU segments against the CPU model differ by design"
    else:
        reference = _reference_outputs(model_content, feeds)
        mismatches = [
            i for i, (got, ref) in enumerate(zip(results, reference, strict=True))
            if set(got) != set(ref) or any(not np.array_equal(got[k], ref[k]) for k in ref)
        ]
        outputs_match = not mismatches
        outputs_note = (
            f"all {n_inputs} outputs bit-identical to the unsplit model"
            if outputs_match else f"{len(mismatches)} of {n_inputs} inputs differ, first #{mismatches[0]}"
        )

    cores = effective_cores(model_content) if backend == "cpu" else float(len(stages))
    checks: list[StageCheck] = []
    for sp, alone, stat in zip(plan.stages, stage_alone, stats, strict=True):
        rel = abs(alone - sp.predicted_us) / max(alone, 1e-9)
        checks.append(StageCheck(
            index=sp.index, device=sp.device, first_op=sp.first_op, last_op=sp.last_op,
            predicted_us=float(sp.predicted_us), measured_us=round(alone, 1),
            measured_in_pipeline_us=round(stat.median_us, 1), rel_error=round(rel, 4),
            within_tolerance=rel <= tolerance,
        ))
    total_pred = float(sum(sp.predicted_us for sp in plan.stages))
    bottleneck = float(plan.predicted_bottleneck_us)
    overhead = pipeline_overhead_us(len(stages))
    ideal = 1e6 / (bottleneck + overhead) if bottleneck + overhead > 0 else 0.0
    limited = min(ideal, cores * 1e6 / (total_pred + len(stages) * overhead))
    tp_err = abs(measured_tp - limited) / max(measured_tp, 1e-9)
    if backend == "cpu":
        notes.append(
            f"this machine ran {cores:g} interpreters' worth of work at once (measured) and the pipeline "
            f"itself costs {overhead:.0f} us per item and stage (measured with empty stages), so the predicted "
            f"throughput is min(1/(slowest stage + that), {cores:g} / (sum of stages + K x that)) = {limited:.1f}/s; "
            f"with one core per stage it would be {ideal:.1f}/s"
        )
    worst = max(checks, key=lambda c: c.rel_error)
    missed = comparable and any(not c.within_tolerance for c in checks)
    if outputs_match is False:
        verdict: Literal["ok", "prediction_missed", "outputs_differ"] = "outputs_differ"
    elif missed:
        verdict = "prediction_missed"
        notes.append(
            f"stage {worst.index} measured {worst.measured_us:.0f} us vs predicted {worst.predicted_us:.0f} us "
            f"({worst.rel_error:.0%} off, tolerance {tolerance:.0%})"
        )
    else:
        verdict = "ok"
    return VerifyReport(
        model_sha256=plan.model.sha256,
        plan_sha256=hashlib.sha256(read_bytes(plan_path, what="plan")).hexdigest(),
        backend=backend,  # type: ignore[arg-type]
        devices=devices or ["cpu"] * len(stages),
        inputs=n_inputs,
        tolerance=tolerance,
        comparable=comparable,
        stages=checks,
        predicted_bottleneck_us=bottleneck,
        measured_bottleneck_us=round(max(stage_alone), 1),
        predicted_latency_us=total_pred,
        measured_latency_us=round(float(statistics.median(chained)), 1),
        effective_cores=cores,
        predicted_throughput_ideal_per_s=round(ideal, 2),
        predicted_throughput_per_s=round(limited, 2),
        measured_throughput_per_s=round(measured_tp, 2),
        throughput_rel_error=round(tp_err, 4),
        pipeline_overhead_us=round(overhead, 1),
        pipeline_latency_p50_us=round(_percentile(latencies, 50), 1),
        pipeline_latency_p90_us=round(_percentile(latencies, 90), 1),
        pipeline_latency_p99_us=round(_percentile(latencies, 99), 1),
        outputs_match=outputs_match,
        outputs_note=outputs_note,
        worst_stage=worst.index,
        verdict=verdict,
        notes=notes,
    )
