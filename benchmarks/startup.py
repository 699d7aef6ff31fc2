"""How long each `plan` command takes from the shell, start-up included (issue 18, "fast start").

A build calls `plan` once per model and K: what it pays is the interpreter, the imports and the work,
not the work alone. Each command runs as the user runs it (the console script, else `python -m
tpuplan.cli`), best of --repeats wall times; a further run with `-X importtime` lists which heavy
libraries it loaded. Goals: help, version, inspect, show, devices and schema <= 0.5 s; `plan solve`
of a shared model (mobilenet_v1_0.25_128_quant, K = 2) <= 1.0 s. Without the shared data the model
is `plan synth fc`'s, and the JSON says so.
Run: python -m benchmarks.startup [--repeats N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import MODELS, fmt_table, write_results

LIGHT_GOAL_S = 0.5
SOLVE_GOAL_S = 1.0
SHARED_MODEL = MODELS / "mobilenet_v1_0.25_128_quant.tflite"
HEAVY = ("ortools", "pandas", "matplotlib", "PIL", "numpy", "pydantic", "ai_edge_litert")


def plan_command() -> list[str]:
    """The `plan` console script beside this interpreter, else the module (same entry point)."""
    script = Path(sys.executable).parent / "plan"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tpuplan.cli"]


def commands(model: Path, plan: Path) -> dict[str, tuple[list[str], float]]:
    """Each command measured, with its goal in seconds."""
    light = {
        "--help": ["--help"],
        "--version": ["--version"],
        "inspect MODEL": ["inspect", str(model)],
        "show PLAN": ["show", str(plan)],
        "devices": ["devices"],
        "schema plan": ["schema", "plan"],
    }
    out = {name: (args, LIGHT_GOAL_S) for name, args in light.items()}
    out["solve MODEL --tpus 2"] = (["solve", str(model), "--tpus", "2"], SOLVE_GOAL_S)
    return out


def best_wall_s(argv: list[str], repeats: int) -> tuple[float, int]:
    """The least wall time of `repeats` runs, and the exit code of the last."""
    best, code = float("inf"), 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, check=False)
        best = min(best, time.perf_counter() - t0)
        code = done.returncode
    return best, code


def heavy_imports(args: list[str]) -> list[str]:
    """The heavy top-level packages a command imports (`-X importtime` lists every module it loads)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tpuplan.cli", *args], capture_output=True, text=True, check=False
    )
    loaded = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    return [name for name in HEAVY if name in loaded]


def _inputs(scratch: Path) -> tuple[Path, Path, str]:
    """The model (shared, else synthetic), a 2-TPU plan of it, and where the model came from."""
    model, source = SHARED_MODEL, "shared"
    if not model.is_file():
        model, source = scratch / "fc.tflite", "plan synth fc (shared data absent)"
        subprocess.run([*plan_command(), "synth", "fc", "-o", str(model)], check=True, capture_output=True)
    plan = scratch / "plan.json"
    subprocess.run(
        [*plan_command(), "solve", str(model), "--tpus", "2", "-o", str(plan)], check=True, capture_output=True
    )
    return model, plan, source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows: list[list[object]] = []
    records: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="tpuplan-startup-") as tmp:
        model, plan, source = _inputs(Path(tmp))
        for name, (cmd_args, goal) in commands(model, plan).items():
            wall, code = best_wall_s([*plan_command(), *cmd_args], args.repeats)
            heavy = heavy_imports(cmd_args)
            ok = wall <= goal and code == 0
            rows.append([name, f"{wall:.3f}", f"{goal:g}", "yes" if ok else "NO", code, ", ".join(heavy) or "-"])
            records.append(
                {"command": name, "best_s": round(wall, 4), "goal_s": goal, "exit_code": code, "imports": heavy}
            )
    print(fmt_table(["command", f"best of {args.repeats} s", "goal s", "met", "exit", "heavy imports"], rows))
    print(f"\nmodel: {model.name} ({source}); command: {' '.join(plan_command())}")
    out = write_results(
        "startup",
        {"repeats": args.repeats, "model": model.name, "model_source": source, "commands": records},
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
