"""`plan calibrate-host`: price the ops the Edge TPU leaves to the host, from ops timed on a real CPU."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpuplan.cli.common import (
    FORCE_HELP,
    HOST_HELP,
    JSON_HELP,
    check_output,
    emit,
    name_option,
    shown,
    spec_files,
    spec_option,
    table,
)

if TYPE_CHECKING:
    from tpuplan.profiles.calibration.hostops import HostOpsFit


def host_fit_table(fit: HostOpsFit) -> str:
    rows = []
    for row in fit.classes:
        cost = fit.host.host_ops.get(row.op_class)
        rows.append(
            [
                row.op_class,
                row.ops,
                "yes" if row.calibrated else "no",
                f"{100 * row.median_rel_error:.0f}%" if row.median_rel_error is not None else "-",
                f"{cost.us_per_op:g}" if cost else "-",
                f"{cost.us_per_kib:g}" if cost else "-",
                f"{cost.us_per_mmac:g}" if cost else "-",
            ]
        )
    head = ["op class / type", "ops measured", "calibrated", "median error", "us per op", "us per KiB", "us per MMAC"]
    return "\n".join(
        [table(head, rows), "", f"host {shown(fit.host.name)}: host op prices fitted to measured CPU times"]
    )


def register(app: typer.Typer) -> None:
    @app.command("calibrate-host")
    def calibrate_host_cmd(
        profiles: Annotated[list[Path], typer.Argument(help="Measured profiles from `plan profile --measure`.")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Write the fitted HostSpec JSON here.")],
        base: Annotated[
            str | None, typer.Option("--base", help=HOST_HELP + " The fit keeps its runner numbers.")
        ] = None,
        name: Annotated[str | None, typer.Option("--name", help="Name of the fitted host.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Fit the host CPU cost of each op class (and of each op type the host runs) to measured op times."""
        from tpuplan.profiles.calibration.hostops import fit_host_ops
        from tpuplan.profiles.model import load_profile
        from tpuplan.profiles.pricing.host import resolve_host

        name = name_option(name)
        check_output(output, force=force, inputs=[*profiles, *spec_files(spec_option(base, "--base"))])
        start = resolve_host(base)
        if name:
            start = start.model_copy(update={"name": name})
        fit = fit_host_ops([load_profile(p) for p in profiles], start)
        emit(fit.host, output=output, force=force, as_json=as_json, table=host_fit_table(fit))
