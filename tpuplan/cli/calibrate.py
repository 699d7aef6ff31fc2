"""`plan calibrate`: fit the Edge TPU cost model and the pipeline runners to real measurements.

    plan calibrate SWEEP.csv... --pipeline FILE:RUNNER:BATCH[:fresh][:cuts=I,J]... -o DEVICE.json [--hosts-dir DIR]

Positional CSVs are single-TPU sweeps (one `invoke()` per row). Each `--pipeline` names a pipeline CSV,
the runner that ran it (a host preset or HostSpec JSON: its structure and host_ops are kept, its per-stage
numbers fitted), the batch its times are amortised over, `fresh` when every run built new interpreters,
and the cuts when the file does not imply them. Writes the fitted device to -o and, with --hosts-dir,
each fitted runner as DIR/<runner name>.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tpuplan.cli.common import FORCE_HELP, JSON_HELP, check_outputs, print_json, spec_files, table, write_output
from tpuplan.profiles.calibrate import CalibrationResult, calibrate
from tpuplan.profiles.device import device_json, resolve_device
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.host import HostSpec, host_json, resolve_host
from tpuplan.profiles.measurements import MeasuredFile, RunSpec, parse_pipeline_spec, read_measurements

PIPELINE_HELP = ("A 2-TPU (or K-TPU) pipeline CSV as FILE:RUNNER:BATCH[:fresh][:cuts=I,J]: RUNNER a host preset "
                 "or HostSpec JSON, BATCH the inputs each time is amortised over, fresh if every run made new "
                 "interpreters, cuts if the split is not to be inferred from the memory columns. Repeatable.")


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def calibration_table(result: CalibrationResult) -> str:
    """Per file: rows, median / p90 / worst time error, memory hits; then the fitted numbers."""
    rows = [[s.file, s.runner or "one invoke", s.batch, s.rows, _pct(s.median_rel_error), _pct(s.p90_rel_error),
             _pct(s.worst_rel_error), _pct(s.memory_within_0_1_mib)] for s in result.files]
    head = ["file", "runner", "batch", "rows", "median error", "p90", "worst", "MiB within 0.1"]
    d = result.device
    lines = [table(head, rows), "", "predicted times are the planner's own (stage tables + totals on the fitted specs)",
             f"fitted {d.name}: on-chip {d.onchip_bytes:,} B - {d.io_reserve_frac:g} x Edge TPU in+out bytes, "
             f"largest cached layer {d.max_cached_layer_bytes:,} B, pads {d.channel_pad}/{d.input_pad}, "
             f"{d.per_channel_bytes} B per channel",
             f"  invoke overhead {d.invoke_overhead_us:g} us; link in {d.link.in_us_per_kib:g}, out "
             f"{d.link.out_us_per_kib:g}, upload {d.link.upload_us_per_kib:g} us/KiB"]
    for c in ("fc", "conv"):
        cost = d.cost(c)
        if cost.calibrated:
            lines.append(f"  {c:4}: {cost.us_per_mmac:g} us per padded MMAC, {cost.us_per_kib_act:g} us/KiB output, "
                         f"streaming {cost.stream_us_per_kib:g} us/KiB")
    for name, h in result.hosts.items():
        lines.append(f"runner {name}: stage {h.stage_us:g} us (+{h.stage_us_per_kib:g} us/KiB), serialized "
                     f"{h.serialized:g} + {h.serialized_device:g} x device, start {h.start_us:g} us, streaming "
                     f"+{h.stream_extra_us:g} us per input and +{h.stream_cold_us:g} us per run")
    return "\n".join(lines)


def _files(sweeps: list[Path], pipelines: list[str]) -> tuple[list[tuple[Path, RunSpec]], dict[str, HostSpec]]:
    """The measurement files with how they were run, and the base spec of every runner named."""
    runs = [(p, RunSpec()) for p in sweeps] + [parse_pipeline_spec(text) for text in pipelines]
    if not runs:
        raise TpuplanError("calibrate: give at least one sweep CSV or --pipeline")
    hosts = {run.runner: resolve_host(run.runner) for _, run in runs if run.runner is not None}
    return runs, hosts


def _host_outputs(hosts_dir: Path | None, hosts: dict[str, HostSpec]) -> dict[str, Path]:
    if hosts_dir is None:
        return {}
    if not hosts_dir.is_dir():
        raise TpuplanError(f"{hosts_dir}: --hosts-dir must be an existing directory")
    paths = {name: hosts_dir / f"{spec.name}.json" for name, spec in hosts.items()}
    if len(set(paths.values())) < len(paths):
        raise TpuplanError("calibrate: two runners have the same host name; they would write one file")
    return paths


def register(app: typer.Typer) -> None:
    @app.command("calibrate")
    def calibrate_cmd(
        output: Annotated[Path, typer.Option("--output", "-o", help="Write the fitted DeviceSpec JSON here.")],
        sweeps: Annotated[list[Path] | None, typer.Argument(
            help="Single-TPU sweep CSVs (shared/edgetpu-measurements).")] = None,
        pipeline: Annotated[list[str] | None, typer.Option("--pipeline", help=PIPELINE_HELP)] = None,
        hosts_dir: Annotated[Path | None, typer.Option("--hosts-dir", help="Write each fitted runner here.")] = None,
        base: Annotated[str | None, typer.Option(
            "--base", help="Device preset or JSON the fit starts from (its name and the op classes not measured).")
                        ] = None,
        name: Annotated[str | None, typer.Option("--name", help="Name of the fitted device.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Fit the Edge TPU cost model (and the pipeline runners) to real measurements; print the errors."""
        runs, hosts = _files(list(sweeps or []), list(pipeline or []))
        inputs = [p for p, _ in runs] + spec_files(*hosts, base)
        outputs = {"": output, **_host_outputs(hosts_dir, hosts)}
        check_outputs(list(outputs.values()), force=force, inputs=inputs)
        start = resolve_device(base)
        if name:
            start = start.model_copy(update={"name": name})
        files = [MeasuredFile(read_measurements(p), run) for p, run in runs]
        result = calibrate(files, start, hosts)
        write_output(output, device_json(result.device).encode())
        for runner, path in outputs.items():
            if runner:
                write_output(path, host_json(result.hosts[runner]).encode())
        if as_json:
            print_json(result.model_dump(mode="json"))
            return
        typer.echo(calibration_table(result))
        typer.echo("wrote " + ", ".join(str(p) for p in outputs.values()))
