"""The published multi-TPU sweeps, predicted under the calibrated cost model (no hardware involved).

FC: 4 hidden Dense(N) layers, N = 100..3000; conv: 5 Conv2D(F) layers on 64x64x3, F = 32..742 (the model
families of ../shared/edgetpu-measurements, built with `plan synth`). For each size: predicted time on
1 TPU, and the pipelined bottleneck on 2, 3, 4 TPUs with our optimal plan and with the Edge TPU
compiler's equal-parameter split. Every number here is PREDICTED.
Published figures to set beside ours: up to 46x (FC) and 6x (conv) for 4 TPUs over one, and up to 2.6x
for a balanced split over the compiler's (Villarrubia et al., Euromicro PDP 2023, arXiv:2503.01025).
Run: python -m benchmarks.paper_sweeps [--step-fc 100] [--step-conv 30]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.common import fmt_table, write_results
from tpuplan.planner.baselines import param_balanced_cuts
from tpuplan.planner.plan import evaluate
from tpuplan.planner.solve import solve
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.device import preset
from tpuplan.profiles.model import Profile
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite import parse_model

PUBLISHED = {"fc_4tpu_over_1": 46.0, "conv_4tpu_over_1": 6.0, "balanced_over_compiler": 2.6}


def _profile(family: str, x: int) -> Profile:
    data = synth_fc(x, weights="zeros") if family == "fc" else synth_conv(x, weights="zeros")
    return build_profile(parse_model(data, Path(f"{family}_{x}.tflite")), preset("edgetpu-usb"))


def sweep(family: str, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for x in sizes:
        prof = _profile(family, x)
        one = evaluate(prof, None, []).predicted_bottleneck_us
        row: dict[str, Any] = {"family": family, "x": x, "t1_us": one}
        for k in (2, 3, 4):
            t0 = time.perf_counter()
            ours = solve(prof, k, allow_spill=True)
            row[f"solve_s_{k}"] = round(time.perf_counter() - t0, 3)
            comp = evaluate(prof, None, param_balanced_cuts([op.param_bytes for op in prof.ops], k))
            row[f"ours_{k}_us"] = ours.predicted_bottleneck_us
            row[f"compiler_{k}_us"] = comp.predicted_bottleneck_us
            row[f"ours_{k}_offchip"] = sum(s.predicted_offchip_bytes for s in ours.stages)
            row[f"compiler_{k}_offchip"] = sum(s.predicted_offchip_bytes for s in comp.stages)
        row["speedup_4_over_1"] = round(one / row["ours_4_us"], 2)
        row["ours_over_compiler_4"] = round(row["compiler_4_us"] / row["ours_4_us"], 2)
        row["best_ours_over_compiler"] = max(
            round(row[f"compiler_{k}_us"] / row[f"ours_{k}_us"], 2) for k in (2, 3, 4)
        )
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step-fc", type=int, default=100)
    parser.add_argument("--step-conv", type=int, default=30)
    args = parser.parse_args()
    fc = sweep("fc", list(range(100, 3001, args.step_fc)))
    conv = sweep("conv", list(range(32, 743, args.step_conv)))
    head = ["model", "x", "1 TPU ms", "2 TPU ms", "3 TPU ms", "4 TPU ms", "compiler 4 ms", "4 vs 1",
            "ours vs compiler (best K)"]
    table = [[r["family"], r["x"], r["t1_us"] / 1000, r["ours_2_us"] / 1000, r["ours_3_us"] / 1000,
              r["ours_4_us"] / 1000, r["compiler_4_us"] / 1000, f"{r['speedup_4_over_1']:.1f}x",
              f"{r['best_ours_over_compiler']:.2f}x"] for r in fc + conv]
    print("All times PREDICTED under the calibrated edgetpu-usb cost model (pipelined = slowest stage).")
    print(fmt_table(head, table))
    summary = {
        "fc_max_4tpu_over_1": max(r["speedup_4_over_1"] for r in fc),
        "conv_max_4tpu_over_1": max(r["speedup_4_over_1"] for r in conv),
        "max_ours_over_compiler": max(r["best_ours_over_compiler"] for r in fc + conv),
        "never_worse_than_compiler": all(
            r[f"ours_{k}_us"] <= r[f"compiler_{k}_us"] for r in fc + conv for k in (2, 3, 4)
        ),
        "max_solve_s": max(r[f"solve_s_{k}"] for r in fc + conv for k in (2, 3, 4)),
    }
    print(f"\nmax 4-TPU speed-up over 1 TPU: FC {summary['fc_max_4tpu_over_1']}x "
          f"(published up to {PUBLISHED['fc_4tpu_over_1']}x), conv {summary['conv_max_4tpu_over_1']}x "
          f"(published up to {PUBLISHED['conv_4tpu_over_1']}x)")
    print(f"max gain of our plan over the compiler's equal-parameter split: {summary['max_ours_over_compiler']}x "
          f"(published up to {PUBLISHED['balanced_over_compiler']}x); never worse: "
          f"{summary['never_worse_than_compiler']}")
    out = write_results("paper_sweeps", {"predicted": True, "published": PUBLISHED, "summary": summary,
                                         "rows": fc + conv})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
