"""`plan devices`: the device presets and the Edge TPUs present on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpuplan.cli.common import FORCE_HELP, JSON_HELP, check_output, clip, emit, mib, table

PROVENANCE_WIDTH = 80  # the provenance column, cut between words (`--json` has it whole)

if TYPE_CHECKING:
    from tpuplan.runtime.backends.catalog import DevicesDoc


def devices_table(doc: DevicesDoc) -> str:
    """Presets with where their numbers come from, hosts likewise, then the Edge TPUs found."""
    rows = [
        [
            s.name,
            s.backend,
            mib(s.onchip_bytes) if s.backend == "edgetpu" else "- (host CPU)",
            f"{s.link.in_us_per_kib:g}/{s.link.out_us_per_kib:g}",
            clip(s.calibration.provenance(), PROVENANCE_WIDTH) if s.calibration else "assumed (no fit)",
        ]
        for s in doc.presets
    ]
    head = ["device", "backend", "on-chip MiB", "link us/KiB in/out", "provenance"]
    lines = [table(head, rows, right=[False, False, True, True, False])]
    rows = [
        [
            h.name,
            f"{h.stage_us:g}",
            f"{h.serialized:g}",
            "yes" if h.fresh_upload else "no",
            "shared" if h.bus_shared else "own",
            clip(h.calibration.provenance(), PROVENANCE_WIDTH) if h.calibration else "assumed (no fit)",
        ]
        for h in doc.hosts
    ]
    head = ["host", "stage us", "serialized", "fresh runs", "USB", "provenance"]
    lines += ["", table(head, rows, right=[False, True, True, False, False, False])]
    lines.append("(`plan devices --json` gives every number with its full source; `plan schema device` what each is)")
    present = doc.edgetpus_present
    lines.append(
        f"\nEdge TPUs present: {len(present)}, listed by {doc.edgetpus_listed_by}"
        + "".join(f"\n  {d}" for d in present)
    )
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("devices")
    def devices_cmd(
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the devices JSON here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """List device presets and the Edge TPUs present on this machine."""
        from tpuplan.runtime.backends.catalog import devices_doc

        if output is not None:
            check_output(output, force=force)
        doc = devices_doc()
        emit(doc, output=output, force=force, as_json=as_json, table=devices_table(doc))
