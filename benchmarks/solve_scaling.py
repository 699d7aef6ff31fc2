"""How the planner scales with the number of ops N and stages K, against the exact reference.

Two families, three seeds each:
  random    tables of random integers whose memory binds at about 6 TPUs (planner.synthetic.random_table)
  fc-chain  a real .tflite (plan synth fc) of about N ops, profiled and priced by the real stage tables
            on the edgetpu-usb device and the python-threads host (placement, caching, serialized host work)
Every cell records the table build time, the planner's solve time (exact reference, then CP-SAT's proof and
tie-break), status and objective, and the reference's own time; the two objectives must agree.
Run: python -m benchmarks.solve_scaling [--workers W] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import fmt_table, write_results
from tpuplan.planner.costs import Goal
from tpuplan.planner.search.cpsat import DEFAULT_WORKERS
from tpuplan.planner.search.engine import reference_solve, solve_tables
from tpuplan.planner.synthetic import random_table
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import host_preset
from tpuplan.profiles.pricing.tables import StageCostTable, stage_table
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite.reader import parse_model

SIZES = [100, 500, 1_000, 2_000]
TPUS = [2, 4, 8, 16]
SEEDS = [0, 1, 2]
GOALS = {"n_le_1000": 0.5, "n_2000_k16": 5.0}  # median solve seconds


def fc_chain(n: int, seed: int) -> StageCostTable:
    """A real model of about n ops (QUANTIZE, then Dense + TANH pairs, Dense, DEQUANTIZE), priced for real."""
    width = (128, 256, 512)[seed % 3]
    depth = max(1, (n - 4) // 2)
    model = parse_model(synth_fc(width, depth=depth, weights="zeros"), Path(f"fc_{n}.tflite"))
    return stage_table(build_profile(model, preset("edgetpu-usb"), host_preset("python-threads")))


def run_cell(table: StageCostTable, k: int, workers: int) -> dict[str, Any]:
    tables = [table] * k
    t0 = time.perf_counter()
    out = solve_tables(tables, workers=workers)
    solve_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_solve(tables, Goal(), onchip=out.onchip)
    ref_s = time.perf_counter() - t0
    assert ref is not None
    return {
        "status": out.status,
        "objective": out.objective,
        "on_chip": out.onchip,
        "wall_s": round(solve_s, 4),
        "reference_objective": ref.objective,
        "reference_s": round(ref_s, 4),
        "equal": out.objective == ref.objective,
    }


def run_row(family: str, n: int, k: int, workers: int) -> dict[str, Any]:
    """One (family, N, K) cell over every seed."""
    cells = []
    for seed in SEEDS:
        t0 = time.perf_counter()
        table = (
            random_table(np.random.default_rng(seed * 7919 + n), n, tpus=6) if family == "random" else fc_chain(n, seed)
        )
        build_s = time.perf_counter() - t0
        if k <= table.n:
            cells.append({"seed": seed, "n_ops": table.n, "table_s": round(build_s, 4), **run_cell(table, k, workers)})
    times = [c["wall_s"] for c in cells]
    return {
        "family": family,
        "n": n,
        "k": k,
        "median_wall_s": round(statistics.median(times), 4),
        "max_wall_s": max(times),
        "median_table_s": round(statistics.median(c["table_s"] for c in cells), 4),
        "median_reference_s": round(statistics.median(c["reference_s"] for c in cells), 4),
        "statuses": sorted({c["status"] for c in cells}),
        "all_equal_reference": all(c["equal"] for c in cells),
        "cells": cells,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    ap.add_argument("--quick", action="store_true", help="N <= 1,000 only")
    args = ap.parse_args()
    sizes = [n for n in SIZES if n <= 1_000] if args.quick else SIZES
    rows: list[dict[str, Any]] = []
    for family, n, k in itertools.product(["random", "fc-chain"], sizes, TPUS):
        rows.append(run_row(family, n, k, args.workers))
        r = rows[-1]
        print(
            f"{family:>8} N={n:>5} K={k:>2}: median {r['median_wall_s']:.3f} s, max {r['max_wall_s']:.3f} s, "
            f"{'/'.join(r['statuses'])}, equal {r['all_equal_reference']}",
            flush=True,
        )
    table = [
        [
            r["family"],
            r["n"],
            r["k"],
            r["median_table_s"],
            r["median_wall_s"],
            r["max_wall_s"],
            r["median_reference_s"],
            "/".join(r["statuses"]),
            "yes" if r["all_equal_reference"] else "NO",
        ]
        for r in rows
    ]
    print(
        fmt_table(["family", "N", "K", "table s", "median solve s", "max s", "reference s", "status", "= ref"], table)
    )
    small = [r["median_wall_s"] for r in rows if r["n"] <= 1_000]
    big = [r["median_wall_s"] for r in rows if r["n"] == 2_000 and r["k"] == 16]
    summary = {
        "all_optimal": all(r["statuses"] == ["OPTIMAL"] for r in rows),
        "all_equal_reference": all(r["all_equal_reference"] for r in rows),
        "worst_median_s_n_le_1000": max(small) if small else None,
        "worst_median_s_n_2000_k16": max(big) if big else None,
        "goals_s": GOALS,
    }
    print(summary)
    write_results(
        "solve_scaling",
        {
            "ortools": importlib.metadata.version("ortools"),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "workers": args.workers,
            "seeds": SEEDS,
            "summary": summary,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
