"""Benchmark: one device model fitted to every real source at once, and how far it carries.

Sources: the six files of ../shared/edgetpu-measurements (two single-TPU sweeps and four 2-TPU pipelines
on the study's machine: a USB 3.0 Edge TPU, Python threads or pycoral's runner) and the two columns of
../shared/models/published (Coral's published single-TPU times of three real architectures: a desktop
with a USB 3.0 Accelerator, C++; the Dev Board, PCIe and an Arm Cortex-A53, C++). Prints, per source,
the fitted error and the error when that source is left out of the fit; per group of sources (the study,
the published columns), the error when the device is fitted on the other group alone; every fitted
parameter with its plausible range and its spread over the leave-one-source-out refits.

Goals (issue 19): the study's files fitted <= 10% median each and left out <= 20% (the 2-TPU files);
the published columns fitted <= 15% median each; each group predicted from the other <= 30% median.
Writes benchmarks/results/calibration.json; `--write-presets` rewrites the device and host presets from
this fit, each with its scenarios (that is how they are made).

    python -m benchmarks.calibration [--data DIR] [--published DIR] [--write-presets]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import HOST_OPS_NOTE, MEASUREMENTS, MODELS, ROOT, fmt_table, write_results
from benchmarks.presets import write_presets
from tpuplan.profiles.calibration.fit import CalibrationResult, calibrate
from tpuplan.profiles.calibration.loso import Holdout, leave_one_file_out, leave_one_group_out
from tpuplan.profiles.calibration.measurements import MeasuredFile, RunSpec, read_measurements
from tpuplan.profiles.calibration.published import read_published
from tpuplan.profiles.pricing.device import DeviceSpec, preset
from tpuplan.profiles.pricing.host import HostSpec, host_preset

DATA = MEASUREMENTS
PUBLISHED = MODELS / "published"
# How each file was run (the data's README): one invoke per row on the study's machine, or the runner,
# batch, fresh runners and the split when the README gives it (FC: dense1-2 | dense3-5 = ops 0..4 | 5..10).
STUDY: dict[str, RunSpec] = {
    "fc_single_tpu.csv": RunSpec(host="python-threads"),
    "conv_single_tpu.csv": RunSpec(host="python-threads"),
    "fc_pipeline_2tpu_batch50.csv": RunSpec("python-threads", 50, cuts=(4,)),
    "fc_pipeline_2tpu_batch1.csv": RunSpec("python-threads", 1, cuts=(4,)),
    "conv_pipeline_2tpu_compiler_batch100.csv": RunSpec("pycoral", 100, fresh=True),
    "conv_pipeline_2tpu_profiling_batch100.csv": RunSpec("pycoral", 100, fresh=True),
}
DEVICES = ("edgetpu-usb", "edgetpu-pci")
HOSTS = ("python-threads", "pycoral", "desktop-x86", "arm-a53")
FIT_GOAL, LEFT_OUT_GOAL, PUBLISHED_GOAL, GROUP_GOAL = 0.10, 0.20, 0.15, 0.30


def study_files(data: Path = DATA, names: tuple[str, ...] | None = None) -> list[MeasuredFile]:
    """The study's files (all, or those named), read in place, each with how it was run."""
    return [MeasuredFile(read_measurements(data / name), STUDY[name]) for name in names or tuple(STUDY)]


def all_sources(data: Path = DATA, published: Path = PUBLISHED) -> list[MeasuredFile]:
    return study_files(data) + read_published(published)


def base_devices() -> dict[str, DeviceSpec]:
    return {name: preset(name) for name in DEVICES}


def base_hosts() -> dict[str, HostSpec]:
    """The base spec of each host (their structure and host_ops are kept by the fit)."""
    return {name: host_preset(name) for name in HOSTS}


def fit_all(data: Path = DATA, published: Path = PUBLISHED) -> CalibrationResult:
    """The calibration of the presets: every device and host, fitted to every source."""
    return calibrate(all_sources(data, published), base_devices(), base_hosts())


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def source_rows(result: CalibrationResult, files: list[Holdout]) -> list[list[Any]]:
    left = {h.left_out: h.median for h in files}
    return [
        [
            s.file,
            s.rows,
            _pct(s.median_rel_error),
            _pct(s.p90_rel_error),
            _pct(s.worst_rel_error),
            _pct(left.get(s.file)),
            _pct(s.memory_within_0_1_mib),
        ]
        for s in result.files
    ]


