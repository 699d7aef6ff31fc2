"""`plan calibrate`: fit the Edge TPU cost model to real measurements and show predicted vs measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tpuplan.cli.common import FORCE_HELP, check_output, table, write_output
from tpuplan.profiles.calibrate import CalibrationResult, calibrate, read_measurements
from tpuplan.profiles.device import device_json, resolve_device


def calibration_table(result: CalibrationResult) -> str:
    """Per point predicted vs measured, then the median and worst error and memory fit per sweep."""
    rows = [[p.sweep, p.x, round(p.measured_ms, 3), round(p.predicted_ms, 3), f"{100 * p.rel_error:.1f}%",
             f"{p.measured_onchip_mib:.2f}", f"{p.predicted_onchip_mib:.2f}", f"{p.measured_offchip_mib:.2f}",
             f"{p.predicted_offchip_mib:.2f}", "ok" if p.memory_ok else "OFF"] for p in result.points]
    head = ["sweep", "x", "meas ms", "pred ms", "error", "meas on", "pred on", "meas off", "pred off", "MiB"]
    dev, cal = result.device, result.device.calibration
    lines = [table(head, rows), ""]
    if cal is not None:
        for s in cal.median_rel_error:
            lines.append(
                f"{s:5} median error {100 * cal.median_rel_error[s]:.1f}%, worst {100 * cal.worst_rel_error[s]:.1f}%, "
                f"on-/off-chip within 0.3 MiB for {100 * cal.memory_within_0_3_mib[s]:.0f}% of points"
            )
    lines.append(
        f"fitted {dev.name}: on-chip {dev.onchip_bytes:,} B, largest cached layer {dev.max_cached_layer_bytes:,} B, "
        f"activation reserve {dev.activation_reserve_frac:g}, pads {dev.channel_pad}/{dev.input_pad}, "
        f"invoke overhead {dev.invoke_overhead_us:g} us, link {dev.link_bytes_per_us:g} B/us"
    )
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("calibrate")
    def calibrate_cmd(
        csvs: Annotated[list[Path], typer.Argument(help="Sweep CSVs in the format of shared/edgetpu-measurements.")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Write the fitted DeviceSpec JSON here.")],
        base: Annotated[
            str | None,
            typer.Option("--base", help="Device preset or JSON the fit starts from (name; unmeasured op classes)."),
        ] = None,
        name: Annotated[str | None, typer.Option("--name", help="Name of the fitted device.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the full result JSON instead of a table.")] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Fit the Edge TPU cost model to real single-TPU measurements; print predicted vs measured."""
        check_output(output, force=force, inputs=csvs)
        start = resolve_device(base)
        if name:
            start = start.model_copy(update={"name": name})
        result = calibrate([read_measurements(path) for path in csvs], start)
        write_output(output, device_json(result.device).encode())
        if as_json:
            typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
        else:
            typer.echo(calibration_table(result))
            typer.echo(f"wrote {output}")
