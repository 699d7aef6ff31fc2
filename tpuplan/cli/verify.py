"""`plan verify`: split (or take segments already split), run and compare a plan's predictions with
measurements on this machine. The exit code is what a build gates on: 0 ok, 3 a prediction missed,
4 nothing was compared (a CPU run of an Edge TPU plan, unless --outputs-only), 1 outputs differ or an error."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpuplan.cli.common import (
    FORCE_HELP,
    JSON_HELP,
    document_text,
    emit,
    is_stdout,
    per_second,
    read_model,
    shown,
    split_list,
    table,
    write_output,
)
from tpuplan.cli.outputs import check_outputs
from tpuplan.cli.run import BACKEND_HELP, DEVICES_HELP, INPUT_HELP
from tpuplan.runtime.progress import QUIET_HELP, progress_bar
from tpuplan.runtime.verify.tolerance import DEFAULT_INPUTS, MAX_TOLERANCE, MAX_VERIFY_INPUTS, TOLERANCE_FLOOR_US

if TYPE_CHECKING:
    from tpuplan.planner.plan import Plan
    from tpuplan.runtime.verify.report import VerifyReport

EXIT_MISSED = 3
EXIT_NOT_COMPARED = 4
EXIT_CODES = {"ok": 0, "prediction_missed": EXIT_MISSED, "not_compared": EXIT_NOT_COMPARED, "outputs_differ": 1}
SEGMENTS_HELP = (
    "Verify the segments in this folder as they are (from `plan split`, compiled or not, e.g. copied from the "
    "workstation that ran `plan split --compile`): checked against the plan and their sha256; no compiler needed."
)
MODEL_HELP = (
    "The .tflite model the plan is for: split here, and the outputs compared with it (optional with --segments)."
)
OUTPUTS_ONLY_HELP = "Judge the outputs alone (exit 0 when they equal the unsplit model's); stage times are reported."


def _mark(within: bool | None) -> str:
    return "not compared" if within is None else "ok" if within else "MISS"


def verify_table(rep: VerifyReport) -> str:
    rows = [
        [
            c.index,
            c.device,
            f"{c.first_op}..{c.last_op}",
            c.predicted_us / 1000,
            c.measured_us / 1000,
            c.measured_in_pipeline_us / 1000,
            f"{c.rel_error:.1%}",
            _mark(c.within_tolerance),
        ]
        for c in rep.stages
    ]
    head = [
        "stage",
        "predicted for",
        "ops",
        "predicted ms",
        f"{'SIMULATED' if rep.simulated else 'measured'} ms ({rep.backend})",
        "in pipeline ms",
        "error",
        "",
    ]
    host = rep.runner_host
    got = "SIMULATED" if rep.simulated else "measured"
    lines = [
        *(
            [f"SIMULATED run: no hardware; the {rep.backend} backend's times come from a hidden device model"]
            if rep.simulated
            else []
        ),
        f"plan verify on {rep.backend}: {rep.inputs} inputs ({shown(rep.input_source)}), tolerance {rep.tolerance:.0%} "
        f"or {rep.tolerance_floor_us:g} us",
        f"{'timed by   ' if rep.simulated else 'measured by'}   {measured_by(rep)}",
        f"segments      {shown(rep.segments) if rep.segments else 'split here from the model'}",
        "",
        table(head, rows),
        "",
        f"slowest stage   predicted {rep.predicted_bottleneck_us / 1000:.3f} ms, "
        f"{got} {rep.measured_bottleneck_us / 1000:.3f} ms",
        f"latency         predicted {rep.predicted_latency_us / 1000:.3f} ms, "
        f"{got} {rep.measured_latency_us / 1000:.3f} ms (one input through every stage)",
        f"throughput      predicted {per_second(rep.predicted_throughput_per_s)}/s "
        f"(ideal one core per stage: {per_second(rep.predicted_throughput_ideal_per_s)}/s), "
        f"{got} {per_second(rep.measured_throughput_per_s)}/s ({rep.throughput_rel_error:.1%} off)",
        f"runner          {host.empty_stage_us:.1f} us per input and stage with empty stages, "
        f"{host.real_stage_us:.1f} us with these ({'SIMULATED' if rep.simulated else 'measured here'}; "
        f"serialized share {'-' if host.serialized is None else f'{host.serialized:.2f}'})",
        f"outputs         {shown(rep.outputs_note)}",
        f"verdict         {rep.verdict}",
    ]
    lines += [f"note: {shown(n)}" for n in rep.notes]
    return "\n".join(lines)


def measured_by(rep: VerifyReport) -> str:
    """Who measured: the backend, its devices, the interpreter, on this machine."""
    devices = [d for d in dict.fromkeys(rep.devices) if d != rep.backend]
    on = f"{rep.backend} ({', '.join(devices)})" if devices else rep.backend
    if rep.simulated:
        return shown(f"{on}: SIMULATED (a virtual clock, no hardware); the CPU ran the segments for their outputs")
    return shown(f"{on}, {rep.interpreter or 'interpreter not recorded'}, on this machine")


def _figure(plan_doc: Plan, rep: VerifyReport) -> bytes:
    """The plan's picture with the measured stage times beside the predicted ones, each labelled."""
    from tpuplan.runtime.verify.plots import plan_figure

    predicted_for = ", ".join(dict.fromkeys(c.device for c in rep.stages))
    label = f"measured on {rep.backend} ({rep.interpreter or 'interpreter not recorded'})"
    if rep.simulated:
        label = f"SIMULATED by {rep.backend} (virtual clock, no hardware)"
    if not rep.comparable:
        label += f": not comparable with the {predicted_for} predictions"
    return plan_figure(
        plan_doc,
        [c.measured_us for c in rep.stages],
        measured_label=label,
        predicted_label=f"predicted for {predicted_for}",
        simulated=rep.simulated,
    )


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_cmd(
        plan: Annotated[Path, typer.Argument(help="The plan JSON from `plan solve`.")],
        model: Annotated[Path | None, typer.Option("--model", "-m", help=MODEL_HELP)] = None,
        segments: Annotated[Path | None, typer.Option("--segments", "-s", help=SEGMENTS_HELP)] = None,
        backend: Annotated[str, typer.Option("--backend", "-b", help=BACKEND_HELP)] = "cpu",
        devices: Annotated[list[str] | None, typer.Option("--devices", help=DEVICES_HELP)] = None,
        inputs: Annotated[
            int | None,
            typer.Option(
                "--inputs",
                "-n",
                min=1,
                max=MAX_VERIFY_INPUTS,
                help=f"Inputs to push: random, or the first of --input (default {DEFAULT_INPUTS}, or all of a "
                f"shorter --input; more than --input holds is an error; at most {MAX_VERIFY_INPUTS:,}: they are "
                "kept in memory to compare with the unsplit model).",
            ),
        ] = None,
        input_path: Annotated[Path | None, typer.Option("--input", "-i", help=INPUT_HELP)] = None,
        tolerance: Annotated[
            float,
            typer.Option("--tolerance", min=0.0, max=MAX_TOLERANCE, help="Allowed relative error per stage (0..10)."),
        ] = 0.15,
        floor_us: Annotated[
            float,
            typer.Option(
                "--tolerance-floor-us",
                min=0.0,
                max=1e9,
                help="An error of at most this many us is within tolerance whatever its share.",
            ),
        ] = TOLERANCE_FLOOR_US,
        outputs_only: Annotated[bool, typer.Option("--outputs-only", help=OUTPUTS_ONLY_HELP)] = False,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write the report JSON here ('-': standard output).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
        png: Annotated[
            Path | None, typer.Option("--png", help="Draw predicted vs measured stage times (needs matplotlib).")
        ] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    ) -> None:
        """Split (or take --segments), run and compare predicted with measured stage times.

        Exit 0 ok, 3 a prediction missed, 4 no stage time compared (not --outputs-only), 1 outputs differ."""
        from tpuplan.planner.plan import load_plan
        from tpuplan.runtime.backends.kinds import get_backend
        from tpuplan.runtime.split.manifest import load_split
        from tpuplan.runtime.verify.check import verify

        if model is None and segments is None:
            raise typer.BadParameter("give --model (split the plan here) or --segments DIR (already split)")
        given = [p for p in (plan, model, input_path, segments) if p is not None]
        check_outputs([output, png], force=force, inputs=given, binary=[png] if png else [])
        plan_doc = load_plan(plan)
        chosen = get_backend(backend)
        with progress_bar(quiet) as progress:
            rep = verify(
                plan_doc,
                read_model(model) if model is not None else None,
                segments=load_split(segments, compiled=chosen.compiled) if segments is not None else None,
                backend=chosen,
                devices=split_list(devices, "--devices"),
                inputs=inputs,
                input_path=input_path,
                tolerance=tolerance,
                tolerance_floor_us=floor_us,
                outputs_only=outputs_only,
                progress=progress,
            )
        picture = _figure(plan_doc, rep) if png is not None else b""
        text = document_text(rep, output)  # checked before anything is written
        if output is not None:
            write_output(output, text.encode(), force=force)
        if png is not None:
            write_output(png, picture, force=force)
        if not is_stdout(output) and not is_stdout(png):
            emit(rep, output=None, force=False, as_json=as_json, table=verify_table(rep))
        if rep.verdict != "ok":
            raise typer.Exit(EXIT_CODES[rep.verdict])
