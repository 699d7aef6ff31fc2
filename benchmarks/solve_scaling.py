"""How long the planner takes, proven optimal, on models of every size (PREDICTED costs; times measured here).

Families (edgetpu-usb device):
  shared    every CPU model of ../shared/models and ../shared/models/published (3..251 ops), K = 2..8, three
            ways: plain (K TPUs in a row), copies (--replicate), pool (ceil(K/2) edgetpu-usb + floor(K/2)
            edgetpu-pci: the planner assigns them); host tpuplan
  zoo       a 614-op MobileNet-v2-like model (benchmarks/zoo.py: inverted residual blocks, 35 MiB), the same
  fc-chain  a real .tflite of N ops (plan synth fc, widths 128/256/512), exactly K stages, host
            python-threads (serialized host work and the shared bus both count), N = 100..2,000, K = 2..16
  10k       N = 10,000, K = 16: a conv chain (16 filters, 16x16 images) and an FC chain (width 128)
Every cell is one whole solve under one deadline (30 s): pricing the stages the search needs, the first plan,
the exact reference, CP-SAT's proof and the tie-break. Times: process CPU seconds (the machine is shared by
several people; CPU time is the steadier measure) and wall seconds, with the phases. Run:
python -m benchmarks.solve_scaling [--quick] (quick: no fc-chain grid, no 10k cells).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import MODELS, cpu_model_paths, fmt_table, write_results
from benchmarks.zoo import mobilenet_like
from tpuplan.planner.costs import Goal
from tpuplan.planner.devices import DeviceSet, Tables
from tpuplan.planner.search.engine import optimize
from tpuplan.planner.search.problem import in_order
from tpuplan.planner.solve import rank_of
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import HostSpec, host_preset
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite.reader import load_model, parse_model

GOAL_S = {"shared_zoo_k_le_8": 0.2, "fc_2000_k16": 5.0}  # per solve, CPU seconds
USB, PCI = preset("edgetpu-usb"), preset("edgetpu-pci")


def device_set(mode: str, k: int) -> DeviceSet:
    if mode == "pool":
        return DeviceSet.pool([(USB, k - k // 2), (PCI, k // 2)])
    return DeviceSet((USB,), copies=mode == "copies")


def cell(profile: Profile, dset: DeviceSet, k: int, host: HostSpec, exact: bool = False) -> dict[str, Any]:
    """One whole solve: status, objective, TPUs used, CPU and wall seconds, and where they went."""
    tables = Tables(profile, host)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        if exact:  # exactly K stages in a row (the fc-chain grid, as the first benchmark ran it)
            out = optimize(in_order([tables.of(dset.kinds[0])] * k), Goal(), rank=("T",))
        else:
            out = optimize(dset.problem(tables, k), Goal(), rank=rank_of(dset, Goal()))
    except TpuplanError as exc:  # a model no plan exists for (no op the Edge TPU runs)
        return {"status": "NO PLAN", "proven": True, "cpu_s": 0.0, "wall_s": 0.0, "phases_s": {}, "notes": [str(exc)]}
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    priced = tables.all()
    return {
        "status": out.status,
        "proven": out.proven,
        "objective_us": out.objective,
        "tpus_used": sum(out.copies),
        "stages": len(out.options),
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "pricing_s": round(sum(t.pricing_s for t in priced), 4),
        "stages_priced": sum(t.priced for t in priced),
        "phases_s": {k: round(v, 4) for k, v in out.phases.items()},
        "notes": out.notes,
    }


def shared_models() -> list[tuple[str, Callable[[], Profile]]]:
    paths = cpu_model_paths() + sorted((MODELS / "published").glob("*.tflite"))

    def loader(path: Path) -> Callable[[], Profile]:
        return lambda: build_profile(load_model(path), USB, host_preset("tpuplan"))

    def zoo() -> Profile:
        model = parse_model(mobilenet_like(640), Path("zoo_mobilenet_like_614.tflite"))
        return build_profile(model, USB, host_preset("tpuplan"))

    return [*((p.name, loader(p)) for p in paths), ("zoo_mobilenet_like_614", zoo)]


def run_shared() -> list[dict[str, Any]]:
    rows = []
    for name, make in shared_models():
        profile = make()
        n = len(profile.ops)
        for mode in ("plain", "copies", "pool"):
            for k in range(2, 9):
                if mode != "copies" and k > n:
                    continue
                got = cell(profile, device_set(mode, k), k, host_preset("tpuplan"))
                rows.append(
                    {
                        "family": "zoo" if name.startswith("zoo") else "shared",
                        "model": name,
                        "n": n,
                        "mode": mode,
                        "k": k,
                        **got,
                    }
                )
        worst = max(r["cpu_s"] for r in rows if r["model"] == name)
        print(f"{name[:44]:44} n={n:4}: worst {worst:.3f} s CPU over K=2..8 x plain/copies/pool", flush=True)
    return rows


def fc_profile(n: int, width: int) -> Profile:
    model = parse_model(synth_fc(width, depth=max(1, (n - 4) // 2), weights="zeros"), Path(f"fc_{n}.tflite"))
    return build_profile(model, USB, host_preset("python-threads"))


def run_fc(sizes: list[int], tpus: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        for width in (128, 256, 512):
            profile = fc_profile(n, width)
            for k in tpus:
                got = cell(profile, DeviceSet((USB,)), k, host_preset("python-threads"), exact=True)
                rows.append(
                    {
                        "family": "fc-chain",
                        "model": f"fc w{width}",
                        "n": len(profile.ops),
                        "mode": "exact",
                        "k": k,
                        **got,
                    }
                )
                print(f"fc-chain N={n:5} w={width:3} K={k:2}: {got['cpu_s']:.2f} s CPU, {got['status']}", flush=True)
    return rows


def run_10k() -> list[dict[str, Any]]:
    rows = []
    makers: dict[str, Callable[[], bytes]] = {
        "conv chain f16 16x16": lambda: synth_conv(16, layers=9_999, size=16, weights="zeros"),
        "fc chain w128": lambda: synth_fc(128, depth=4_998, weights="zeros"),
    }
    for name, make in makers.items():
        profile = build_profile(parse_model(make(), Path("n10k.tflite")), USB, host_preset("python-threads"))
        got = cell(profile, DeviceSet((USB,)), 16, host_preset("python-threads"), exact=True)
        rows.append({"family": "10k", "model": name, "n": len(profile.ops), "mode": "exact", "k": 16, **got})
        print(f"10k {name}: {got['cpu_s']:.1f} s CPU, {got['wall_s']:.1f} s wall, {got['status']}", flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    small = [r for r in rows if r["family"] in ("shared", "zoo")]
    out: dict[str, Any] = {"goals_s": GOAL_S}
    for mode in ("plain", "copies", "pool"):
        cells = [r for r in small if r["mode"] == mode]
        if cells:
            worst = max(cells, key=lambda r: r["cpu_s"])
            out[f"worst_cpu_s_{mode}"] = [worst["cpu_s"], worst["model"], worst["k"]]
            out[f"all_proven_{mode}"] = all(r["proven"] for r in cells)
            out[f"over_goal_{mode}"] = sorted({f"{r['model']} K={r['k']}" for r in cells if r["cpu_s"] > 0.2})
    fc = [r for r in rows if r["family"] == "fc-chain" and r["n"] >= 1_999 and r["k"] == 16]
    if fc:
        out["fc_2000_k16_cpu_s"] = [r["cpu_s"] for r in fc]
        out["fc_2000_k16_wall_s"] = [r["wall_s"] for r in fc]
        out["fc_2000_k16_median_cpu_s"] = statistics.median(r["cpu_s"] for r in fc)
    out["ten_k"] = [
        [r["model"], r["status"], r["cpu_s"], r["wall_s"], r["stages_priced"]] for r in rows if r["family"] == "10k"
    ]
    return out


def print_tables(rows: list[dict[str, Any]]) -> None:
    small = [r for r in rows if r["family"] in ("shared", "zoo")]
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in small:
        by_model.setdefault(r["model"], []).append(r)
    head = ["model", "ops", *(f"{m} K2..8 max" for m in ("plain", "copies", "pool")), "proven"]
    table = []
    for name, cells in by_model.items():
        worst = {
            m: max((c["cpu_s"] for c in cells if c["mode"] == m), default=0.0) for m in ("plain", "copies", "pool")
        }
        table.append([name[:40], cells[0]["n"], *(f"{worst[m]:.3f}" for m in worst), all(c["proven"] for c in cells)])
    print(fmt_table(head, table))
    big = [r for r in rows if r["family"] in ("fc-chain", "10k")]
    if big:
        head = ["family", "model", "N", "K", "CPU s", "wall s", "pricing s", "stages priced", "status", "slowest phase"]
        print(
            fmt_table(
                head,
                [
                    [
                        r["family"],
                        r["model"],
                        r["n"],
                        r["k"],
                        r["cpu_s"],
                        r["wall_s"],
                        r["pricing_s"],
                        r["stages_priced"],
                        r["status"],
                        max(r["phases_s"].items(), key=lambda kv: kv[1])[0] if r["phases_s"] else "-",
                    ]
                    for r in big
                ],
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shared and zoo models only")
    args = ap.parse_args()
    rows = run_shared()
    if not args.quick:
        rows += run_fc([100, 500, 1_000, 2_000], [2, 4, 8, 16])
        rows += run_10k()
    print_tables(rows)
    result = summary(rows)
    print(result)
    write_results(
        "solve_scaling",
        {
            "ortools": importlib.metadata.version("ortools"),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
            "summary": result,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
