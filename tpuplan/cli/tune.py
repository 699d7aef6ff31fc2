"""`plan tune`: plan, split, verify on the hardware, re-plan with the measured stage times, until the plan
stops changing (`runtime.tune`); prints every round and how many hardware runs it took.

The same loop by hand, one command at a time:

    plan solve MODEL.tflite --tpus K -o p1.json
    plan verify p1.json -m MODEL.tflite -b edgetpu -o r1.json
    plan solve MODEL.tflite --tpus K --measured r1.json -o p2.json
    plan verify p2.json -m MODEL.tflite -b edgetpu -o r2.json        (while p2's cuts differ from p1's)
    plan solve MODEL.tflite --tpus K --measured r1.json --measured r2.json -o p3.json
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpuplan.cli.common import (
    DEVICES_HELP,
    FORCE_HELP,
    HOST_HELP,
    JSON_HELP,
    SOURCE_HELP,
    check_output,
    document_text,
    emit,
    is_stdout,
    ms,
    parse_devices,
    per_second,
    read_model,
    read_source,
    require_planner,
    spec_option,
    split_list,
    table,
    time_limit_option,
    write_output,
)
from tpuplan.cli.run import BACKEND_HELP
from tpuplan.cli.solve import MEASURED_HELP, OBJECTIVE_HELP, SolveOptions, parse_objective
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.progress import QUIET_HELP, progress_bar

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tpuplan.runtime.tune import Round, TuneSummary

SAVE_HELP = "Keep every round's plan and report here (DIR/plan-N.json, DIR/report-N.json; created if missing)."


def tune_table(s: TuneSummary) -> str:
    """Every round: the plan verified, what it was predicted and measured to do, the plan made next."""
    kind = "SIMULATED" if s.simulated else "measured"
    rows = [
        [
            r.run,
            ",".join(map(str, r.cuts)) or "-",
            ms(r.predicted_period_us),
            ms(r.measured_slowest_stage_us),
            per_second(r.measured_throughput_per_s),
            r.verdict,
            ",".join(map(str, r.next_cuts)) or "-",
            "yes" if r.changed else "no",
        ]
        for r in s.rounds
    ]
    head = [
        "run",
        "cuts",
        "predicted period ms",
        f"{kind} slowest stage ms",
        f"{kind} throughput/s",
        "verdict",
        "next cuts",
        "changed",
    ]
    end = (
        f"converged after {s.runs} hardware run(s): no new plan promises {s.min_gain:.0%} over the best one verified"
        if s.converged
        else f"stopped after {s.runs} hardware run(s) (--max-runs): the plan still changed; the last one is kept"
    )
    lines = [
        *(["SIMULATED: no hardware ran this; every 'measured' time is a simulated Edge TPU's"] if s.simulated else []),
        f"plan tune on {s.backend}",
        "",
        table(head, rows),
        "",
        end,
        f"plan        cuts after ops {','.join(map(str, s.plan.cuts)) or '-'}, period {ms(s.plan.predicted_period_us)} "
        f"ms (measured invokes where measured, the rest predicted by the refitted device)",
    ]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("tune")
    def tune_cmd(
        source: Annotated[Path, typer.Argument(help=SOURCE_HELP)],
        tpus: Annotated[str, typer.Option("--tpus", "-k", help="Number of Edge TPUs, or 'auto'.")],
        model: Annotated[
            Path | None, typer.Option("--model", "-m", help="The .tflite model (when SOURCE is a profile).")
        ] = None,
        backend: Annotated[str, typer.Option("--backend", "-b", help=BACKEND_HELP)] = "edgetpu",
        devices: Annotated[list[str] | None, typer.Option("--devices", help=DEVICES_HELP)] = None,
        device: Annotated[list[str] | None, typer.Option("--device", "-d", help=DEVICES_HELP)] = None,
        host: Annotated[str | None, typer.Option("--host", help=HOST_HELP)] = None,
        objective: Annotated[str, typer.Option("--objective", help=OBJECTIVE_HELP)] = "throughput",
        max_tpus: Annotated[int, typer.Option("--max-tpus", min=1, max=64, help="Largest K of --tpus auto.")] = 8,
        max_runs: Annotated[int, typer.Option("--max-runs", min=1, max=100, help="Hardware runs at most.")] = 5,
        min_gain: Annotated[
            float, typer.Option("--min-gain", min=0.0, max=0.99, help="Stop when a new plan promises less (0.01 = 1%).")
        ] = 0.01,
        inputs: Annotated[int, typer.Option("--inputs", "-n", min=1, max=10_000, help="Inputs per run.")] = 10,
        repeats: Annotated[int, typer.Option("--repeats", min=1, max=10_000, help="Times per stage per run.")] = 10,
        measured: Annotated[list[Path] | None, typer.Option("--measured", help=MEASURED_HELP)] = None,
        time_limit: Annotated[float | None, typer.Option("--time-limit", help="Seconds for each solve.")] = None,
        save: Annotated[Path | None, typer.Option("--save", help=SAVE_HELP)] = None,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write the final plan JSON here ('-': standard output).")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    ) -> None:
        """Plan, verify on the hardware, re-plan with the measured times, until the plan stops changing."""
        time_limit_option(time_limit)
        spec_option(host, "--host")
        require_planner("plan tune")
        from tpuplan.cli.solve import parse_tpus, solve_for
        from tpuplan.planner.costs import Goal
        from tpuplan.profiles.pricing.host import resolve_host
        from tpuplan.runtime.backends.kinds import get_backend
        from tpuplan.runtime.tune import VerifyOptions, summary, tune
        from tpuplan.runtime.verify.refit import Reported
        from tpuplan.runtime.verify.report import load_report

        if source.suffix == ".json" and model is None:
            raise TpuplanError(f"{source}: a profile; give the model it is of with --model (verify splits it)")
        inputs_given = [source, *([model] if model else []), *(measured or [])]
        if output is not None:
            check_output(output, force=force, inputs=inputs_given)
        goal = Goal(parse_objective(objective))
        specs = parse_devices(device, "--device")
        host_spec = resolve_host(host)
        read = read_source(source, specs[0] if specs else None, host_spec)
        loaded = read_model(model) if model is not None else read.model
        assert loaded is not None
        chosen = get_backend(backend)
        k = parse_tpus(tpus)
        opts = SolveOptions(tpus, None, max_tpus, 0.05, False, time_limit, None, 0, False, in_order=True)
        earlier = [Reported(load_report(p), str(p)) for p in measured or []]
        if save is not None:
            save.mkdir(parents=True, exist_ok=True)

        def keep(run: int, step: Round) -> None:
            if save is None:
                return
            docs: list[tuple[str, BaseModel]] = [(f"plan-{run}.json", step.plan), (f"report-{run}.json", step.report)]
            for name, doc in docs:
                check_output(save / name, force=force, inputs=inputs_given)
                write_output(save / name, document_text(doc, save / name).encode(), force=force)

        with progress_bar(quiet) as progress:
            result = tune(
                read.profile,
                loaded,
                specs or [read.profile.device],
                host_spec,
                lambda p, d, h: solve_for(p, [(x, 1) for x in d], False, h, goal, opts, k),
                backend=chosen,
                device_strings=split_list(devices, "--devices") or None,
                max_runs=max_runs,
                min_gain=min_gain,
                earlier=earlier,
                options=VerifyOptions(inputs=inputs, repeats=repeats),
                on_round=keep,
                progress=progress,
            )
        doc = summary(result, chosen, min_gain)
        if output is not None:
            write_output(output, document_text(result.plan, output).encode(), force=force)
        if not is_stdout(output):
            emit(doc, output=None, force=False, as_json=as_json, table=tune_table(doc))
