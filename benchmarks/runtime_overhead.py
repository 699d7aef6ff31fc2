"""Host time per input per stage of our runners, for 1, 2, 4 and 8 stages of a trivially small model.

The model is a synthetic int8 FC net (profiles.synth: 16 inputs, four Dense(16, tanh), Dense(4); 11 ops,
a few microseconds per invoke) cut into K nearly equal segments. Each runner pushes the same inputs
through the K segments; per runner and K the best of several runs (a busy machine only ever makes a run
slower) gives, per input and per stage:
  wall       wall time / (inputs x K): the pipeline's whole cost, stage work included (the goal's number);
  cpu        host CPU time (this process, plus the stage processes of `processes`) / (inputs x K);
  runner     (wall per input - the K segments' own run times, each timed alone) / K: the runner's part;
and for the threads runner also `empty` (K pass-through stages: queues and hand-offs only). The copy
cost per KiB of boundary tensors (set_tensor + get_tensor of a 128 KiB activation) and the serialized
share (runtime.verify.hostcost: extra wall over extra CPU time, 8 empty stages against 1) complete the runner
fields of the `tpuplan` host preset; its `stage_us` is the runner part of the median run, K = 2, 4, 8
(a typical run on a shared machine, not its best moment).
Goal: wall <= 20 us per stage per input for the threads runner here. Not run by CI (a few minutes).
Run: python -m benchmarks.runtime_overhead [--inputs N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import fmt_table, write_results
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite.reader import parse_model
from tpuplan.runtime.backends.probe import probe_models
from tpuplan.runtime.backends.registry import InterpreterStage, allocate, new_interpreter
from tpuplan.runtime.pipeline.pycoral import load_pycoral
from tpuplan.runtime.pipeline.runners import open_pipeline
from tpuplan.runtime.pipeline.stage import StageSource
from tpuplan.runtime.run import drive
from tpuplan.runtime.split.cut import split_model
from tpuplan.runtime.verify.hostcost import empty_period_us, serialized_share

GOAL_US = 20.0
STAGES = (1, 2, 4, 8)


def _segments(k: int) -> tuple[list[bytes], str, str]:
    data = synth_fc(16, depth=4, in_features=16, out_features=4, seed=1)
    loaded = parse_model(data, Path("overhead_fc.tflite"))
    n = len(loaded.subgraph.operators)
    cuts = [round((i + 1) * n / k) - 1 for i in range(k - 1)]
    segs = [s.data for s in split_model(loaded, cuts)]
    probe_models([(f"segment {i}", d) for i, d in enumerate(segs)])
    whole = InterpreterStage("whole", data)
    names = whole.input_names[0], whole.output_names[0]
    whole.close()
    return segs, *names


def _alone_us(segs: list[bytes], x: np.ndarray, reps: int = 2000) -> float:
    """Sum over the segments of the median time of one run alone (set, invoke, get)."""
    total = 0.0
    value = x
    for data in segs:
        stage = InterpreterStage("alone", data)
        samples = []
        for r in range(reps + 100):
            t0 = time.perf_counter_ns()
            out = stage.run_arrays([value])
            if r >= 100:
                samples.append((time.perf_counter_ns() - t0) / 1e3)
        value = out[0]
        total += float(statistics.median(samples))
        stage.close()
    return total


def measure(runner: str, k: int, inputs: int, repeats: int) -> dict[str, Any]:
    segs, in_name, out_name = _segments(k)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 16)).astype(np.float32)
    runs = []
    for _ in range(repeats):
        sources = [StageSource(f"s{i}", d, f"segment {i}") for i, d in enumerate(segs)]
        pipe = open_pipeline(runner, sources, model_outputs=[out_name], queue_size=32, stage_timeout_s=None)
        run = drive(pipe, ({in_name: x} for _ in range(inputs)))
        assert run.count == inputs
        runs.append((run.wall_s * 1e6 / inputs, run.cpu_s * 1e6 / inputs))
    alone = _alone_us(segs, x)
    walls = sorted(w for w, _ in runs)
    best_wall, best_cpu = min(runs)
    median_wall = walls[len(walls) // 2]
    return {
        "runner": runner,
        "stages": k,
        "inputs": inputs,
        "repeats": repeats,
        "wall_us_per_stage": round(best_wall / k, 2),
        "wall_us_per_stage_median": round(median_wall / k, 2),
        "cpu_us_per_stage": round(best_cpu / k, 2),
        "stage_work_us_per_stage": round(alone / k, 2),
        "runner_us_per_stage": round((best_wall - alone) / k, 2),
        "runner_us_per_stage_median": round((median_wall - alone) / k, 2),
    }


def copy_us_per_kib(reps: int = 2000) -> float:
    """set_tensor + get_tensor of a 128 KiB int8 activation (a 1x1 conv on 64x64x32), per KiB moved."""
    data = synth_conv(32, layers=1, size=64, channels=32, kernel=1, seed=1)
    interp = new_interpreter(data, "copy probe")
    allocate(interp, "copy probe")
    d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
    x = np.zeros(d_in["shape"], dtype=d_in["dtype"])
    interp.set_tensor(d_in["index"], x)
    interp.invoke()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        interp.set_tensor(d_in["index"], x)
        out = interp.get_tensor(d_out["index"])
        samples.append((time.perf_counter_ns() - t0) / 1e3)
    kib = (int(x.nbytes) + int(out.nbytes)) / 1024
    return round(float(statistics.median(samples)) / kib, 4)


def _have_pycoral() -> bool:
    try:
        load_pycoral()
    except TpuplanError as exc:
        print(f"pycoral runner skipped: {exc}")
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runners", default="threads,processes,pycoral", help="comma list; pycoral only if installed")
    args = parser.parse_args()
    load_before = list(os.getloadavg())
    runners = [r for r in args.runners.split(",") if r != "pycoral" or _have_pycoral()]
    rows: list[list[object]] = []
    records = []
    for runner in runners:
        for k in STAGES:
            rec = measure(runner, k, args.inputs if runner != "processes" else args.inputs // 2, args.repeats)
            if runner == "threads":
                rec["empty_us_per_stage"] = round(empty_period_us(k, items=args.inputs, queue_size=32)[0] / k, 2)
            records.append(rec)
            rows.append(
                [
                    runner,
                    k,
                    *(
                        rec[f]
                        for f in (
                            "wall_us_per_stage",
                            "wall_us_per_stage_median",
                            "cpu_us_per_stage",
                            "runner_us_per_stage",
                            "stage_work_us_per_stage",
                        )
                    ),
                    rec.get("empty_us_per_stage", "-"),
                ]
            )
            print(f"  {runner} K={k}: {rec['wall_us_per_stage']} us per stage per input", flush=True)
    one, eight = (empty_period_us(k, items=args.inputs, queue_size=32) for k in (1, 8))
    per_kib = copy_us_per_kib()
    head = ["runner", "K", "wall us (best)", "wall us (median)", "cpu us", "runner us", "stage work us", "empty us"]
    print(
        "\nhost time per input per stage, measured on this machine (best of "
        f"{args.repeats} runs of {args.inputs} inputs; processes: {args.inputs // 2})"
    )
    print(fmt_table(head, rows))
    threads = [r for r in records if r["runner"] == "threads"]
    worst = max(r["wall_us_per_stage"] for r in threads)
    runner_part = statistics.median(r["runner_us_per_stage_median"] for r in threads if r["stages"] > 1)
    serialized = serialized_share(one, eight)
    print(
        f"\nthreads runner: worst {worst:.1f} us per stage per input over K = 1..8 (goal <= {GOAL_US:g} us); "
        f"runner part (K >= 2, median run) {runner_part:.1f} us; copies {per_kib:.4f} us per KiB; serialized "
        f"share {serialized} (empty stages, 1 vs 8; this machine: {os.cpu_count()} vCPUs)"
    )
    path = write_results(
        "runtime_overhead",
        {
            "goal_us_per_stage": GOAL_US,
            "threads_worst_wall_us_per_stage": worst,
            "cpu_count": os.cpu_count(),
            "load_average_before_after": [load_before, list(os.getloadavg())],
            "runs": records,
            "host_preset_fields": {
                "stage_us": round(runner_part, 1),
                "stage_us_per_kib": per_kib,
                "serialized": serialized,
                "serialized_device": "not measured here (no Edge TPU)",
            },
            "method": __doc__,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
