"""Benchmark: the cost model fitted to ALL the real Edge TPU measurements, and how well it reproduces them.

Fits the device and both runners to the six files of ../shared/edgetpu-measurements (two single-TPU
sweeps, four 2-TPU pipelines) and prints, per file, the median / p90 / worst relative error of the
planner's own prediction and the share of rows whose on-/off-chip MiB are within 0.1 MiB of the
compiler's report. Goals: median <= 10% on each single-TPU sweep (and each pipeline file), memory hits
>= 95% of the rows of every file. Writes benchmarks/results/calibration.json; `--write-presets` also
rewrites the edgetpu-usb / edgetpu-pci device presets and the python-threads / pycoral host presets from
this fit (that is how they are made).

    python -m benchmarks.calibration [--data DIR] [--write-presets]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import HOST_OPS_NOTE, MEASUREMENTS, ROOT, write_results
from tpuplan.cli.calibrate import calibration_table
from tpuplan.profiles.calibration.fit import CalibrationResult, FileSummary, calibrate
from tpuplan.profiles.calibration.measurements import MeasuredFile, RunSpec, read_measurements
from tpuplan.profiles.docio import write_atomic
from tpuplan.profiles.pricing.device import Calibration, DeviceSpec, LinkCost, device_json, preset
from tpuplan.profiles.pricing.host import HostSpec, host_json, host_preset

DATA = MEASUREMENTS
# How each file was run (the data's README): one invoke per row, or the runner, batch, fresh runners and
# the split when the README gives it (FC: dense1-2 | dense3-5 = ops 0..4 | 5..10; conv: inferred).
STUDY: dict[str, RunSpec] = {
    "fc_single_tpu.csv": RunSpec(),
    "conv_single_tpu.csv": RunSpec(),
    "fc_pipeline_2tpu_batch50.csv": RunSpec("python-threads", 50, cuts=(4,)),
    "fc_pipeline_2tpu_batch1.csv": RunSpec("python-threads", 1, cuts=(4,)),
    "conv_pipeline_2tpu_compiler_batch100.csv": RunSpec("pycoral", 100, fresh=True),
    "conv_pipeline_2tpu_profiling_batch100.csv": RunSpec("pycoral", 100, fresh=True),
}
RUNNERS = ("python-threads", "pycoral")
PCIE_US_PER_KIB = 2.048  # ASSUMED: PCIe Gen2 x1, ~500 MB/s each way
SINGLE_GOAL, PIPELINE_GOAL, MEMORY_GOAL = 0.10, 0.10, 0.95


def study_files(data: Path = DATA, names: tuple[str, ...] | None = None) -> list[MeasuredFile]:
    """The study's files (all, or those named), read in place, each with how it was run."""
    return [MeasuredFile(read_measurements(data / name), STUDY[name]) for name in names or tuple(STUDY)]


def study_hosts() -> dict[str, HostSpec]:
    """The base spec of each runner of the study (their structure and host_ops are kept by the fit)."""
    return {name: host_preset(name) for name in RUNNERS}


def fit_study(data: Path = DATA, names: tuple[str, ...] | None = None) -> CalibrationResult:
    """The calibration of the presets: the edgetpu-usb device and the study's runners, fitted to the files."""
    return calibrate(study_files(data, names), preset("edgetpu-usb"), study_hosts())


def goal_met(s: FileSummary) -> bool:
    return s.median_rel_error <= (SINGLE_GOAL if s.runner is None else PIPELINE_GOAL) and (
        s.memory_within_0_1_mib >= MEMORY_GOAL
    )


def by_streaming(result: CalibrationResult) -> dict[str, dict[str, float | int]]:
    """Per file, the median error of the rows whose every segment stays on chip and of those that stream
    (measured report): the two regimes fail differently (noise of sub-ms rows, per-layer streaming)."""
    out: dict[str, dict[str, float | int]] = {}
    for s in result.files:
        pts = [p for p in result.points if p.file == s.file]
        for key, part in (
            ("on_chip", [p for p in pts if not any(p.measured_offchip_mib)]),
            ("streaming", [p for p in pts if any(p.measured_offchip_mib)]),
        ):
            out.setdefault(s.file, {})[f"{key}_rows"] = len(part)
            out[s.file][f"{key}_median"] = round(statistics.median(p.rel_error for p in part), 4) if part else 0.0
    return out


