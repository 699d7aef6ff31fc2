"""`plan devices`: the device presets and the Edge TPUs present on this machine."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tpuplan.cli.common import JSON_HELP, mib, table
from tpuplan.profiles.device import DeviceSpec, preset, preset_names
from tpuplan.runtime.edgetpu import list_edge_tpus


def register(app: typer.Typer) -> None:
    @app.command("devices")
    def devices_cmd(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
        """List device presets and the Edge TPUs present on this machine."""
        specs: list[DeviceSpec] = [preset(n) for n in preset_names()]
        present = list_edge_tpus()
        if as_json:
            typer.echo(json.dumps(
                {"presets": [s.model_dump(mode="json") for s in specs], "edgetpus_present": present}, indent=2
            ))
            return
        rows = [
            [s.name, s.backend, mib(s.onchip_bytes) if s.backend == "edgetpu" else "-", f"{s.link_bytes_per_us:g}",
             (s.calibration.source if s.calibration else "")[:60]]
            for s in specs
        ]
        typer.echo(table(["preset", "backend", "on-chip MiB", "link B/us", "source"], rows))
        typer.echo(f"\nEdge TPUs present: {len(present)}" + "".join(f"\n  {d}" for d in present))
