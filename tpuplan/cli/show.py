"""`plan show`: a saved plan again, as a table, JSON or a picture (with measured times beside)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tpuplan.cli.common import FORCE_HELP, check_output, emit, write_output
from tpuplan.cli.plantable import plan_table
from tpuplan.planner.plan import load_plan
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.plots import plan_figure
from tpuplan.runtime.verify import load_report


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
        """Print a saved plan: per-stage ops, memory, link bytes and predicted time."""
        if png is not None:
            check_output(png, force=force, inputs=[plan_path] + ([report] if report else []))
        elif report is not None:
            raise TpuplanError("--report draws measured times into the picture: give --png too")
        plan = load_plan(plan_path)
        if png is not None:
            measured = None
            if report is not None:
                rep = load_report(report)
                if rep.model_sha256 != plan.model.sha256 or len(rep.stages) != len(plan.stages):
                    raise TpuplanError(f"{report}: this verify report is for another plan")
                measured = [c.measured_us for c in rep.stages]
            write_output(png, plan_figure(plan, measured))
        emit(plan, output=None, as_json=as_json, table=plan_table(plan))
        if png is not None and not as_json:
            typer.echo(f"wrote {png}")
