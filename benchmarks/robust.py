"""Plans that stay good when the cost model is off: `plan solve --robust` over the shared and zoo models
(PREDICTED costs in every scenario; times measured here).

For every CPU model of ../shared/models and ../shared/models/published and the 614-op zoo model, K = 2..8
edgetpu-usb TPUs, host tpuplan: the robust plan (least longest period over the calibration's 9 scenarios:
as fitted and the fit again without one source each), proven or not, how many rounds of added bounds it
took and its solve time; the nominal plan (the least period as fitted); each scenario's own optimum. It
prints how often the nominal plan is not the optimum of a scenario (the plan would change had the
calibration come out as that scenario), and the regret of each plan: its period in a scenario over the
scenario's own optimum, the worst over the scenarios. Run: python -m benchmarks.robust [--quick]
(quick: K = 2, 4, 8).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from benchmarks.common import fmt_table, write_results
from benchmarks.solve_scaling import USB, shared_models
from tpuplan.planner.devices import DeviceSet
from tpuplan.planner.robust import solve_robust
from tpuplan.planner.solving import NoPlanError
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.host import host_preset


def _regret(us: int, best: int) -> float:
    return round(us / max(best, 1) - 1, 4)


def cell(name: str, profile: Any, k: int) -> dict[str, Any] | None:
    """One robust solve and what it reports; None when no plan exists (no op the Edge TPU runs, or
    fewer ops than TPUs)."""
    if k > len(profile.ops):
        return None
    started = time.process_time()
    try:
        plan = solve_robust(profile, DeviceSet((USB,)), k, host=host_preset("tpuplan"))
    except (NoPlanError, TpuplanError) as exc:
        if "no plan" in str(exc):
            return None
        raise
    cpu = time.process_time() - started
    r = plan.robust
    assert r is not None
    rows = r.scenarios
    return {
        "model": name,
        "ops": len(profile.ops),
        "k": k,
        "proven": plan.solver.proven_optimal and all(s.best_proven for s in rows),
        "rounds": r.rounds,
        "cpu_s_with_scenario_optima": round(cpu, 3),
        "robust_worst_us": r.worst_period_us,
        "nominal_worst_us": r.nominal_worst_period_us,
        "kept_nominal": "the nominal plan reaches it too" in " ".join(plan.notes),
        "scenarios": len(rows),
        "nominal_not_optimal_in": sum(s.nominal_plan_period_us > s.best_period_us for s in rows),
        "robust_not_optimal_in": sum(s.period_us > s.best_period_us for s in rows),
        "nominal_max_regret": max(_regret(s.nominal_plan_period_us, s.best_period_us) for s in rows),
        "robust_max_regret": max(_regret(s.period_us, s.best_period_us) for s in rows),
    }


def summary(cells: list[dict[str, Any]]) -> dict[str, Any]:
    changed = [c for c in cells if c["nominal_not_optimal_in"] > 0]
    better = [c for c in cells if c["robust_worst_us"] < c["nominal_worst_us"]]
    return {
        "cells": len(cells),
        "proven": sum(c["proven"] for c in cells),
        "nominal_plan_changes_in_some_scenario": len(changed),
        "scenario_cells_where_nominal_is_not_optimal": sum(c["nominal_not_optimal_in"] for c in cells),
        "scenario_cells": sum(c["scenarios"] for c in cells),
        "robust_beats_nominal_worst_case": len(better),
        "largest_worst_case_gain": max((c["nominal_worst_us"] / c["robust_worst_us"] - 1 for c in cells), default=0.0),
        "median_nominal_max_regret": statistics.median(c["nominal_max_regret"] for c in cells) if cells else 0.0,
        "median_robust_max_regret": statistics.median(c["robust_max_regret"] for c in cells) if cells else 0.0,
        "worst_nominal_max_regret": max((c["nominal_max_regret"] for c in cells), default=0.0),
        "worst_robust_max_regret": max((c["robust_max_regret"] for c in cells), default=0.0),
        "most_rounds": max((c["rounds"] for c in cells), default=0),
        "slowest_cpu_s": max((c["cpu_s_with_scenario_optima"] for c in cells), default=0.0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="K = 2, 4, 8 only")
    args = ap.parse_args()
    ks = [2, 4, 8] if args.quick else list(range(2, 9))
    cells = []
    for name, make in shared_models():
        profile = make()
        for k in ks:
            got = cell(name, profile, k)
            if got is not None:
                cells.append(got)
                print(f"{name} K={k}: {got['rounds']} round(s), {got['cpu_s_with_scenario_optima']} s", flush=True)
    head = ["model", "K", "proven", "rounds", "robust worst ms", "nominal worst ms", "nominal off in"]
    head += ["regret nom", "regret rob"]
    rows = [
        [
            c["model"][:40],
            c["k"],
            "yes" if c["proven"] else "NO",
            c["rounds"],
            f"{c['robust_worst_us'] / 1000:.3f}",
            f"{c['nominal_worst_us'] / 1000:.3f}",
            f"{c['nominal_not_optimal_in']}/{c['scenarios']}",
            f"{100 * c['nominal_max_regret']:.1f}%",
            f"{100 * c['robust_max_regret']:.1f}%",
        ]
        for c in cells
    ]
    print(fmt_table(head, rows))
    s = summary(cells)
    print()
    for key, value in s.items():
        print(f"{key:45s} {value if not isinstance(value, float) else round(value, 4)}")
    if not args.quick:
        print("results:", write_results("robust", {"summary": s, "cells": cells}))


if __name__ == "__main__":
    main()
