"""`plan synth fc|conv`: the measured model families as .tflite files, no TensorFlow needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tpuplan.cli.common import FORCE_HELP, JSON_HELP, check_output, is_stdout, print_json, shown, write_output
from tpuplan.profiles.errors import TpuplanError

OUT_HELP = "Write the .tflite model here (atomically; '-': standard output, not a terminal)."
SEED_HELP = "Seed of the random weights (same seed, byte-identical file)."
MAX_SEED = 2**32 - 1


def _write_model(
    data: bytes, output: Path, force: bool, as_json: bool, family: str, parameters: dict[str, int]
) -> None:
    from tpuplan.profiles.tflite.reader import parse_model, sha256_of

    try:  # a model tpuplan's own reader would refuse (a tensor past its bounds) is not written
        parse_model(data, output)
    except TpuplanError as exc:
        raise TpuplanError(
            f"synth: the {family} model asked for is one tpuplan would refuse ({exc}); not written"
        ) from None
    write_output(output, data, force=force)
    if is_stdout(output):
        return
    if as_json:
        print_json(
            {
                "kind": "tpuplan.synth",
                "schema_version": 1,
                "family": family,
                "parameters": parameters,
                "path": str(output),
                "bytes": len(data),
                "sha256": sha256_of(data),
            }
        )
    else:
        typer.echo(f"wrote {shown(str(output))} ({len(data):,} bytes)")


def register(app: typer.Typer) -> None:
    synth_app = typer.Typer(
        help="Write a synthetic int8 .tflite model of a measured family (float in/out, QUANTIZE first, "
        "DEQUANTIZE last, like TFLiteConverter's output). No TensorFlow needed.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    app.add_typer(synth_app, name="synth")

    @synth_app.command("fc")
    def fc_cmd(
        output: Annotated[Path, typer.Option("--output", "-o", help=OUT_HELP)],
        width: Annotated[int, typer.Option("--width", help="Units N of every hidden Dense layer.")] = 1000,
        depth: Annotated[int, typer.Option("--depth", help="Number of hidden Dense(N, tanh) layers.")] = 4,
        in_features: Annotated[int, typer.Option("--in-features", help="Length of the input vector.")] = 64,
        out_features: Annotated[int, typer.Option("--out-features", help="Units of the last Dense.")] = 10,
        seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help=SEED_HELP)] = 0,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Dense layers as in fc_single_tpu.csv: in -> N (tanh) x depth -> out."""
        from tpuplan.profiles.synth import synth_fc

        check_output(output, force=force, binary=True)
        sizes = {"width": width, "depth": depth, "in_features": in_features, "out_features": out_features}
        _write_model(
            synth_fc(width, depth, in_features, out_features, seed),
            output,
            force,
            as_json,
            "fc",
            {**sizes, "seed": seed},
        )

    @synth_app.command("conv")
    def conv_cmd(
        output: Annotated[Path, typer.Option("--output", "-o", help=OUT_HELP)],
        filters: Annotated[int, typer.Option("--filters", help="Filters F of every Conv2D layer.")] = 64,
        layers: Annotated[int, typer.Option("--layers", help="Number of Conv2D(F, 3x3, same, relu) layers.")] = 5,
        size: Annotated[int, typer.Option("--size", help="Height and width of the input image.")] = 64,
        channels: Annotated[int, typer.Option("--channels", help="Channels of the input image.")] = 3,
        seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help=SEED_HELP)] = 0,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Conv2D layers as in conv_single_tpu.csv: size x size x channels -> F x layers."""
        from tpuplan.profiles.synth import synth_conv

        check_output(output, force=force, binary=True)
        sizes = {"filters": filters, "layers": layers, "size": size, "channels": channels}
        _write_model(
            synth_conv(filters, layers, size, channels, seed=seed),
            output,
            force,
            as_json,
            "conv",
            {**sizes, "seed": seed},
        )
