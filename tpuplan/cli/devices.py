"""`plan devices`: the device presets and the Edge TPUs present on this machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpuplan.cli.common import FORCE_HELP, JSON_HELP, check_output, mib, table, write_output

if TYPE_CHECKING:
    from tpuplan.profiles.pricing.device import DeviceSpec


def register(app: typer.Typer) -> None:
    @app.command("devices")
    def devices_cmd(
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the devices JSON here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """List device presets and the Edge TPUs present on this machine."""
        from tpuplan.profiles.pricing.device import preset, preset_names
        from tpuplan.profiles.pricing.host import host_preset, host_preset_names
        from tpuplan.runtime.backends.edgetpu import enumerate_edge_tpus

        if output is not None:
            check_output(output, force=force)
        specs: list[DeviceSpec] = [preset(n) for n in preset_names()]
        present, listed_by = enumerate_edge_tpus()
        hosts_json = [host_preset(n).model_dump(mode="json") for n in host_preset_names()]
        text = (
            json.dumps(
                {
                    "kind": "tpuplan.devices",
                    "schema_version": 1,
                    "presets": [s.model_dump(mode="json") for s in specs],
                    "hosts": hosts_json,
                    "edgetpus_present": present,
                    "edgetpus_listed_by": listed_by,
                },
                indent=2,
            )
            + "\n"
        )
        if output is not None:
            write_output(output, text.encode())
        if as_json:
            typer.echo(text, nl=False)
            return
        rows = [
            [
                s.name,
                s.backend,
                mib(s.onchip_bytes) if s.backend == "edgetpu" else "- (host CPU)",
                f"{s.link.in_us_per_kib:g}/{s.link.out_us_per_kib:g}",
                s.calibration.provenance() if s.calibration else "assumed (no fit)",
            ]
            for s in specs
        ]
        typer.echo(table(["device", "backend", "on-chip MiB", "link us/KiB in/out", "provenance"], rows))
        hosts = [host_preset(n) for n in host_preset_names()]
        rows = [
            [
                h.name,
                f"{h.stage_us:g}",
                f"{h.serialized:g}",
                "yes" if h.fresh_upload else "no",
                "shared" if h.bus_shared else "own",
                h.calibration.provenance() if h.calibration else "assumed (no fit)",
            ]
            for h in hosts
        ]
        typer.echo("\n" + table(["host", "stage us", "serialized", "fresh runs", "USB", "provenance"], rows))
        typer.echo("(`plan devices --json` gives every number with its full source; `plan schema device` what each is)")
        typer.echo(f"\nEdge TPUs present: {len(present)}, listed by {listed_by}" + "".join(f"\n  {d}" for d in present))
        if output is not None:
            typer.echo(f"wrote {output}")
