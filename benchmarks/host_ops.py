"""Host op prices fitted to ops timed on this CPU, and how well they predict a model they did not see.

Every CPU model of ../shared/models is profiled with `measure_profile` (each op timed alone on the
LiteRT CPU interpreter), or read from --profiles DIR (files from `plan profile --measure`). The host op
prices are fitted to all of them (`plan calibrate-host`); each model is then predicted by a fit to the
others only (leave one model out). The number that matters for a plan is a model's total time of the
ops the Edge TPU leaves to the host: it is compared, measured vs predicted, for the flat price of the
first version (about 18 us per host op, whatever the op), the fit to all models and the leave-one-out
fit. Both fits start from that flat host, so a held-out model's ops reach its prediction in no way.
`--write-presets` writes the fitted host_ops into the three host presets (their runner numbers stay).
Run: python -m benchmarks.host_ops [--profiles DIR] [--repeats 20] [--write-presets]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from benchmarks.common import HOST_OPS_NOTE, ROOT, cpu_model_paths, fmt_table, write_results
from tpuplan.profiles.calibration.hostops import fit_host_ops
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile, load_profile
from tpuplan.profiles.pricing.device import Calibration
from tpuplan.profiles.pricing.formula import HostOpCost
from tpuplan.profiles.pricing.host import HostSpec, host_preset, host_preset_names
from tpuplan.profiles.pricing.opcost import host_op_us
from tpuplan.profiles.tflite.reader import load_model
from tpuplan.runtime.measure import measure_profile

FLAT_US = 18.0  # the first version's price of any host op (issue 11: "priced at a flat ~18 us")


def flat_host() -> HostSpec:
    """Our runner's host with every op at the first version's flat price: the baseline, and where both
    fits start (op classes with too few measured ops keep it, rather than numbers fitted to all models)."""
    return host_preset("tpuplan").model_copy(
        update={"host_ops": {"other": HostOpCost(us_per_op=FLAT_US)}, "calibration": None}
    )


def measured_profiles(folder: Path | None, repeats: int) -> list[Profile]:
    if folder is not None:
        return [load_profile(p) for p in sorted(folder.glob("*.json")) if load_profile(p).source == "measured"]
    out = []
    for path in cpu_model_paths():
        try:
            out.append(measure_profile(load_model(path), repeats=repeats))
            print(f"measured {path.name}", flush=True)
        except TpuplanError as exc:
            print(f"skipped {path.name}: {exc}", flush=True)
    return out


def host_total(prof: Profile, host: HostSpec | None) -> float:
    """The model's ops the Edge TPU leaves to the host: measured (host None) or predicted by `host`."""
    ops = [op for op in prof.ops if not op.supported]
    if host is None:
        return sum(float(op.measured_us or 0.0) for op in ops)
    return float(
        sum(host_op_us(op.op_class, op.op_type, op.macs, op.input_bytes + op.output_bytes, host) for op in ops)
    )


def _with_note(spec: HostSpec) -> Calibration:
    """The preset's calibration, its host-op part replaced by where the host op prices now come from."""
    cal = spec.calibration or Calibration(source="")
    parts = [p for p in cal.source.split("; ") if p and not p.startswith(HOST_OPS_NOTE)]
    parts.append(f"{HOST_OPS_NOTE}, fitted to ops timed on this machine's CPU with LiteRT (x86 VM, not a Coral host)")
    return cal.model_copy(update={"source": "; ".join(parts)})


def _rel(pred: float, real: float) -> float:
    return abs(pred - real) / max(real, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--write-presets", action="store_true")
    args = parser.parse_args()
    base = flat_host()
    profiles = measured_profiles(args.profiles, args.repeats)
    fitted = fit_host_ops(profiles, base)
    rows: list[dict[str, Any]] = []
    for i, prof in enumerate(profiles):
        real = host_total(prof, None)
        if real <= 0:
            continue  # every op on the Edge TPU: nothing to predict
        others = fit_host_ops(profiles[:i] + profiles[i + 1 :], base).host
        rows.append(
            {
                "model": Path(prof.model.path).name,
                "host_ops": sum(not op.supported for op in prof.ops),
                "measured_us": round(real, 1),
                "flat_us": host_total(prof, base),
                "fit_us": host_total(prof, fitted.host),
                "loo_us": host_total(prof, others),
            }
        )
    for r in rows:
        for key in ("flat", "fit", "loo"):
            r[f"{key}_err"] = round(_rel(r[f"{key}_us"], r["measured_us"]), 4)
    head = ["model", "host ops", "measured ms", "flat ms (err)", "fit ms (err)", "leave-one-out ms (err)"]
    cells = [
        [
            r["model"],
            r["host_ops"],
            r["measured_us"] / 1000,
            *(f"{r[f'{k}_us'] / 1000:.3f} ({100 * r[f'{k}_err']:.0f}%)" for k in ("flat", "fit", "loo")),
        ]
        for r in rows
    ]
    print(fmt_table(head, cells))
    summary = {
        f"median_err_{k}": round(statistics.median(r[f"{k}_err"] for r in rows), 4) if rows else None
        for k in ("flat", "fit", "loo")
    }
    print(
        f"\nmedian error of a model's host-op time: flat {summary['median_err_flat']}, fitted "
        f"{summary['median_err_fit']}, leave-one-model-out {summary['median_err_loo']} ({len(rows)} models)"
    )
    classes = [c.model_dump() for c in fitted.classes]
    if args.write_presets:
        for name in host_preset_names():
            spec = host_preset(name)
            new = spec.model_copy(update={"host_ops": fitted.host.host_ops, "calibration": _with_note(spec)})
            path = ROOT / "tpuplan" / "profiles" / "pricing" / "presets" / "hosts" / f"{name}.json"
            write_doc(path, new)
            print(f"wrote {path.relative_to(ROOT)}")
    source = str(args.profiles) if args.profiles else f"measured now, {args.repeats} repeats"
    out = write_results(
        "host_ops",
        {
            "measured_on_this_machine": True,
            "profiles": source,
            "models": len(profiles),
            "summary": summary,
            "classes": classes,
            "rows": rows,
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
