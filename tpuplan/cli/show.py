"""`plan show`: a saved plan again, as a table, JSON or a picture (with measured times beside)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpuplan.cli.common import FORCE_HELP, check_outputs, emit, is_stdout, shown, write_output
from tpuplan.cli.plantable import plan_table
from tpuplan.profiles.errors import UsageError

if TYPE_CHECKING:
    from tpuplan.planner.plan import Plan
    from tpuplan.runtime.verify.report import VerifyReport


def report_for(report: Path, plan: Plan) -> VerifyReport:
    """A `plan verify -o` report made for this very plan (a report is a document from anywhere: its
    bounds are checked on reading, and it is checked against the plan here)."""
    from tpuplan.runtime.verify.report import check_report_matches, load_report

    rep = load_report(report)
    check_report_matches(rep, plan, str(report))
    return rep


def measured_times(report: Path, plan: Plan) -> list[float]:
    """The measured stage times of a report made for this plan, each a time a picture can draw."""
    return [c.measured_us for c in report_for(report, plan).stages]


def register(app: typer.Typer) -> None:
    @app.command("show")
    def show_cmd(
        plan_path: Annotated[Path, typer.Argument(metavar="PLAN.json", help="A plan from `plan solve -o`.")],
        output: Annotated[
            Path | None,
            typer.Option("--output", "-o", help="Write the plan JSON here ('-': standard output)."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the plan JSON.")] = False,
        png: Annotated[
            Path | None,
            typer.Option("--png", help="Also draw the plan: stage times, parameters vs on-chip capacity, cuts."),
        ] = None,
        report: Annotated[
            Path | None,
            typer.Option("--report", help="A `plan verify -o` report: draw measured times beside predicted."),
        ] = None,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Print a saved plan: per-stage ops, memory, link bytes and predicted time (-o writes it again,
        checked; a plan of an older schema is written in the current one)."""
        from tpuplan.planner.plan import load_plan

        if report is not None and png is None:
            raise UsageError("--report draws measured times into the picture: give --png too")
        inputs = [plan_path] + ([report] if report else [])
        check_outputs([output, png], force=force, inputs=inputs, binary=[png] if png else [])
        plan = load_plan(plan_path)
        if png is not None:
            from tpuplan.runtime.verify.plots import plan_figure

            if report is None:
                write_output(png, plan_figure(plan), force=force)
            else:
                rep = report_for(report, plan)
                label = f"SIMULATED by {rep.backend} (no hardware)" if rep.simulated else "measured"
                times = [c.measured_us for c in rep.stages]
                picture = plan_figure(plan, times, measured_label=label, simulated=rep.simulated)
                write_output(png, picture, force=force)
        if is_stdout(png):
            return
        emit(plan, output=output, force=force, as_json=as_json, table=plan_table(plan))
        if png is not None and not as_json and not is_stdout(output):
            typer.echo(f"wrote {shown(str(png))}")
