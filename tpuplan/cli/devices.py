"""`plan devices`: the device presets and the Edge TPUs present on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

import typer
from pydantic import Field

from tpuplan.cli.common import FORCE_HELP, JSON_HELP, check_output, clip, emit, mib, table
from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.pricing.device import DeviceSpec, preset, preset_names
from tpuplan.profiles.pricing.host import HostSpec, host_preset, host_preset_names
from tpuplan.runtime.backends.edgetpu import list_edge_tpus

DEVICES_KIND: Final = "tpuplan.devices"


class DevicesDoc(StrictModel):
    """What `plan devices --json` prints: every device and host preset, and the Edge TPUs found here."""

    kind: Literal["tpuplan.devices"] = DEVICES_KIND
    schema_version: Literal[1] = 1
    presets: list[DeviceSpec]
    hosts: list[HostSpec]
    edgetpus_present: list[dict[str, str]] = Field(description="type and path of each Edge TPU found")


def devices_table(doc: DevicesDoc) -> str:
    rows = [
        [
            s.name,
            s.backend,
            mib(s.onchip_bytes) if s.backend == "edgetpu" else "- (host CPU)",
            f"{s.link.in_us_per_kib:g}/{s.link.out_us_per_kib:g}",
            "yes" if s.link.calibrated else "no",
            clip(s.calibration.source if s.calibration else "", 60),
        ]
        for s in doc.presets
    ]
    head = ["device", "backend", "on-chip MiB", "link us/KiB in/out", "calibrated", "source"]
    lines = [table(head, rows, right=[False, False, True, True, False, False])]
    rows = [
        [
            h.name,
            f"{h.stage_us:g}",
            f"{h.serialized:g}",
            "yes" if h.fresh_upload else "no",
            "shared" if h.bus_shared else "own",
            clip(h.description, 60),
        ]
        for h in doc.hosts
    ]
    head = ["host", "stage us", "serialized", "fresh runs", "USB", "runner"]
    lines += ["", table(head, rows, right=[False, True, True, False, False, False])]
    present = doc.edgetpus_present
    lines.append(f"\nEdge TPUs present: {len(present)}" + "".join(f"\n  {d}" for d in present))
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("devices")
    def devices_cmd(
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the devices JSON here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """List device presets and the Edge TPUs present on this machine."""
        if output is not None:
            check_output(output, force=force)
        doc = DevicesDoc(
            presets=[preset(n) for n in preset_names()],
            hosts=[host_preset(n) for n in host_preset_names()],
            edgetpus_present=list_edge_tpus(),
        )
        emit(doc, output=output, force=force, as_json=as_json, table=devices_table(doc))