def pcie_spec(usb: DeviceSpec) -> DeviceSpec:
    """The USB fit with an ASSUMED PCIe link: no PCIe measurements exist here."""
    cal = usb.calibration or Calibration(source="")
    note = (
        f"edgetpu-usb's fit with an ASSUMED PCIe link ({PCIE_US_PER_KIB:g} us/KiB in, out and upload, "
        f"~500 MB/s, PCIe Gen2 x1) instead of the USB fit's {usb.link.in_us_per_kib:g}/"
        f"{usb.link.out_us_per_kib:g}/{usb.link.upload_us_per_kib:g} us/KiB: no PCIe measurements exist "
        "here; streaming and every other number, and the errors below, are the USB fit's. USB fit: " + cal.source
    )
    link = LinkCost(
        in_us_per_kib=PCIE_US_PER_KIB,
        out_us_per_kib=PCIE_US_PER_KIB,
        upload_us_per_kib=PCIE_US_PER_KIB,
        calibrated=False,
    )
    return usb.model_copy(
        update={"name": "edgetpu-pci", "link": link, "calibration": cal.model_copy(update={"source": note[:4000]})}
    )


def with_host_ops_note(fitted: HostSpec) -> HostSpec:
    """The fitted host, its calibration still saying where its host_ops (kept from the preset) come from."""
    base = host_preset(fitted.name).calibration
    kept = [p for p in (base.source if base else "").split("; ") if p.startswith(HOST_OPS_NOTE)]
    cal = fitted.calibration or Calibration(source="")
    parts = [p for p in cal.source.split("; ") if p and not p.startswith(HOST_OPS_NOTE)] + kept
    return fitted.model_copy(update={"calibration": cal.model_copy(update={"source": "; ".join(parts)})})


def write_presets(result: CalibrationResult) -> list[Path]:
    """Rewrite the device and host presets from this fit (host_ops stay as the base presets have them)."""
    folder = ROOT / "profiles" / "presets"
    docs = {
        folder / "devices" / "edgetpu-usb.json": device_json(result.device),
        folder / "devices" / "edgetpu-pci.json": device_json(pcie_spec(result.device)),
        **{folder / "hosts" / f"{name}.json": host_json(with_host_ops_note(result.hosts[name])) for name in RUNNERS},
    }
    for path, text in docs.items():
        write_atomic(path, text.encode())
    return list(docs)


def study_parser(doc: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--data", type=Path, default=DATA, help="folder with the six measurement CSVs")
    return parser


def have_study(data: Path) -> bool:
    """Whether the six measurement files are in `data` (else says so on stderr)."""
    if all((data / name).is_file() for name in STUDY):
        return True
    print(f"measurements not found in {data}", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = study_parser(__doc__)
    parser.add_argument("--write-presets", action="store_true", help="rewrite the edgetpu-* and runner presets")
    args = parser.parse_args(argv)
    if not have_study(args.data):
        return 1
    start = time.perf_counter()
    result = fit_study(args.data)
    seconds = time.perf_counter() - start
    print(calibration_table(result))
    goals = {s.file: goal_met(s) for s in result.files}
    regimes = by_streaming(result)
    for s in result.files:
        r = regimes[s.file]
        print(
            f"{s.file}: goal {'met' if goals[s.file] else 'MISSED'}; median {100 * r['on_chip_median']:.1f}% on "
            f"{r['on_chip_rows']} all-on-chip rows, {100 * r['streaming_median']:.1f}% on {r['streaming_rows']} "
            "streaming rows"
        )
    print(f"calibration took {seconds:.1f} s")
    payload: dict[str, Any] = {
        "goals": {
            "single_median": SINGLE_GOAL,
            "pipeline_median": PIPELINE_GOAL,
            "memory_within_0_1_mib": MEMORY_GOAL,
            "met": goals,
        },
        "seconds": round(seconds, 2),
        "by_streaming": regimes,
        **result.model_dump(mode="json"),
    }
    print(f"wrote {write_results('calibration', payload)}")
    if args.write_presets:
        print("wrote " + ", ".join(str(p.relative_to(ROOT)) for p in write_presets(result)))
    return 0 if all(goals.values()) else 2


if __name__ == "__main__":
    sys.exit(main())
