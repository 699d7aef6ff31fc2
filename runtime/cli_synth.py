"""`plan synth fc|conv` (the measured model families as .tflite) and `plan calibrate` (fit a DeviceSpec)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from profiles.calibrate import CalibrationResult, calibrate
from profiles.device import device_json, resolve_device
from profiles.docio import write_atomic
from profiles.synth import synth_conv, synth_fc
from runtime.cli_common import table

OUT_HELP = "Write the .tflite model here (atomically)."
SEED_HELP = "Seed of the random weights (same seed, byte-identical file)."


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


def _write_model(data: bytes, output: Path) -> None:
    write_atomic(output, data)
    typer.echo(f"wrote {output} ({len(data):,} bytes)")


def register(app: typer.Typer) -> None:
    synth_app = typer.Typer(
        help="Write a synthetic int8 .tflite model of a measured family (float in/out, QUANTIZE first, "
        "DEQUANTIZE last, like TFLiteConverter's output). No TensorFlow needed.",
        no_args_is_help=True,
    )
    app.add_typer(synth_app, name="synth")

    @synth_app.command("fc")
    def fc_cmd(
        output: Annotated[Path, typer.Option("--output", "-o", help=OUT_HELP)],
        width: Annotated[int, typer.Option("--width", help="Units N of every hidden Dense layer.")] = 1000,
        depth: Annotated[int, typer.Option("--depth", help="Number of hidden Dense(N, tanh) layers.")] = 4,
        in_features: Annotated[int, typer.Option("--in-features", help="Length of the input vector.")] = 64,
        out_features: Annotated[int, typer.Option("--out-features", help="Units of the last Dense.")] = 10,
        seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 0,
    ) -> None:
        """Dense layers as in fc_single_tpu.csv: in -> N (tanh) x depth -> out."""
        _write_model(synth_fc(width, depth, in_features, out_features, seed), output)

    @synth_app.command("conv")
    def conv_cmd(
        output: Annotated[Path, typer.Option("--output", "-o", help=OUT_HELP)],
        filters: Annotated[int, typer.Option("--filters", help="Filters F of every Conv2D layer.")] = 64,
        layers: Annotated[int, typer.Option("--layers", help="Number of Conv2D(F, 3x3, same, relu) layers.")] = 5,
        size: Annotated[int, typer.Option("--size", help="Height and width of the input image.")] = 64,
        channels: Annotated[int, typer.Option("--channels", help="Channels of the input image.")] = 3,
        seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 0,
    ) -> None:
        """Conv2D layers as in conv_single_tpu.csv: size x size x channels -> F x layers."""
        _write_model(synth_conv(filters, layers, size, channels, seed=seed), output)

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
    ) -> None:
        """Fit the Edge TPU cost model to real single-TPU measurements; print predicted vs measured."""
        start = resolve_device(base)
        if name:
            start = start.model_copy(update={"name": name})
        result = calibrate(csvs, start)
        write_atomic(output, device_json(result.device).encode())
        if as_json:
            typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
        else:
            typer.echo(calibration_table(result))
            typer.echo(f"wrote {output}")
