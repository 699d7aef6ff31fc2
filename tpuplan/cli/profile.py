"""`plan profile` and `plan inspect`: a model's per-op table, predicted or measured."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpuplan.cli.common import (
    DEVICE_HELP,
    FORCE_HELP,
    HOST_HELP,
    JSON_HELP,
    NO_STATE_HELP,
    STATE_HELP,
    apply_state,
    check_output,
    emit,
    mib,
    read_model,
    read_source,
    shown,
    spec_files,
    spec_option,
    table,
)
from tpuplan.runtime.progress import QUIET_HELP, progress_bar

if TYPE_CHECKING:
    from tpuplan.profiles.model import Profile


def _cost(us: int, source: str) -> str:
    return f"{us:,}" + ("" if source == "calibrated" else "*" if source == "uncalibrated" else "m")


def profile_table(profile: Profile) -> str:
    rows = [
        [
            op.index,
            op.op_type[:28],
            op.op_class,
            "TPU" if op.edgetpu else "host",
            op.param_bytes,
            op.cached_bytes,
            op.macs,
            op.input_bytes,
            op.output_bytes,
            _cost(op.tpu_us, op.tpu_cost),
            _cost(op.host_us, op.host_cost),
            f"{op.measured_us:.1f}" if op.measured_us is not None else "-",
            profile.cuts[op.index].bytes if op.index < len(profile.cuts) else "-",
        ]
        for op in profile.ops
    ]
    head = [
        "#",
        "op",
        "class",
        "runs on",
        "param B",
        "cached B",
        "MACs",
        "in B",
        "out B",
        "device us",
        "host us",
        "meas us",
        "cut B",
    ]
    dev = profile.device
    capacity = f"on-chip {mib(dev.onchip_bytes)} MiB" if dev.backend == "edgetpu" else "host CPU"
    host_ops = [op for op in profile.ops if not op.edgetpu]
    uncal = sorted(
        {op.op_class for op in profile.ops if (op.tpu_cost if op.edgetpu else op.host_cost) == "uncalibrated"}
    )
    lines = [
        f"model   {shown(profile.model.path)}  sha256 {profile.model.sha256[:12]}  ({profile.source} profile)",
        f"device  {shown(dev.name)} ({dev.backend}), {capacity}; host {shown(profile.host)}",
        "",
        table(head, rows),
        "",
        f"{len(profile.ops)} ops, parameters {profile.param_bytes:,} B ({mib(profile.param_bytes)} MiB), "
        f"{sum(op.macs for op in profile.ops):,} MACs, {len(host_ops)} ops on the host CPU (when compiled whole)",
        "device/host us: predicted; * = an uncalibrated default (no real measurements of that op class here), "
        "m = measured on this machine's CPU. 'cut B': bytes live across the cut after that op.",
    ]
    if uncal:
        lines.append(f"uncalibrated op classes in use: {', '.join(uncal)}")
    from tpuplan.profiles.state import loops_of, summary

    stateful = summary(loops_of(profile))
    if stateful:
        lines.append(stateful)
    lines += [f"host  #{op.index} {shown(op.op_type)}: {shown(op.edgetpu_reason)}" for op in host_ops[:40]]
    if len(host_ops) > 40:
        lines.append(f"host  ... and {len(host_ops) - 40} more (see --json)")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile_cmd(
        model: Annotated[Path, typer.Argument(help="The .tflite model (CPU model, not *_edgetpu).")],
        device: Annotated[str | None, typer.Option("--device", "-d", help=DEVICE_HELP)] = None,
        host: Annotated[str | None, typer.Option("--host", help=HOST_HELP)] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the profile JSON here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        measure: Annotated[bool, typer.Option("--measure", help="Measure per-op times on --backend.")] = False,
        backend: Annotated[str, typer.Option("--backend", help="Backend for --measure: cpu.")] = "cpu",
        repeats: Annotated[
            int, typer.Option("--repeats", min=1, max=10_000, help="Timed runs per op (--measure).")
        ] = 30,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
    ) -> None:
        """Profile every operator: parameters, MACs, activations, Edge TPU support, predicted time."""
        from tpuplan.profiles.build import build_profile
        from tpuplan.profiles.pricing.device import resolve_device
        from tpuplan.profiles.pricing.host import resolve_host
        from tpuplan.runtime.measure import measure_profile

        spec_option(device, "--device")
        spec_option(host, "--host")
        if output is not None:
            check_output(output, force=force, inputs=[model, *spec_files(device, host)])
        loaded = read_model(model)
        if measure:
            with progress_bar(quiet) as progress:
                prof = measure_profile(loaded, backend=backend, repeats=repeats, progress=progress)
        else:
            prof = build_profile(loaded, resolve_device(device), resolve_host(host))
        emit(prof, output=output, force=force, as_json=as_json, table=profile_table(prof))

    @app.command("inspect")
    def inspect_cmd(
        source: Annotated[Path, typer.Argument(help="A .tflite model or a profile JSON.")],
        device: Annotated[str | None, typer.Option("--device", "-d", help=DEVICE_HELP)] = None,
        host: Annotated[str | None, typer.Option("--host", help=HOST_HELP)] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the profile JSON here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
        state: Annotated[list[str] | None, typer.Option("--state", help=STATE_HELP)] = None,
        no_state: Annotated[bool, typer.Option("--no-state", help=NO_STATE_HELP)] = False,
    ) -> None:
        """Print a readable per-op table and totals of a model (or of a saved profile)."""
        from tpuplan.profiles.pricing.device import resolve_device
        from tpuplan.profiles.pricing.host import resolve_host

        spec_option(device, "--device")
        spec_option(host, "--host")
        if output is not None:
            check_output(output, force=force, inputs=[source, *spec_files(device, host)])
        dev, host_spec = resolve_device(device) if device else None, resolve_host(host) if host else None
        prof = apply_state(read_source(source, dev, host_spec).profile, state, no_state)
        emit(prof, output=output, force=force, as_json=as_json, table=profile_table(prof))
