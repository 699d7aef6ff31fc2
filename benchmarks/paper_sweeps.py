"""The published multi-TPU results beside our predictions for the same model families (no hardware).

FC: 4 hidden Dense(N) layers, N = 100..3000, priced with the python-threads host (the runner of the
FC measurements), per input over a batch of 50; conv: 5 Conv2D(F) layers on 64x64x3, F = 32..742,
with the pycoral host (fresh runner, one-off upload included), per input over a batch of 100. For each
size: the predicted time of one invoke on one TPU, and the predicted time per input with 2, 3, 4 TPUs for
our plan (exactly K TPUs, and the best of up to K) and for the Edge TPU compiler's equal-parameter split.
Every number here is PREDICTED. Published (Villarrubia et al., Euromicro PDP 2023, arXiv:2503.01025):
up to 46x (FC) and 6x (conv) for 4 TPUs over one, and up to 2.6x for a profiled split over the compiler's.
Run: python -m benchmarks.paper_sweeps [--step-fc 100] [--step-conv 30]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.common import MEASUREMENTS, fmt_table, write_results
from tpuplan.planner.baselines import param_balanced_cuts
from tpuplan.planner.costs import Goal, stage_tables, totals
from tpuplan.planner.search.engine import solve_tables
from tpuplan.planner.solve import solve
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.calibration.measurements import read_measurements
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import HostSpec, host_preset
from tpuplan.profiles.pricing.tables import stage_table
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite.reader import parse_model

PUBLISHED = {"fc_4tpu_over_1": 46.0, "conv_4tpu_over_1": 6.0, "balanced_over_compiler": 2.6}
DATA = MEASUREMENTS
SINGLE = {"fc": "fc_single_tpu.csv", "conv": "conv_single_tpu.csv"}


def measured_single(family: str) -> dict[int, float]:
    """The measured one-TPU time (us) of each size in the single-TPU sweep, where the data are here."""
    path = DATA / SINGLE[family]
    return {m.x: m.ms * 1000 for m in read_measurements(path).rows} if path.is_file() else {}


SETUP = {"fc": ("python-threads", 50), "conv": ("pycoral", 100)}  # host and batch of the measurements


def _profile(family: str, x: int, host: HostSpec) -> Profile:
    data = synth_fc(x, weights="zeros") if family == "fc" else synth_conv(x, weights="zeros")
    return build_profile(parse_model(data, Path(f"{family}_{x}.tflite")), preset("edgetpu-usb"), host)


def _k_row(prof: Profile, host: HostSpec, goal: Goal, k: int, batch: int) -> dict[str, Any]:
    tables = stage_tables(prof, [preset("edgetpu-usb")] * k, host)
    t0 = time.perf_counter()
    exact = solve_tables(tables, goal, allow_spill=True, prove=False)
    best = solve(prof, k, host=host, goal=goal, allow_spill=True)
    comp_cuts = param_balanced_cuts([op.param_bytes for op in prof.ops], k)
    return {
        f"solve_s_{k}": round(time.perf_counter() - t0, 3),
        f"ours_{k}_us": round(totals(tables, exact.cuts, goal).per_input_us(batch)),
        f"best_{k}_us": round(best.predicted_per_input_us or 0),
        f"best_{k}_tpus": best.tpus,
        f"compiler_{k}_us": round(totals(tables, comp_cuts, goal).per_input_us(batch)),
    }


def sweep(family: str, sizes: list[int]) -> list[dict[str, Any]]:
    runner, batch = SETUP[family]
    host = host_preset(runner)
    goal = Goal("throughput", batch)
    measured = measured_single(family)
    rows = []
    for x in sizes:
        prof = _profile(family, x, host)
        single = stage_table(prof).stage_parts(0, len(prof.ops) - 1)
        one = single.invoke_us  # one invoke on one TPU, as the single-TPU sweeps time it
        row: dict[str, Any] = {"family": family, "x": x, "host": runner, "batch": batch, "t1_us": one}
        for k in (2, 3, 4):
            row.update(_k_row(prof, host, goal, k, batch))
        row["speedup_4_over_1"] = round(one / row["ours_4_us"], 2)
        row["measured_t1_us"] = measured.get(x)
        row["speedup_4_over_measured_1"] = round(measured[x] / row["ours_4_us"], 2) if x in measured else None
        row["speedup_best_4_over_1"] = round(one / row["best_4_us"], 2)
        row["best_ours_over_compiler"] = max(round(row[f"compiler_{k}_us"] / row[f"ours_{k}_us"], 2) for k in (2, 3, 4))
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step-fc", type=int, default=100)
    parser.add_argument("--step-conv", type=int, default=30)
    args = parser.parse_args()
    fc = sweep("fc", list(range(100, 3001, args.step_fc)))
    conv = sweep("conv", list(range(32, 743, args.step_conv)))
    head = [
        "model",
        "x",
        "1 TPU ms",
        "2 TPU ms",
        "3 TPU ms",
        "4 TPU ms",
        "best <=4 (TPUs)",
        "compiler 4 ms",
        "4 vs 1",
        "ours vs compiler (best K)",
    ]
    table = [
        [
            r["family"],
            r["x"],
            r["t1_us"] / 1000,
            r["ours_2_us"] / 1000,
            r["ours_3_us"] / 1000,
            r["ours_4_us"] / 1000,
            f"{r['best_4_us'] / 1000:.3f} ({r['best_4_tpus']})",
            r["compiler_4_us"] / 1000,
            f"{r['speedup_4_over_1']:.1f}x",
            f"{r['best_ours_over_compiler']:.2f}x",
        ]
        for r in fc + conv
    ]
    print("All times PREDICTED (edgetpu-usb; FC: python-threads host, per input over 50; conv: pycoral, over 100).")
    print(fmt_table(head, table))

    def best(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows if r[key] is not None]
        return max(values) if values else None

    summary = {
        "fc_max_4tpu_over_1": max(r["speedup_4_over_1"] for r in fc),
        "fc_max_4tpu_over_measured_1": best(fc, "speedup_4_over_measured_1"),
        "conv_max_4tpu_over_measured_1": best(conv, "speedup_4_over_measured_1"),
        "fc_max_ours_over_compiler": best(fc, "best_ours_over_compiler"),
        "conv_max_ours_over_compiler": best(conv, "best_ours_over_compiler"),
        "fc_max_best_4tpu_over_1": max(r["speedup_best_4_over_1"] for r in fc),
        "conv_max_4tpu_over_1": max(r["speedup_4_over_1"] for r in conv),
        "max_ours_over_compiler": max(r["best_ours_over_compiler"] for r in fc + conv),
        "never_worse_than_compiler": all(
            r[f"ours_{k}_us"] <= r[f"compiler_{k}_us"] for r in fc + conv for k in (2, 3, 4)
        ),
        "max_solve_s": max(r[f"solve_s_{k}"] for r in fc + conv for k in (2, 3, 4)),
    }
    print(
        f"\nmax 4-TPU speed-up over 1 TPU (both predicted): FC {summary['fc_max_4tpu_over_1']}x (best plan of up "
        f"to 4 TPUs: {summary['fc_max_best_4tpu_over_1']}x; published up to {PUBLISHED['fc_4tpu_over_1']}x), conv "
        f"{summary['conv_max_4tpu_over_1']}x (published up to {PUBLISHED['conv_4tpu_over_1']}x)"
    )
    print(
        f"over the MEASURED one-TPU time of the same size: FC {summary['fc_max_4tpu_over_measured_1']}x, conv "
        f"{summary['conv_max_4tpu_over_measured_1']}x"
    )
    print(
        f"our plan over the compiler's equal-parameter split: FC up to {summary['fc_max_ours_over_compiler']}x, "
        f"conv up to {summary['conv_max_ours_over_compiler']}x (published up to "
        f"{PUBLISHED['balanced_over_compiler']}x, conv); never worse: {summary['never_worse_than_compiler']}"
    )
    out = write_results(
        "paper_sweeps",
        {"predicted": True, "published": PUBLISHED, "setup": SETUP, "summary": summary, "rows": fc + conv},
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
