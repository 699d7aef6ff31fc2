"""Our plan vs the Edge TPU compiler's equal-parameter split on real models, K = 2..8 (PREDICTED).

Priced on the edgetpu-usb device with the pycoral host (C++ runner, so the period is the slowest stage,
not Python's serialized host work). Ours is the best plan over at most K TPUs (fewer when more add
nothing); the compiler's split uses exactly K. A stage whose TPU would run only host ops is counted.

Every CPU model of ../shared/models, plus larger architectures (ResNet-50/101, Inception-v3, Xception,
EfficientNet-B0, DenseNet-121, random weights, full int8) when TensorFlow is installed to build them:
`pip install tensorflow` then `python -m benchmarks.models --keras`. Without TensorFlow that part is
skipped and says so.
Run: python -m benchmarks.models [--keras] [--max-tpus 8]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import cpu_model_paths, fmt_table, write_results
from tpuplan.planner.baselines import param_balanced_cuts
from tpuplan.planner.plan_build import evaluate
from tpuplan.planner.solve import solve
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import host_preset
from tpuplan.profiles.tflite.reader import load_model

HOST = "pycoral"
KERAS_MODELS = ["ResNet50", "ResNet101", "InceptionV3", "Xception", "EfficientNetB0", "DenseNet121"]


def keras_models(out_dir: Path) -> list[Path]:
    """Build the larger architectures as int8 .tflite files (random weights, random calibration data)."""
    import numpy as np
    import tensorflow as tf

    paths = []
    for name in KERAS_MODELS:
        model = getattr(tf.keras.applications, name)(weights=None)
        shape = model.input_shape[1:]

        def data(shape: tuple[int, ...] = shape) -> Any:
            for _ in range(8):
                yield [np.random.rand(1, *shape).astype("float32")]

        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = data
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        path = out_dir / f"{name}_int8.tflite"
        path.write_bytes(conv.convert())
        paths.append(path)
    return paths


def rows_for(path: Path, profile: Profile, max_tpus: int) -> list[dict[str, Any]]:
    out = []
    host = host_preset(HOST)
    for k in range(2, min(max_tpus, len(profile.ops)) + 1):
        t0 = time.perf_counter()
        ours = solve(profile, k, host=host, allow_spill=True)
        solve_s = time.perf_counter() - t0
        comp = evaluate(profile, None, param_balanced_cuts([op.param_bytes for op in profile.ops], k), host)
        out.append(
            {
                "model": path.name,
                "tpus": k,
                "tpus_used": ours.tpus,
                "ops": len(profile.ops),
                "param_mib": profile.param_bytes / 2**20,
                "ours_us": ours.predicted_period_us,
                "compiler_us": comp.predicted_period_us,
                "ratio": round(comp.predicted_period_us / max(ours.predicted_period_us, 1), 3),
                "ours_offchip": sum(s.predicted_offchip_bytes for s in ours.stages),
                "compiler_offchip": sum(s.predicted_offchip_bytes for s in comp.stages),
                "ours_host_only_stages": sum(1 for s in ours.stages if s.tpu_ops == 0),
                "compiler_host_only_stages": sum(1 for s in comp.stages if s.tpu_ops == 0),
                "status": ours.solver.status,
                "solve_s": round(solve_s, 3),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keras", action="store_true", help="also build the larger Keras architectures")
    parser.add_argument("--max-tpus", type=int, default=8)
    args = parser.parse_args()
    device = preset("edgetpu-usb")
    paths = cpu_model_paths()
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.keras:
            if importlib.util.find_spec("tensorflow") is None:
                notes.append("larger architectures skipped: TensorFlow is not installed (pip install tensorflow)")
            else:
                paths += keras_models(Path(tmp))
        else:
            notes.append("larger architectures not built (pass --keras with TensorFlow installed)")
        rows: list[dict[str, Any]] = []
        for path in paths:
            rows += rows_for(path, build_profile(load_model(path), device), args.max_tpus)
    table = [
        [
            r["model"][:40],
            r["tpus"],
            r["tpus_used"],
            r["ours_us"] / 1000,
            r["compiler_us"] / 1000,
            f"{r['ratio']:.2f}x",
            f"{r['ours_offchip'] / 2**20:.2f}",
            f"{r['compiler_offchip'] / 2**20:.2f}",
            r["compiler_host_only_stages"],
            r["status"],
            r["solve_s"],
        ]
        for r in rows
    ]
    print(f"PREDICTED: edgetpu-usb device, {HOST} host; period per input in steady state.")
    print(
        fmt_table(
            [
                "model",
                "K",
                "ours uses",
                "ours ms",
                "compiler ms",
                "compiler/ours",
                "ours spill MiB",
                "compiler spill MiB",
                "compiler host-only stages",
                "status",
                "solve s",
            ],
            table,
        )
    )
    worse = [r for r in rows if r["ours_us"] > r["compiler_us"]]
    print(
        f"\n{len(rows)} (model, K) pairs; ours worse than the compiler's split in {len(worse)}; "
        f"largest gain {max(r['ratio'] for r in rows):.2f}x; slowest solve {max(r['solve_s'] for r in rows):.2f} s; "
        f"our stages with only host ops: {sum(r['ours_host_only_stages'] for r in rows)}; the compiler split's: "
        f"{sum(r['compiler_host_only_stages'] for r in rows)}"
    )
    for n in notes:
        print(n)
    print(f"wrote {write_results('models', {'predicted': True, 'host': HOST, 'notes': notes, 'rows': rows})}")


if __name__ == "__main__":
    main()
