"""Benchmark: does the calibrated model predict real 2-TPU pipelines, including ones it was not fitted to?

For each of the four 2-TPU files of ../shared/edgetpu-measurements, the measured split priced by the
planner (stage tables + totals on the fitted specs) against the measured time per input:
- full fit: the specs fitted to all six files (goal: median relative error <= 10% per file);
- leave one file out: the specs fitted to the two single-TPU sweeps and the other three 2-TPU files,
  then the held-out file predicted (goal: median <= 20% per file); its cuts are inferred anew.

What can transfer: the device and link numbers are shared by every file (each pipeline stage is an
invoke() like a single-TPU row); runner numbers cannot be transferred between runners (research:
leave-one-runner-out misses by 19-54%), so each held-out file is predicted with the runner fitted to its
sibling: the two FC files are the same compilations run by the same Python-threads runner (only the
batch differs: 50 inputs show the period, 1 input the latency and start-up), the two conv files the same
pycoral runner on different splits.

    python -m benchmarks.fidelity [--data DIR]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.calibration import STUDY, fit_study, have_study, study_files, study_parser
from benchmarks.common import fmt_table, write_results
from tpuplan.profiles.calibration.fit import CalibrationPoint, CalibrationResult, predict

PIPELINES = tuple(name for name, run in STUDY.items() if run.runner is not None)
FULL_GOAL, HELD_OUT_GOAL = 0.10, 0.20


def errors(points: list[CalibrationPoint]) -> dict[str, float]:
    """Median, p90 and worst relative error, and the signed median (+: predicted too slow)."""
    err = [p.rel_error for p in points]
    signed = [(p.predicted_ms - p.measured_ms) / p.measured_ms for p in points]
    return {
        "median": round(statistics.median(err), 4),
        "p90": round(float(np.percentile(err, 90)), 4),
        "worst": round(max(err), 4),
        "signed_median": round(statistics.median(signed), 4),
    }


def held_out(data: Path, name: str) -> tuple[list[CalibrationPoint], CalibrationResult]:
    """Fit on every file but `name`, then predict `name` on those specs."""
    fit = fit_study(data, tuple(n for n in STUDY if n != name))
    return predict(study_files(data, (name,)), fit.device, fit.hosts), fit


def _runner_note(fit: CalibrationResult, runner: str) -> str:
    h = fit.hosts[runner]
    return (
        f"{runner}: stage {h.stage_us:g} us, serialized device {h.serialized_device:g}, start {h.start_us:g} us, "
        f"stream +{h.stream_extra_us:g}/+{h.stream_cold_us:g} us"
    )


def main(argv: list[str] | None = None) -> int:
    args = study_parser(__doc__).parse_args(argv)
    if not have_study(args.data):
        return 1
    start = time.perf_counter()
    full = fit_study(args.data)
    out: dict[str, dict[str, Any]] = {}
    rows = []
    for name in PIPELINES:
        mine = [p for p in full.points if p.file == name]
        loo, fit = held_out(args.data, name)
        runner = STUDY[name].runner or ""
        out[name] = {
            "runner": runner,
            "rows": len(mine),
            "full_fit": errors(mine),
            "held_out": errors(loo),
            "held_out_runner": fit.hosts[runner].model_dump(mode="json", exclude={"host_ops", "calibration"}),
            "held_out_points": [p.model_dump(mode="json") for p in loo],
        }
        f, h = out[name]["full_fit"], out[name]["held_out"]
        met = f["median"] <= FULL_GOAL and h["median"] <= HELD_OUT_GOAL
        rows.append(
            [
                name,
                runner,
                len(mine),
                f"{100 * f['median']:.1f}%",
                f"{100 * f['p90']:.1f}%",
                f"{100 * f['worst']:.1f}%",
                f"{100 * h['median']:.1f}%",
                f"{100 * h['p90']:.1f}%",
                f"{100 * h['worst']:.1f}%",
                f"{100 * h['signed_median']:+.1f}%",
                "met" if met else "MISSED",
            ]
        )
        print(f"held out {name}: {_runner_note(fit, runner)}")
    seconds = time.perf_counter() - start
    print("All times PREDICTED by the planner's model against MEASURED 2-TPU runs (relative error per input).")
    print(
        fmt_table(
            [
                "file",
                "runner",
                "rows",
                "fit median",
                "fit p90",
                "fit worst",
                "held-out median",
                "p90",
                "worst",
                "signed",
                "goal",
            ],
            rows,
        )
    )
    print(
        f"goals: median <= {100 * FULL_GOAL:.0f}% with every file in the fit, <= {100 * HELD_OUT_GOAL:.0f}% "
        f"held out; {seconds:.1f} s"
    )
    met = all(r[-1] == "met" for r in rows)
    payload = {
        "goals": {"full_fit_median": FULL_GOAL, "held_out_median": HELD_OUT_GOAL, "met": met},
        "seconds": round(seconds, 2),
        "files": out,
    }
    print(f"wrote {write_results('fidelity', payload)}")
    return 0 if met else 2


if __name__ == "__main__":
    sys.exit(main())
