"""The README's two pictures, made again from the current cost model with the `plan` command itself.

  docs/plan_fc2000.png          the README quick start's model (plan synth fc --width 2000) and its optimal
                                plan for up to 4 TPUs: `plan show --png` (predicted, no hardware needed)
  docs/verify_<model>_cpu.png   a small CPU model of the shared data, profiled by timing its ops on this
                                machine's CPU, planned for 3 stages, then split, run and timed:
                                `plan verify --backend cpu --png` (predicted beside measured)

Run after any change to the cost model or the pictures: python -m benchmarks.pictures [--model NAME].
Needs matplotlib (the `plot` extra) and, for the second picture, the shared data.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from benchmarks.common import MODELS, ROOT
from benchmarks.startup import plan_command

DOCS = ROOT / "docs"
VERIFY_MODEL = "mobilenet_v2_1.0_224_quant.tflite"
VERIFY_STAGES = 3


def plan(*args: str | Path, ok: tuple[int, ...] = (0,)) -> str:
    """Run `plan ARGS` as a user would; its stdout (a failure ends the script with plan's own message)."""
    done = subprocess.run([*plan_command(), *map(str, args)], capture_output=True, text=True, check=False)
    if done.returncode not in ok:
        raise SystemExit(f"plan {' '.join(map(str, args))}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


def plan_picture(tmp: Path) -> Path:
    """The quick start's model and plan, drawn by `plan show --png`."""
    model, plan_json, png = tmp / "fc2000.tflite", tmp / "plan.json", DOCS / "plan_fc2000.png"
    plan("synth", "fc", "--width", "2000", "-o", model)
    plan("solve", model, "--tpus", "4", "-o", plan_json)
    plan("show", plan_json, "--png", png, "--force")
    return png


def verify_picture(tmp: Path, name: str) -> tuple[Path, str]:
    """A measured CPU profile of a shared model, its 3-stage plan, and `plan verify --png` of it."""
    model = MODELS / name
    if not model.is_file():
        raise SystemExit(f"{model}: absent (set TPUPLAN_SHARED to the shared data)")
    profile, plan_json, report = tmp / "profile.json", tmp / "cpu-plan.json", tmp / "report.json"
    png = DOCS / f"verify_{name.removesuffix('.tflite')}_cpu.png"
    plan("profile", model, "--measure", "--backend", "cpu", "-o", profile, "--quiet")
    plan("solve", profile, "--tpus", str(VERIFY_STAGES), "-o", plan_json)
    plan(
        "verify",
        plan_json,
        "--model",
        model,
        "--backend",
        "cpu",
        "-o",
        report,
        "--png",
        png,
        "--force",
        "--quiet",
        ok=(0, 3),  # 3: a stage outside tolerance; the picture shows it all the same
    )
    verdict = str(json.loads(report.read_text())["verdict"])
    return png, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=VERIFY_MODEL, help="CPU model of the shared data for the verify picture")
    args = parser.parse_args()
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tpuplan-pictures-") as tmp:
        print(f"wrote {plan_picture(Path(tmp)).relative_to(ROOT)}")
        png, verdict = verify_picture(Path(tmp), args.model)
        print(f"wrote {png.relative_to(ROOT)} (plan verify: {verdict})")


if __name__ == "__main__":
    main()
