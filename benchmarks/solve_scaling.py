"""How the CP-SAT planner scales with the number of ops N and TPUs K, against the exact reference.

Two families of cost tables, three seeds each:
  random  tables of random integers whose memory binds at about 6 TPUs (planner.reference.random_table)
  real    a real model's table (../shared/models, one model per seed) tiled end to end to N ops
Every cell records the planner's wall time, status and objective, and the reference's time and
objective; they must agree. Run: python benchmarks/solve_scaling.py [--workers W] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from tpuplan.planner.reference import reference_solve
from tpuplan.planner.solve import DEFAULT_WORKERS, solve_tables
from tpuplan.planner.synthetic import random_table, synthetic_table
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.device import preset
from tpuplan.profiles.stagecost import StageCostTable, stage_table
from tpuplan.profiles.tflite import load_model

ROOT = Path(__file__).resolve().parent
MODELS = ROOT.parents[1] / "shared" / "models"
REAL = ["mobilenet_v2_1.0_224_quant", "movenet_single_pose_lightning_ptq", "deeplabv3_mnv2_pascal_quant"]
SIZES = [100, 1_000, 5_000, 10_000]
TPUS = [2, 4, 8, 16]
SEEDS = [0, 1, 2]


def _diffs(prefix: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise(prefix)]


def tile(table: StageCostTable, n: int, offset: int = 0) -> StageCostTable:
    """The table's ops repeated end to end (starting at `offset`) to n ops, same device memory."""
    m = table.n
    order = [(offset + i) % m for i in range(n)]
    per_op = {
        "compute": _diffs(table.compute_prefix),
        "stream": _diffs(table.stream_prefix),
        "cached": _diffs(table.param_prefix),
        "out": _diffs(table.model_out_prefix_us),
    }
    link = [table.link_out_us[i] if i < m - 1 else table.link_in_us[0] for i in order]
    link[-1] = table.link_out_us[-1]
    return synthetic_table(
        [per_op["compute"][i] for i in order],
        [per_op["stream"][i] for i in order],
        [per_op["cached"][i] for i in order],
        link,
        capacity=table.onchip_capacity,
        overhead=table.overhead_us,
        model_out=[per_op["out"][i] for i in order],
        input_link=table.link_in_us[0],
        name=f"{table.device_name}-tiled",
    )


def real_tables() -> list[StageCostTable]:
    dev = preset("edgetpu-usb")
    found = [MODELS / f"{name}.tflite" for name in REAL if (MODELS / f"{name}.tflite").is_file()]
    return [stage_table(build_profile(load_model(path), dev)) for path in found]


def run_cell(table: StageCostTable, k: int, workers: int) -> dict[str, Any]:
    tables = [table] * k
    t0 = time.perf_counter()
    out = solve_tables(tables, workers=workers)
    solve_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = reference_solve(tables, onchip=out.onchip)
    ref_s = time.perf_counter() - t0
    assert ref is not None
    return {
        "status": out.status,
        "objective": out.objective,
        "on_chip": out.onchip,
        "wall_s": round(solve_s, 4),
        "reference_objective": ref.bottleneck,
        "reference_s": round(ref_s, 4),
        "equal": out.objective == ref.bottleneck,
    }


def run_row(family: str, n: int, k: int, reals: list[StageCostTable], workers: int) -> dict[str, Any]:
    """One (family, N, K) cell over every seed: solve times, statuses, agreement with the reference."""
    cells = []
    for seed in SEEDS:
        if family == "random":
            table = random_table(np.random.default_rng(seed * 7919 + n), n, tpus=6)
        else:
            base = reals[seed % len(reals)]
            table = tile(base, n, offset=seed * 5 % base.n)
        cells.append({"seed": seed, **run_cell(table, k, workers)})
    times = [c["wall_s"] for c in cells]
    return {
        "family": family,
        "n": n,
        "k": k,
        "median_wall_s": round(statistics.median(times), 4),
        "max_wall_s": max(times),
        "median_reference_s": round(statistics.median(c["reference_s"] for c in cells), 4),
        "statuses": sorted({c["status"] for c in cells}),
        "all_equal_reference": all(c["equal"] for c in cells),
        "cells": cells,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    ap.add_argument("--quick", action="store_true", help="N <= 1,000 only")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "results" / "solve_scaling.json")
    args = ap.parse_args()
    sizes = [n for n in SIZES if n <= 1_000] if args.quick else SIZES
    reals = real_tables()
    families = ["random"] + (["real"] if reals else [])
    rows: list[dict[str, Any]] = []
    head = (
        f"{'family':<7} {'N':>6} {'K':>3}  {'median s':>8} {'max s':>7}  {'status':<12} "
        f"{'objective us (seed 0)':>21}  {'ref median s':>12}  {'= ref':>5}"
    )
    print(head)
    print("-" * len(head))
    for family, n, k in itertools.product(families, sizes, TPUS):
        row = run_row(family, n, k, reals, args.workers)
        rows.append(row)
        cells = row["cells"]
        status = "/".join(row["statuses"]) + f" x{len(cells)}"
        print(
            f"{family:<7} {n:>6} {k:>3}  {row['median_wall_s']:>8.3f} {row['max_wall_s']:>7.3f}  {status:<12} "
            f"{cells[0]['objective']:>21,}  {row['median_reference_s']:>12.3f}  "
            f"{'yes' if row['all_equal_reference'] else 'NO':>5}",
            flush=True,
        )
    small = [r["median_wall_s"] for r in rows if r["n"] <= 1_000]
    big = [r["median_wall_s"] for r in rows if r["n"] == 10_000 and r["k"] == 16]
    summary = {
        "all_optimal": all(r["statuses"] == ["OPTIMAL"] for r in rows),
        "all_equal_reference": all(r["all_equal_reference"] for r in rows),
        "worst_median_s_n_le_1000": max(small) if small else None,
        "worst_median_s_n_10000_k16": max(big) if big else None,
    }
    print("\n" + json.dumps(summary))
    doc = {
        "benchmark": "solve_scaling",
        "ortools": importlib.metadata.version("ortools"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "workers": args.workers,
        "seeds": SEEDS,
        "real_models": [t for t in REAL if (MODELS / f"{t}.tflite").is_file()],
        "summary": summary,
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
