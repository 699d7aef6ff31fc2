"""Shared bits of the benchmarks: where the shared models are, and writing results."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from tpuplan.compat import zip_strict

ROOT = Path(__file__).resolve().parents[1]
SHARED_ENV = "TPUPLAN_SHARED"
# The shared data (real models, measurements, compiler logs) is read in place: TPUPLAN_SHARED names it,
# else the folder `shared` beside the checkout.
SHARED = Path(os.environ.get(SHARED_ENV) or ROOT.parent / "shared").resolve()
MODELS = SHARED / "models"
MEASUREMENTS = SHARED / "edgetpu-measurements"
COMPILER_LOGS = SHARED / "edgetpu-compiler-logs"
RESULTS = ROOT / "benchmarks" / "results"
HOST_OPS_NOTE = "host_ops: benchmarks/host_ops.py"  # how a host preset's calibration says where host_ops are from


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write benchmarks/results/<name>.json with when and where it was measured."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        **payload,
    }
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    return path


def shared_manifest() -> list[dict[str, Any]]:
    """Entries of ../shared/models/MANIFEST.json, or none when the shared set is absent."""
    path = MODELS / "MANIFEST.json"
    if not path.is_file():
        return []
    models: list[dict[str, Any]] = json.loads(path.read_text())["models"]
    return models


def cpu_model_paths() -> list[Path]:
    """CPU (not Edge TPU-compiled) models of ../shared/models that tpuplan accepts."""
    from tpuplan.profiles.errors import TpuplanError
    from tpuplan.profiles.tflite.reader import load_model

    out = []
    for entry in shared_manifest():
        if entry.get("edgetpu_compiled"):
            continue
        path = MODELS / entry["path"]
        try:
            load_model(path, allow_edgetpu=False)
        except TpuplanError:
            continue
        out.append(path)
    return out


def fmt_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip_strict(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
