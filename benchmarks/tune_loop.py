"""Hardware runs to a plan within 5% of the true optimum: our loop (`plan tune`) against libcoral's bisection
over a target latency (`partition_with_profiling`), on a SIMULATED Edge TPU (no hardware; nothing here is
a measurement).

The simulated device (`runtime.backends.simulated`, backend `edgetpu-sim`) is the edgetpu-usb preset and
the default host with every term of the cost formula off by a known factor (`TRUE_FACTORS`: link and
streaming 3x); its invokes advance a virtual clock. The true optimum of a model on K TPUs is the planner's
exact solve on those true specs (the simulated device prices a segment file alone exactly as the planner
prices that stage in the whole model: tests/runtime/test_simulated.py). A plan's true period is its cuts
priced on the true specs.

- ours: `runtime.tune.tune`, the loop of `plan tune`: solve with the presets, verify on `edgetpu-sim` (the real
  split, the CPU segments run for their outputs, the times from the virtual clock), re-plan with every
  report (measured stages kept, the rest priced by the refitted device and host), until the plan stops
  changing. "runs to 5%": the fewest runs after which the loop's plan is within 5% of the true optimum
  (0: the first plan already is).
- bisection: `benchmarks.bisection`, libcoral's search step for step; one run per candidate benchmarked
  (its segments cached as libcoral does). "runs to 5%": runs until its best partition is within 5%.

Run: python -m benchmarks.tune_loop [--tpus 2,3] [--quick]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bisection import Bisection, cuts_of
from benchmarks.common import MODELS, fmt_table, write_results
from tpuplan.planner.plan import Plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.planner.solve import solve
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.device import DeviceSpec, preset
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.stagecost import StagePricer
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite.reader import LoadedModel, load_model, parse_model
from tpuplan.runtime.backends.kinds import get_backend
from tpuplan.runtime.backends.simulated import TRUE_FACTORS, default_simulator
from tpuplan.runtime.tune import TuneResult, VerifyOptions, tune

GOAL = 0.05
SHARED = [
    "mobilenet_v1_0.25_128_quant.tflite",
    "mobilenet_v1_0.5_160_quant.tflite",
    "mobilenet_v1_0.75_192_quant.tflite",
    "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
    "mobilenet_v2_1.0_224_quant.tflite",
    "mobilenet_v2_1.0_224_inat_bird_quant.tflite",
    "tf2_mobilenet_v2_1.0_224_ptq.tflite",
    "deeplabv3_mnv2_dm05_pascal_quant.tflite",
    "deeplabv3_mnv2_pascal_quant.tflite",
    "movenet_single_pose_lightning_ptq.tflite",
    "keras_lstm_mnist_ptq.tflite",
]
FC = [1000, 2000, 3000]
CONV = [64, 128, 192]


@dataclass(frozen=True)
class Truth:
    """The hidden true device and host, and a true stage latency of any segment of one model."""

    device: DeviceSpec
    host: HostSpec
    pricer: StagePricer

    def invoke(self, a: int, b: int) -> float:
        terms = {name: v[b - a] for name, v in self.pricer.row(a)["terms"].items()}
        return float(formula.invoke_part(terms))

    def period(self, profile: Profile, cuts: list[int]) -> int:
        return evaluate(profile, [self.device], cuts, self.host).predicted_period_us


def _models(quick: bool) -> list[tuple[str, LoadedModel]]:
    out = [(name, load_model(MODELS / name)) for name in (SHARED[:2] if quick else SHARED) if (MODELS / name).is_file()]
    for n in FC[:1] if quick else FC:
        out.append((f"synth fc N={n}", parse_model(synth_fc(n), Path(f"fc{n}.tflite"))))
    for f in CONV[:1] if quick else CONV:
        out.append((f"synth conv F={f}", parse_model(synth_conv(f), Path(f"conv{f}.tflite"))))
    return out


def _ours(profile: Profile, loaded: LoadedModel, k: int, device: DeviceSpec, host: HostSpec) -> TuneResult:
    return tune(
        profile,
        loaded,
        [device],
        host,
        lambda p, d, h: solve(p, k, d, host=h),
        backend="edgetpu-sim",
        max_runs=8,
        options=VerifyOptions(inputs=1, repeats=1),
    )


def _runs_to_goal(periods: list[int], best: int) -> int | None:
    """The fewest runs after which the plan is within GOAL of `best` (periods[r]: the plan after r runs)."""
    return next((r for r, p in enumerate(periods) if p <= best * (1 + GOAL)), None)


def _case(name: str, loaded: LoadedModel, k: int, truth_specs: tuple[DeviceSpec, HostSpec]) -> dict[str, Any] | None:
    device, host = preset("edgetpu-usb"), resolve_host(None)
    profile = build_profile(loaded, device, host)
    if sum(op.supported for op in profile.ops) < k:
        return None
    true_dev, true_host = truth_specs
    truth = Truth(true_dev, true_host, StagePricer(build_profile(loaded, true_dev, true_host), true_dev, true_host))
    optimum: Plan = solve(profile, k, [true_dev], host=true_host)
    best = optimum.predicted_period_us
    started = time.perf_counter()
    ours = _ours(profile, loaded, k, device, host)
    ours_s = time.perf_counter() - started
    plans = [ours.first, *(r.next_plan for r in ours.rounds)]
    periods = [truth.period(profile, p.cuts) for p in plans]
    for r in ours.rounds:  # the simulated backend's virtual clock must say what the truth says, stage by stage
        for c in r.report.stages:
            assert abs(c.measured_us - truth.invoke(c.first_op, c.last_op)) <= 0.5, (name, c)
    bis = Bisection(profile, k, truth.invoke)
    started = time.perf_counter()
    found = bis.run(threshold_us=10.0, max_runs=5000)
    bis_s = time.perf_counter() - started
    bis_periods = [truth.period(profile, cuts_of(h)) if h else 10**18 for h in bis.history]
    bis_reach = _runs_to_goal(bis_periods, best)
    return {
        "model": name,
        "tpus": k,
        "ops": len(profile.ops),
        "true_optimum_cuts": optimum.cuts,
        "true_optimum_period_us": best,
        "true_optimum_tpus": optimum.tpus,
        "first_plan_cuts": ours.first.cuts,
        "first_plan_true_period_us": periods[0],
        "first_differs": periods[0] > best,
        "ours_runs_to_5pct": _runs_to_goal(periods, best),
        "ours_runs": ours.runs,
        "ours_converged": ours.converged,
        "ours_final_cuts": ours.plan.cuts,
        "ours_final_gap": round(periods[-1] / best - 1, 4),
        "ours_true_periods_us": periods,
        "ours_wall_s": round(ours_s, 2),
        "bisection_runs_to_5pct": None if bis_reach is None else bis_reach + 1,
        "bisection_runs": bis.runs,
        "bisection_final_cuts": cuts_of(found) if found else None,
        "bisection_final_gap": round(bis_periods[-1] / best - 1, 4) if found else None,
        "bisection_wall_s": round(bis_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tpus", default="2,3,4")
    parser.add_argument("--quick", action="store_true", help="two shared models and one of each family")
    args = parser.parse_args()
    tpus = [int(t) for t in args.tpus.split(",")]
    get_backend("edgetpu-sim")
    truth_specs = (default_simulator().device, default_simulator().host)
    rows = []
    for name, loaded in _models(args.quick):
        for k in tpus:
            print(f"{name} K={k} ...", flush=True)
            got = _case(name, loaded, k, truth_specs)
            if got is not None:
                rows.append(got)
    head = [
        "model",
        "K",
        "optimum TPUs",
        "first plan off",
        "ours: runs to 5%",
        "ours: runs",
        "ours: final off",
        "bisection: runs to 5%",
        "bisection: runs",
        "bisection: final off",
    ]

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    table = [
        [
            r["model"],
            r["tpus"],
            r["true_optimum_tpus"],
            pct(r["first_plan_true_period_us"] / r["true_optimum_period_us"] - 1),
            "-" if r["ours_runs_to_5pct"] is None else r["ours_runs_to_5pct"],
            r["ours_runs"],
            pct(r["ours_final_gap"]),
            "never" if r["bisection_runs_to_5pct"] is None else r["bisection_runs_to_5pct"],
            r["bisection_runs"],
            pct(r["bisection_final_gap"]),
        ]
        for r in rows
    ]
    print("SIMULATED Edge TPU (virtual clock; true device = presets with", TRUE_FACTORS, ")")
    print(fmt_table(head, table))
    differs = [r for r in rows if r["first_differs"]]
    ok = [r for r in differs if r["ours_runs_to_5pct"] is not None and r["ours_runs_to_5pct"] <= 3]
    print(f"first plan not optimal on {len(differs)} of {len(rows)} cases; ours within 5% in <= 3 runs on {len(ok)}")
    path = write_results(
        "tune_loop",
        {"simulated": True, "true_factors": TRUE_FACTORS, "goal": GOAL, "rows": rows, "done": len(ok) == len(differs)},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