def group_rows(groups: list[Holdout]) -> list[list[Any]]:
    rows = []
    for h in groups:
        by_file = {f: [p.rel_error for p in h.points if p.file == f] for f in dict.fromkeys(p.file for p in h.points)}
        rows.append(
            [
                h.left_out,
                len(h.points),
                _pct(h.median),
                ", ".join(f"{f} {_pct(statistics.median(e))}" for f, e in by_file.items()),
            ]
        )
    return rows


def param_rows(result: CalibrationResult) -> list[list[Any]]:
    out = []
    for p in result.params:
        spread = "-" if p.spread is None else f"{p.spread[0]:.4g}..{p.spread[1]:.4g}"
        edge = f"AT {p.at_edge.upper()} EDGE" if p.at_edge else ""
        out.append([p.name, f"{p.value:.4g}" if p.used else "(no data)", f"{p.low:g}..{p.high:g}", spread, edge])
    return out


def with_spread(result: CalibrationResult, holdouts: list[Holdout]) -> CalibrationResult:
    """Each parameter's least and most value over the refits (and the full fit)."""
    params = []
    for p in result.params:
        values = [v for h in holdouts if (v := h.value(p.name)) is not None]
        spread = (round(min([p.value, *values]), 6), round(max([p.value, *values]), 6)) if p.used else None
        params.append(p.model_copy(update={"spread": spread}))
    return result.model_copy(update={"params": params})


def goals_met(result: CalibrationResult, files: list[Holdout], groups: list[Holdout]) -> dict[str, bool]:
    left = {h.left_out: h.median for h in files}
    out = {}
    for s in result.files:
        published = s.file.startswith("published")
        out[f"{s.file} fitted"] = s.median_rel_error <= (PUBLISHED_GOAL if published else FIT_GOAL)
        if s.runner is not None:
            out[f"{s.file} left out"] = left[s.file] <= LEFT_OUT_GOAL
    for h in groups:
        out[f"{h.left_out} from the other group"] = h.median <= GROUP_GOAL
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with the six measurement CSVs")
    parser.add_argument("--published", type=Path, default=PUBLISHED, help="folder with the published table")
    parser.add_argument("--write-presets", action="store_true", help="rewrite the device and host presets")
    args = parser.parse_args(argv)
    if not all((args.data / n).is_file() for n in STUDY) or not (args.published / "README.md").is_file():
        print(f"measurements not found in {args.data} and {args.published}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    sources = all_sources(args.data, args.published)
    result = calibrate(sources, base_devices(), base_hosts())
    fitted = time.perf_counter() - start
    tile = result.device.stream_tile_pixels
    files = leave_one_file_out(sources, base_devices(), base_hosts(), tile)
    groups = leave_one_group_out(sources, base_devices(), base_hosts(), tile)
    result = with_spread(result, files)
    seconds = time.perf_counter() - start
    print(
        fmt_table(
            ["source", "rows", "fitted median", "p90", "worst", "left out", "MiB within 0.1"],
            source_rows(result, files),
        )
    )
    print()
    print(fmt_table(["group left out", "rows", "median", "per source"], group_rows(groups)))
    print()
    print(fmt_table(["parameter", "value", "plausible range", "spread (left out)", ""], param_rows(result)))
    goals = goals_met(result, files, groups)
    for name, ok in goals.items():
        if not ok:
            print(f"goal MISSED: {name}")
    print(f"fit {fitted:.1f} s, with every refit {seconds:.1f} s; streaming tile {tile} output pixels")
    payload: dict[str, Any] = {
        "goals": {
            "fit": FIT_GOAL,
            "left_out": LEFT_OUT_GOAL,
            "published": PUBLISHED_GOAL,
            "group": GROUP_GOAL,
            "met": goals,
        },
        "seconds": round(seconds, 2),
        "left_out": {h.left_out: {"median": round(h.median, 4)} for h in files},
        "groups": {
            h.left_out: {"median": round(h.median, 4), "points": [p.model_dump(mode="json") for p in h.points]}
            for h in groups
        },
        **result.model_dump(mode="json"),
    }
    print(f"wrote {write_results('calibration', payload)}")
    if args.write_presets:
        written = write_presets(result, files, HOST_OPS_NOTE)
        print("wrote " + ", ".join(str(p.relative_to(ROOT)) for p in written))
    return 0 if all(goals.values()) else 2


if __name__ == "__main__":
    sys.exit(main())
