"""Predicted vs measured stage time on the CPU backend, over the CPU models of ../shared/models.

For each model: measure a per-op CPU profile, solve K = 2 and 3, verify (split, run, time each stage
alone). Goal: median relative error between predicted and measured stage time <= 15%.
Run: python -m benchmarks.verify_cpu [--inputs N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.common import cpu_model_paths, fmt_table, write_results
from tpuplan.planner.solve import solve
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.tflite.reader import load_model
from tpuplan.runtime.measure import measure_profile
from tpuplan.runtime.verify.check import verify

GOAL = 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tpus", default="2,3")
    args = parser.parse_args()
    ks = [int(k) for k in args.tpus.split(",")]
    rows: list[list[object]] = []
    records: list[dict[str, object]] = []
    errors: list[float] = []
    for path in cpu_model_paths():
        t0 = time.perf_counter()
        try:
            loaded = load_model(path)
            profile = measure_profile(loaded, repeats=args.repeats)
        except TpuplanError as exc:
            print(f"skip {path.name}: {exc}")
            continue
        t_profile = time.perf_counter() - t0
        for k in ks:
            if k > len(profile.ops):
                continue
            plan = solve(profile, k)
            rep = verify(plan, loaded, inputs=args.inputs, repeats=args.repeats)
            stage_err = [c.rel_error for c in rep.stages]
            errors.extend(stage_err)
            rows.append(
                [
                    path.name[:44],
                    k,
                    f"{rep.predicted_bottleneck_us / 1000:.2f}",
                    f"{rep.measured_bottleneck_us / 1000:.2f}",
                    f"{max(stage_err):.1%}",
                    f"{rep.predicted_throughput_per_s:.1f}",
                    f"{rep.measured_throughput_per_s:.1f}",
                    f"{rep.throughput_rel_error:.1%}",
                    "yes" if rep.outputs_match else "NO",
                ]
            )
            records.append(
                {"model": path.name, "tpus": k, "profile_s": round(t_profile, 2), "report": rep.model_dump(mode="json")}
            )
    head = [
        "model",
        "K",
        "pred bottleneck ms",
        "meas ms",
        "worst stage err",
        "pred tp/s",
        "meas tp/s",
        "tp err",
        "outputs equal",
    ]
    print(fmt_table(head, rows))
    median = statistics.median(errors) if errors else float("nan")
    print(f"\nstages: {len(errors)}; median relative error {median:.1%} (goal <= {GOAL:.0%}); worst {max(errors):.1%}")
    out = write_results(
        "verify_cpu",
        {
            "goal_median_rel_error": GOAL,
            "median_rel_error": median,
            "worst_rel_error": max(errors),
            "stages": len(errors),
            "runs": records,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
