"""Plans with copies vs the best plan without, at T = 4, 6, 8 TPUs (PREDICTED, no hardware).

The paper's conv family (5 Conv2D(F) layers on 64x64x3, F = 32..742), where one layer sets the period
of every plain plan, and every CPU model of ../shared/models. Priced on edgetpu-usb with one host
(default pycoral, the C++ runner of the conv measurements; --host tpuplan for our own runner). For each
model and T: the least period without copies (best of up to T TPUs) and with copies (cuts and copies
chosen together, `plan solve --replicate`), the gain, the solve time and the status (OPTIMAL = proven
and pinned by CP-SAT).
Run: python -m benchmarks.replication [--step-conv 60] [--host pycoral] [--tpus 4,6,8]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from benchmarks.common import cpu_model_paths, fmt_table, write_results
from tpuplan.planner.solve import solve, solve_with_copies
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import HostSpec, host_preset
from tpuplan.profiles.synth import synth_conv
from tpuplan.profiles.tflite.reader import load_model, parse_model


def _rows(name: str, prof: Profile, host: HostSpec, tpus: list[int]) -> list[dict[str, Any]]:
    rows = []
    print(f"{name} ...", flush=True)
    for t in tpus:
        plain = solve(prof, min(t, len(prof.ops)), host=host)
        start = time.perf_counter()
        rep = solve_with_copies(prof, t, host=host)
        took = time.perf_counter() - start
        rows.append(
            {
                "model": name,
                "tpus": t,
                "plain_period_us": plain.predicted_period_us,
                "plain_tpus": plain.tpus,
                "copies_period_us": rep.predicted_period_us,
                "copies_tpus": rep.tpus,
                "copies": [s.copies for s in rep.stages],
                "cuts": rep.cuts,
                "gain": round(plain.predicted_period_us / max(rep.predicted_period_us, 1), 3),
                "solve_s": round(took, 3),
                "status": rep.solver.status,
                "plain_status": plain.solver.status,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--step-conv", type=int, default=60)
    parser.add_argument("--host", default="pycoral")
    parser.add_argument("--tpus", default="4,6,8")
    args = parser.parse_args()
    host = host_preset(args.host)
    tpus = [int(x) for x in args.tpus.split(",")]
    device = preset("edgetpu-usb")
    rows: list[dict[str, Any]] = []
    for f in range(32, 743, args.step_conv):
        prof = build_profile(parse_model(synth_conv(f, weights="zeros"), Path(f"conv_{f}.tflite")), device, host)
        rows += _rows(f"conv F={f}", prof, host, tpus)
    skipped = []
    for path in cpu_model_paths():
        prof = build_profile(load_model(path), device, host)
        if not any(op.supported for op in prof.ops):
            skipped.append(path.name)  # the Edge TPU runs none of its ops: no plan at all
            continue
        rows += _rows(path.stem, prof, host, tpus)
    head = ["model", "T", "plain ms (TPUs)", "copies ms (TPUs)", "stages x copies", "gain", "solve s", "status"]
    table = [
        [
            r["model"],
            r["tpus"],
            f"{r['plain_period_us'] / 1000:.3f} ({r['plain_tpus']})",
            f"{r['copies_period_us'] / 1000:.3f} ({r['copies_tpus']})",
            "+".join(map(str, r["copies"])),
            f"{r['gain']:.2f}x",
            r["solve_s"],
            r["status"],
        ]
        for r in rows
    ]
    print(f"Period per input, PREDICTED (edgetpu-usb, host {args.host}); gain = plain period / period with copies.")
    print(fmt_table(head, table))
    conv = [r for r in rows if r["model"].startswith("conv")]
    zoo = [r for r in rows if not r["model"].startswith("conv")]
    summary = {
        "all_optimal": all(r["status"] == "OPTIMAL" for r in rows),
        "not_optimal": [f"{r['model']} T={r['tpus']}: {r['status']}" for r in rows if r["status"] != "OPTIMAL"],
        "max_solve_s": max(r["solve_s"] for r in rows),
        **{f"conv_max_gain_T{t}": max((r["gain"] for r in conv if r["tpus"] == t), default=None) for t in tpus},
        **{f"zoo_max_gain_T{t}": max((r["gain"] for r in zoo if r["tpus"] == t), default=None) for t in tpus},
        "never_worse": all(r["copies_period_us"] <= r["plain_period_us"] for r in rows),
    }
    print(
        f"\nall OPTIMAL: {summary['all_optimal']} {summary['not_optimal'] or ''}; "
        f"max solve {summary['max_solve_s']} s; never worse than plain: {summary['never_worse']}"
    )
    print(
        "max gain, conv family: "
        + ", ".join(f"T={t} {summary[f'conv_max_gain_T{t}']}x" for t in tpus)
        + "; zoo: "
        + ", ".join(f"T={t} {summary[f'zoo_max_gain_T{t}']}x" for t in tpus)
    )
    if skipped:
        print(f"skipped (no op the Edge TPU runs): {', '.join(skipped)}")
    out = write_results(
        "replication", {"predicted": True, "host": args.host, "summary": summary, "skipped": skipped, "rows": rows}
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
