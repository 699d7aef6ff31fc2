"""`plan synth fc|conv`: the measured model families as .tflite files, no TensorFlow needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tpuplan.cli.common import FORCE_HELP, check_output, write_output
from tpuplan.profiles.synth import synth_conv, synth_fc

OUT_HELP = "Write the .tflite model here (atomically)."
SEED_HELP = "Seed of the random weights (same seed, byte-identical file)."


def _write_model(data: bytes, output: Path) -> None:
    write_output(output, data)
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
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Dense layers as in fc_single_tpu.csv: in -> N (tanh) x depth -> out."""
        check_output(output, force=force)
        _write_model(synth_fc(width, depth, in_features, out_features, seed), output)

    @synth_app.command("conv")
    def conv_cmd(
        output: Annotated[Path, typer.Option("--output", "-o", help=OUT_HELP)],
        filters: Annotated[int, typer.Option("--filters", help="Filters F of every Conv2D layer.")] = 64,
        layers: Annotated[int, typer.Option("--layers", help="Number of Conv2D(F, 3x3, same, relu) layers.")] = 5,
        size: Annotated[int, typer.Option("--size", help="Height and width of the input image.")] = 64,
        channels: Annotated[int, typer.Option("--channels", help="Channels of the input image.")] = 3,
        seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 0,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Conv2D layers as in conv_single_tpu.csv: size x size x channels -> F x layers."""
        check_output(output, force=force)
        _write_model(synth_conv(filters, layers, size, channels, seed=seed), output)
