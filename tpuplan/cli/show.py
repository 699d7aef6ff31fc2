"""`plan show`: a saved plan again, as a table, JSON or a picture (with measured times beside)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpuplan.cli.common import FORCE_HELP, check_output, emit, write_output
from tpuplan.cli.plantable import plan_table
from tpuplan.profiles.errors import TpuplanError

if TYPE_CHECKING:
    from tpuplan.planner.plan import Plan
    from tpuplan.runtime.verify.report import VerifyReport


def report_for(report: Path, plan: Plan) -> VerifyReport:
    """A `plan verify -o` report made for this very plan (a report is a document from anywhere: its
    bounds are checked on reading, and it is checked against the plan here)."""
    from tpuplan.planner.plan import plan_digest
    from tpuplan.runtime.verify.report import load_report

    rep = load_report(report)
    if rep.model_sha256 != plan.model.sha256 or rep.plan_sha256 != plan_digest(plan):
        raise TpuplanError(f"{report}: this verify report is for another plan")
    ranges = [(c.index, c.first_op, c.last_op) for c in rep.stages]
    if ranges != [(s.index, s.first_op, s.last_op) for s in plan.stages]:
        raise TpuplanError(f"{report}: the report's stages are not the plan's")
    return rep


def measured_times(report: Path, plan: Plan) -> list[float]:
    """The measured stage times of a report made for this plan, each a time a picture can draw."""
    return [c.measured_us for c in report_for(report, plan).stages]


def register(app: typer.Typer) -> None:
    @app.command("show")
    def show_cmd(
        plan_path: Annotated[Path, typer.Argument(metavar="PLAN.json", help="A plan from `plan solve -o`.")],
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
        """Print a saved plan: per-stage ops, memory, link bytes and predicted time.

        No -o: the plan is already a file (--json prints it, checked); --png writes the picture.
        """
        from tpuplan.planner.plan import load_plan

        if png is not None:
            check_output(png, force=force, inputs=[plan_path] + ([report] if report else []))
        elif report is not None:
            raise TpuplanError("--report draws measured times into the picture: give --png too")
        plan = load_plan(plan_path)
        if png is not None:
            from tpuplan.runtime.verify.plots import plan_figure

            if report is None:
                write_output(png, plan_figure(plan))
            else:
                rep = report_for(report, plan)
                label = f"SIMULATED by {rep.backend} (no hardware)" if rep.simulated else "measured"
                times = [c.measured_us for c in rep.stages]
                write_output(png, plan_figure(plan, times, measured_label=label, simulated=rep.simulated))
        emit(plan, output=None, as_json=as_json, table=plan_table(plan))
        if png is not None and not as_json:
            typer.echo(f"wrote {png}")
