"""`plan run`: run a split as a pipeline on this machine and print what was measured."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpuplan.cli.common import (
    FORCE_HELP,
    JSON_HELP,
    check_output,
    emit,
    is_stdout,
    per_second,
    shown,
    split_list,
    table,
)
from tpuplan.profiles.errors import TpuplanError, UsageError, quoted
from tpuplan.runtime.backends.kinds import backend_names, get_backend
from tpuplan.runtime.progress import QUIET_HELP, progress_bar

if TYPE_CHECKING:
    from tpuplan.runtime.run import RunResult

BACKEND_HELP = "Where the stages run: " + ", ".join(backend_names()) + "."
DEVICES_HELP = "Edge TPUs, one per stage: usb:0, pci:0, :0 ... (repeat or comma list; default: all present)."
INPUT_HELP = (
    "Real inputs: a .npy (one model input), a .npz (one array per input name) or a directory of "
    "PNG/JPEG images (resized and quantised for the model; needs Pillow). Read as the run goes."
)
RUNNER_HELP = "tpuplan (ours, see --workers) or pycoral (Google pycoral's C++ PipelinedModelRunner, if installed)."
WORKERS_HELP = "Our runner: one thread per stage, or one process per stage (shared-memory hand-off)."


def runner_name(runner: str, workers: str) -> str:
    """--runner and --workers as one runner name: threads, processes or pycoral."""
    if runner not in ("tpuplan", "pycoral"):
        raise UsageError(f"--runner must be tpuplan or pycoral (got {quoted(runner)})")
    if workers not in ("threads", "processes"):
        raise UsageError(f"--workers must be threads or processes (got {quoted(workers)})")
    if runner == "pycoral":
        if workers != "threads":
            raise UsageError("--workers applies to our own runner, not to --runner pycoral")
        return "pycoral"
    return workers


def _ms(us: float | None) -> float | str:
    return "-" if us is None else us / 1000


def run_table(res: RunResult) -> str:
    rows = [
        [
            s.index,
            s.device,
            s.copies,
            s.items,
            s.invoke_median_us if s.invoke_median_us is not None else "-",
            s.invoke_p90_us if s.invoke_p90_us is not None else "-",
            _ms(s.wait_in_us),
            _ms(s.blocked_out_us),
        ]
        for s in res.stages
    ]
    head = ["stage", "device", "copies", "items", "invoke p50 us", "invoke p90 us", "wait in ms", "blocked out ms"]
    lines = [
        f"measured on this machine, backend {res.backend}, runner {res.runner} (queue {res.queue_size}), "
        f"{res.inputs} inputs in {res.wall_s:.3f} s",
        f"inputs  {shown(res.input_source)}",
        "",
        table(head, rows),
        "",
        f"throughput {per_second(res.throughput_per_s)} inputs/s; latency p50 {res.latency_p50_us / 1000:.2f} ms, "
        f"p90 {res.latency_p90_us / 1000:.2f} ms, p99 {res.latency_p99_us / 1000:.2f} ms "
        "(from push to result, with inputs queued)",
        f"host CPU {res.host_cpu_us_per_input:.1f} us per input (all threads and processes)",
    ]
    if res.outputs_file is not None:
        lines.append(f"wrote the outputs of every input, in input order, to {shown(res.outputs_file)}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        directory: Annotated[Path, typer.Argument(help="A directory written by `plan split`.")],
        backend: Annotated[str, typer.Option("--backend", "-b", help=BACKEND_HELP)] = "cpu",
        devices: Annotated[list[str] | None, typer.Option("--devices", help=DEVICES_HELP)] = None,
        inputs: Annotated[
            int | None,
            typer.Option("--inputs", "-n", min=1, help="How many inputs (default: 100 random, or all of --input)."),
        ] = None,
        input_path: Annotated[Path | None, typer.Option("--input", "-i", help=INPUT_HELP)] = None,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Save every output, in input order, to this .npz.")
        ] = None,
        plan: Annotated[
            Path | None,
            typer.Option("--plan", help="Refuse to run unless the segments were split from this plan."),
        ] = None,
        runner: Annotated[str, typer.Option("--runner", help=RUNNER_HELP)] = "tpuplan",
        workers: Annotated[str, typer.Option("--workers", help=WORKERS_HELP)] = "threads",
        queue_size: Annotated[
            int | None,
            typer.Option(
                "--queue-size", min=1, max=1024, help="Inputs queued per stage (default: by tensor size, 2..32)."
            ),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", min=0, max=2**32 - 1, help="Seed of the random inputs.")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    ) -> None:
        """Run the segments as a pipeline and print measured times (and save the outputs with -o)."""
        from tpuplan.planner.plan import load_plan
        from tpuplan.profiles.limits import MAX_COUNT
        from tpuplan.runtime.run import RunOptions, check_split_matches_plan, run_split
        from tpuplan.runtime.split.manifest import load_split

        if inputs is not None and inputs >= MAX_COUNT:
            raise UsageError(f"--inputs (-n) must be less than {MAX_COUNT:,} (got {inputs:,})")
        name = runner_name(runner, workers)
        if output is not None:
            if output.suffix != ".npz" and not is_stdout(output):
                raise TpuplanError(f"{output}: the outputs are written as a .npz; name the file *.npz (or '-')")
            read = [p for p in (directory, plan, input_path) if p is not None]
            check_output(output, force=force, inputs=read, binary=True)
        chosen = get_backend(backend)
        split = load_split(directory, compiled=chosen.compiled)
        if plan is not None:
            check_split_matches_plan(split.manifest, load_plan(plan), str(directory))
        options = RunOptions(
            runner=name,
            inputs=inputs,
            input_path=input_path,
            seed=seed,
            outputs_path=output,
            overwrite_outputs=force,
            queue_size=queue_size,
        )
        devs = split_list(devices, "--devices")
        with progress_bar(quiet) as progress:
            res = run_split(split, backend=chosen, devices=devs, options=options, progress=progress)
        if not is_stdout(output):
            emit(res, output=None, force=False, as_json=as_json, table=run_table(res))
