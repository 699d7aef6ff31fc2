"""`plan run` and `plan verify`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from profiles.docio import write_doc
from profiles.errors import TpuplanError
from runtime.cli_common import emit, table
from runtime.run import RunResult, run_split
from runtime.verify import VerifyReport, verify

EXIT_MISSED = 3


def _split_list(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def run_table(res: RunResult) -> str:
    rows = [[s.index, s.device, s.items, s.invoke_median_us, s.invoke_p90_us, s.wait_in_us / 1000,
             s.blocked_out_us / 1000] for s in res.stages]
    head = ["stage", "device", "items", "invoke p50 us", "invoke p90 us", "wait in ms", "blocked out ms"]
    return "\n".join([
        f"measured on this machine, backend {res.backend}, {res.inputs} inputs in {res.wall_s:.3f} s",
        "",
        table(head, rows),
        "",
        f"throughput {res.throughput_per_s:.1f} inputs/s; latency p50 {res.latency_p50_us / 1000:.2f} ms, "
        f"p90 {res.latency_p90_us / 1000:.2f} ms, p99 {res.latency_p99_us / 1000:.2f} ms "
        "(from push to result, with inputs queued)",
    ])


def verify_table(rep: VerifyReport) -> str:
    rows = [[c.index, c.device, f"{c.first_op}..{c.last_op}", c.predicted_us / 1000, c.measured_us / 1000,
             c.measured_in_pipeline_us / 1000, f"{c.rel_error:.1%}", "ok" if c.within_tolerance else "MISS"]
            for c in rep.stages]
    head = ["stage", "device", "ops", "predicted ms", "measured ms", "in pipeline ms", "error", ""]
    lines = [
        f"plan verify on {rep.backend}: {rep.inputs} inputs, tolerance {rep.tolerance:.0%}",
        "",
        table(head, rows),
        "",
        f"slowest stage   predicted {rep.predicted_bottleneck_us / 1000:.3f} ms, "
        f"measured {rep.measured_bottleneck_us / 1000:.3f} ms",
        f"latency         predicted {rep.predicted_latency_us / 1000:.3f} ms, "
        f"measured {rep.measured_latency_us / 1000:.3f} ms (one input through every stage)",
        f"throughput      predicted {rep.predicted_throughput_per_s:.1f}/s "
        f"(ideal one core per stage: {rep.predicted_throughput_ideal_per_s:.1f}/s), "
        f"measured {rep.measured_throughput_per_s:.1f}/s ({rep.throughput_rel_error:.1%} off)",
        f"outputs         {rep.outputs_note}",
        f"verdict         {rep.verdict}",
    ]
    lines += [f"note: {n}" for n in rep.notes]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        directory: Annotated[Path, typer.Argument(help="A directory written by `plan split`.")],
        backend: Annotated[str, typer.Option("--backend", "-b", help="cpu or edgetpu.")] = "cpu",
        devices: Annotated[
            list[str] | None,
            typer.Option("--devices", help="Edge TPUs, one per segment: usb:0, pci:0, :0 ... (repeat or comma list)."),
        ] = None,
        inputs: Annotated[int, typer.Option("--inputs", "-n", min=1, help="Random inputs to push.")] = 100,
        plan: Annotated[
            Path | None,
            typer.Option("--plan", help="Refuse to run unless the segments were split from this plan's cuts."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Run the segments as a pipeline, one thread per stage, and print measured times."""
        res = run_split(directory, plan=plan, backend=backend, devices=_split_list(devices), inputs=inputs)
        emit(res, output=None, as_json=as_json, table=run_table(res))

    @app.command("verify")
    def verify_cmd(
        plan: Annotated[Path, typer.Argument(help="The plan JSON from `plan solve`.")],
        model: Annotated[Path, typer.Option("--model", "-m", help="The .tflite model the plan is for.")],
        backend: Annotated[str, typer.Option("--backend", "-b", help="cpu or edgetpu.")] = "cpu",
        devices: Annotated[
            list[str] | None, typer.Option("--devices", help="Edge TPUs, one per stage (edgetpu backend).")
        ] = None,
        inputs: Annotated[int, typer.Option("--inputs", "-n", min=1, help="Random inputs to push.")] = 50,
        tolerance: Annotated[
            float, typer.Option("--tolerance", min=0.0, help="Allowed relative error per stage.")
        ] = 0.15,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report JSON here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report JSON.")] = False,
        force: Annotated[bool, typer.Option("--force", help="Overwrite --output if it exists.")] = False,
        png: Annotated[
            Path | None, typer.Option("--png", help="Draw predicted vs measured stage times (needs matplotlib).")
        ] = None,
    ) -> None:
        """Split, run and compare predicted with measured stage times; exit 3 when a prediction misses."""
        if output is not None and output.exists() and not force:
            raise TpuplanError(f"{output}: already exists (use --force to overwrite)")
        rep = verify(plan, model, backend=backend, devices=_split_list(devices), inputs=inputs,
                     tolerance=tolerance)
        if output is not None:
            write_doc(output, rep, force=force)
        if png is not None:
            from planner.plan import load_plan
            from runtime.plots import write_plan_png

            write_plan_png(png, load_plan(plan), [c.measured_us for c in rep.stages])
        emit(rep, output=None, as_json=as_json, table=verify_table(rep))
        if rep.verdict != "ok":
            raise typer.Exit(EXIT_MISSED if rep.verdict == "prediction_missed" else 1)
