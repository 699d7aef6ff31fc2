"""`plan run`: run a split as a pipeline on this machine and print what was measured."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tpuplan.cli.common import JSON_HELP, emit, split_list, table
from tpuplan.planner.plan import load_plan
from tpuplan.runtime.backends import backend_names, get_backend
from tpuplan.runtime.manifest import load_split
from tpuplan.runtime.run import RunResult, check_split_matches_plan, run_split

BACKEND_HELP = "Where the stages run: " + ", ".join(backend_names()) + "."
DEVICES_HELP = "Edge TPUs, one per stage: usb:0, pci:0, :0 ... (repeat or comma list; default: all present)."


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


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        directory: Annotated[Path, typer.Argument(help="A directory written by `plan split`.")],
        backend: Annotated[str, typer.Option("--backend", "-b", help=BACKEND_HELP)] = "cpu",
        devices: Annotated[list[str] | None, typer.Option("--devices", help=DEVICES_HELP)] = None,
        inputs: Annotated[int, typer.Option("--inputs", "-n", min=1, help="Random inputs to push.")] = 100,
        plan: Annotated[
            Path | None,
            typer.Option("--plan", help="Refuse to run unless the segments were split from this plan's cuts."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    ) -> None:
        """Run the segments as a pipeline, one thread per stage, and print measured times."""
        chosen = get_backend(backend)
        split = load_split(directory, compiled=chosen.compiled)
        if plan is not None:
            check_split_matches_plan(split.manifest, load_plan(plan), str(directory))
        res = run_split(split, backend=chosen, devices=split_list(devices), inputs=inputs)
        emit(res, output=None, as_json=as_json, table=run_table(res))
