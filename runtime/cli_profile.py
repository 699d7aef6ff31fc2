"""`plan profile`, `plan inspect`, `plan schema`, `plan devices`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from profiles.build import build_profile
from profiles.device import DeviceSpec, preset_names
from profiles.errors import TpuplanError
from profiles.model import Profile, load_profile
from runtime.cli_common import DEVICE_HELP, device_option, emit, mib, table

SCHEMAS: dict[str, str] = {
    "profile": "profiles.model:Profile",
    "device": "profiles.device:DeviceSpec",
    "plan": "planner.plan:Plan",
    "manifest": "runtime.manifest:SegmentManifest",
    "report": "runtime.verify:VerifyReport",
}


def profile_table(profile: Profile) -> str:
    rows = []
    for op in profile.ops:
        rows.append(
            [
                op.index,
                op.op_type,
                op.op_class,
                op.param_bytes,
                op.cached_bytes,
                op.macs,
                op.input_bytes,
                op.output_bytes,
                "yes" if op.edgetpu else "no",
                op.predicted_us,
                f"{op.measured_us:.1f}" if op.measured_us is not None else "-",
                profile.cuts[op.index].bytes if op.index < len(profile.cuts) else "-",
            ]
        )
    head = [
        "#",
        "op",
        "class",
        "param B",
        "cached B",
        "MACs",
        "in B",
        "out B",
        "TPU",
        "pred us",
        "meas us",
        "cut B",
    ]
    total_pred = sum(op.predicted_us for op in profile.ops)
    lines = [
        f"model   {profile.model.path}  sha256 {profile.model.sha256[:12]}  ({profile.source} profile)",
        f"device  {profile.device.name} ({profile.device.backend}), "
        f"on-chip {mib(profile.device.onchip_bytes)} MiB",
        "",
        table(head, rows),
        "",
        f"{len(profile.ops)} ops, parameters {profile.param_bytes:,} B ({mib(profile.param_bytes)} MiB), "
        f"{sum(op.macs for op in profile.ops):,} MACs, "
        f"{sum(1 for op in profile.ops if not op.edgetpu)} ops on the host CPU, "
        f"predicted {total_pred:,} us of op time (predicted, not measured)",
        "'cut B' is the bytes of every tensor live across the cut after that op.",
    ]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile_cmd(
        model: Annotated[Path, typer.Argument(help="The .tflite model (CPU model, not *_edgetpu).")],
        device: Annotated[str | None, typer.Option("--device", "-d", help=DEVICE_HELP)] = None,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write the profile JSON here.")
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the profile JSON instead of a table.")
        ] = False,
        measure: Annotated[
            bool, typer.Option("--measure", help="Measure per-op times on --backend.")
        ] = False,
        backend: Annotated[str, typer.Option("--backend", help="Backend for --measure: cpu.")] = "cpu",
        repeats: Annotated[
            int, typer.Option("--repeats", min=1, help="Timed runs per op (--measure).")
        ] = 30,
        force: Annotated[bool, typer.Option("--force", help="Overwrite --output if it exists.")] = False,
    ) -> None:
        """Profile every operator: parameters, MACs, activations, Edge TPU support, predicted time."""
        if output is not None and output.exists() and not force:
            raise TpuplanError(f"{output}: already exists (use --force to overwrite)")
        if measure:
            from runtime.measure import measure_profile

            prof = measure_profile(model, backend=backend, repeats=repeats)
        else:
            prof = build_profile(model, device_option(device))
        emit(prof, output=output, as_json=as_json, table=profile_table(prof), force=force)

    @app.command("inspect")
    def inspect_cmd(
        model: Annotated[Path, typer.Argument(help="A .tflite model or a profile JSON.")],
        device: Annotated[str | None, typer.Option("--device", "-d", help=DEVICE_HELP)] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    ) -> None:
        """Print a readable per-op table and totals of a model (or of a saved profile)."""
        prof = load_profile(model) if model.suffix == ".json" else build_profile(model, device_option(device))
        emit(prof, output=None, as_json=as_json, table=profile_table(prof))

    @app.command("schema")
    def schema_cmd(
        document: Annotated[str, typer.Argument(help=f"One of: {', '.join(SCHEMAS)}.")],
    ) -> None:
        """Print the JSON Schema of a tpuplan document, for build systems that read our output."""
        import importlib

        if document not in SCHEMAS:
            raise TpuplanError(f"unknown document {document!r} (known: {', '.join(SCHEMAS)})")
        module_name, cls_name = SCHEMAS[document].split(":")
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ModuleNotFoundError, AttributeError):
            raise TpuplanError(f"the {document} document is not available in this build") from None
        typer.echo(json.dumps(cls.model_json_schema(), indent=2))

    @app.command("devices")
    def devices_cmd(
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """List device presets and the Edge TPUs present on this machine."""
        from profiles.device import preset

        specs: list[DeviceSpec] = [preset(n) for n in preset_names()]
        try:
            from runtime.edgetpu import list_edge_tpus

            present = list_edge_tpus()
        except ImportError:
            present = []
        if as_json:
            typer.echo(
                json.dumps(
                    {"presets": [s.model_dump(mode="json") for s in specs], "edgetpus_present": present},
                    indent=2,
                )
            )
            return
        rows = [
            [
                s.name,
                s.backend,
                mib(s.onchip_bytes) if s.backend == "edgetpu" else "-",
                f"{s.link_bytes_per_us:g}",
                (s.calibration.source if s.calibration else "")[:60],
            ]
            for s in specs
        ]
        typer.echo(table(["preset", "backend", "on-chip MiB", "link B/us", "source"], rows))
        typer.echo(f"\nEdge TPUs present: {len(present)}" + "".join(f"\n  {d}" for d in present))
