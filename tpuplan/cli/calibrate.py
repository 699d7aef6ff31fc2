"""`plan calibrate`: fit the Edge TPU cost model and the pipeline runners to real measurements.

    plan calibrate SWEEP.csv... --pipeline FILE:RUNNER:BATCH[:fresh][:cuts=I,J]... -o DEVICE.json [--hosts-dir DIR]
    plan calibrate --verify PLAN.json:REPORT.json... --model MODEL.tflite -o DEVICE.json [--host-out HOST.json]

Positional CSVs are single-TPU sweeps (one `invoke()` per row). Each `--pipeline` names a pipeline CSV,
the runner that ran it (a host preset or HostSpec JSON: its structure and host_ops are kept, its per-stage
numbers fitted), the batch its times are amortised over, `fresh` when every run built new interpreters,
and the cuts when the file does not imply them. Writes the fitted device to -o and, with --hosts-dir,
each fitted runner as DIR/<runner name>.json. With --verify, the device and host of the plans are refitted
to the stage times `plan verify` measured with them on the user's own machine (`runtime.verify.refit`:
the calibration's own parameters, only those the times identify), and the stages are shown predicted
before and after the refit.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tpuplan.cli.common import (
    FORCE_HELP,
    JSON_HELP,
    check_outputs,
    document_text,
    is_stdout,
    name_option,
    print_json,
    require_planner,
    shown,
    spec_files,
    spec_option,
    table,
    write_output,
)
from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError, UsageError, quoted
from tpuplan.runtime.progress import QUIET_HELP, progress_bar

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tpuplan.profiles.calibration.fit import CalibrationResult
    from tpuplan.profiles.calibration.measurements import RunSpec
    from tpuplan.profiles.pricing.host import HostSpec
    from tpuplan.runtime.verify.refit import VerifyFit

PUBLISHED_HELP = (
    "A folder of published single-Edge-TPU times (a README.md table of model files and their USB 3.0 "
    "desktop and Dev Board times, e.g. shared/models/published): fitted with the rest."
)
PIPELINE_HELP = (
    "A 2-TPU (or K-TPU) pipeline CSV as FILE:RUNNER:BATCH[:fresh][:cuts=I,J]: RUNNER a host preset "
    "or HostSpec JSON, BATCH the inputs each time is amortised over, fresh if every run made new "
    "interpreters, cuts if the split is not to be inferred from the memory columns. Repeatable."
)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def calibration_table(result: CalibrationResult) -> str:
    """Per file: rows, median / p90 / worst time error, memory hits; then every fitted parameter."""
    rows = [
        [
            s.file,
            s.runner or "one invoke",
            s.batch,
            s.rows,
            _pct(s.median_rel_error),
            _pct(s.p90_rel_error),
            _pct(s.worst_rel_error),
            _pct(s.memory_within_0_1_mib),
        ]
        for s in result.files
    ]
    head = ["file", "runner", "batch", "rows", "median error", "p90", "worst", "MiB within 0.1"]
    d = result.device
    params = [
        [
            p.name,
            f"{p.value:.4g}" if p.used else "(no data)",
            f"{p.low:g}..{p.high:g}",
            f"at its {p.at_edge} edge" if p.at_edge else "",
        ]
        for p in result.params
    ]
    return "\n".join(
        [
            table(head, rows),
            "",
            "predicted times are the planner's own (stage tables + totals on the fitted specs)",
            f"fitted {shown(d.name)}: on-chip {d.onchip_bytes:,} B - {d.io_reserve_frac:g} x Edge TPU in+out bytes, "
            f"largest cached layer {d.max_cached_layer_bytes:,} B, pads {d.channel_pad}/{d.input_pad}, "
            f"{d.per_channel_bytes} B per channel, streamed layers fetched once per {d.stream_tile_pixels} "
            "output pixels",
            "",
            table(["parameter", "value", "plausible range", ""], params),
        ]
    )


def _files(
    sweeps: list[Path], pipelines: list[str], sweep_host: str | None
) -> tuple[list[tuple[Path, RunSpec]], dict[str, HostSpec]]:
    """The measurement files with how they were run, and the base spec of every host named."""
    from tpuplan.profiles.calibration.measurements import RunSpec, parse_pipeline_spec
    from tpuplan.profiles.pricing.host import resolve_host

    pipes = [parse_pipeline_spec(text) for text in pipelines]
    machine = sweep_host or next((run.runner for _, run in pipes if run.runner), None)
    runs = [(p, RunSpec(host=machine)) for p in sweeps] + pipes
    if not runs:
        raise UsageError("calibrate: give at least one sweep CSV, --pipeline or --published")
    names = [run.runner or run.host for _, run in runs]
    hosts = {name: resolve_host(name) for name in names if name is not None}
    return runs, hosts


def _host_outputs(hosts_dir: Path | None, hosts: dict[str, HostSpec]) -> dict[str, Path]:
    return _spec_outputs(hosts_dir, [spec.name for spec in hosts.values()], "--hosts-dir", keys=list(hosts))


def _spec_outputs(folder: Path | None, names: list[str], option: str, keys: list[str] | None = None) -> dict[str, Path]:
    """Where each fitted spec goes: FOLDER/<name>.json. The name comes from a document (someone else's
    file), so it must be a plain file name that stays in the folder, never a path."""
    if folder is None:
        return {}
    if not folder.is_dir():
        raise TpuplanError(f"{folder}: {option} must be an existing directory")
    for n in names:
        plain = n not in ("", ".", "..") and not n.startswith(".") and n.isprintable()
        if not plain or any(c in n for c in "/\\\0"):
            raise TpuplanError(
                f"{folder}: the spec name {shown(n)!r} cannot name a file in {option} (it is a path, hidden, "
                "or holds a control character); rename it in its JSON"
            )
    paths = {k: folder / f"{n}.json" for k, n in zip_strict(keys or names, names)}
    if len(set(paths.values())) < len(paths):
        raise TpuplanError(f"calibrate: two specs have the same name; they would write one file in {option}")
    return paths


def _write_all(docs: list[tuple[Path, BaseModel]], force: bool) -> None:
    """Check every document by its reader first, then write them: none is written if one is invalid."""
    texts = [(path, document_text(doc, path)) for path, doc in docs]
    for path, text in texts:
        write_output(path, text.encode(), force=force)


VERIFY_HELP = (
    "PLAN.json:REPORT.json, a plan and the `plan verify -o` report made with it on your machine: refit the "
    "plan's device and host (-o, --host-out) to the stage times the report measured, parameter by parameter "
    "(needs --model). Repeatable; not with sweep CSVs or --pipeline."
)
MODEL_HELP = "With --verify: the .tflite model (or its profile) the plans are of; repeat for plans of several models."


def verify_fit_table(fit: VerifyFit) -> str:
    """Per distinct stage: measured, predicted before and after the refit; then every parameter's fate."""

    def err(pred: float, real: float) -> str:
        return f"{100 * abs(pred - real) / max(real, 1.0):.1f}%"

    rows = [
        [
            shown(Path(p.model).name),
            f"{p.first_op}..{p.last_op}",
            shown(p.device),
            p.times,
            f"{p.measured_us:,.1f}",
            f"{p.before_us:,}",
            err(p.before_us, p.measured_us),
            f"{p.after_us:,}",
            err(p.after_us, p.measured_us),
        ]
        for p in fit.points
    ]
    kind = "SIMULATED" if fit.simulated else "measured"
    head = ["model", "ops", "device", "times", f"{kind} us", "before us", "error", "after us", "error"]
    params = [
        [
            p.name,
            f"{p.before:.4g}",
            f"{p.after:.4g}" if p.status == "fitted" else "-",
            f"{p.low:g}..{p.high:g}",
            p.status + (f" (at its {p.at_edge} edge)" if p.at_edge else ""),
        ]
        for p in fit.params
        if p.status != "no data"
    ]
    return "\n".join(
        [
            *(
                ["SIMULATED: these stage times come from a simulated Edge TPU, not from hardware", ""]
                if fit.simulated
                else []
            ),
            table(head, rows),
            "",
            f"median stage error {fit.median_error_before:.1%} before, {fit.median_error_after:.1%} after "
            f"({len(fit.points)} distinct stage time(s); a stage timed more than once counts once)",
            "",
            table(["parameter", "before", "after", "plausible range", ""], params),
            *(f"note: {shown(n)}" for n in fit.notes),
        ]
    )


def _from_verify(
    pairs: list[str], models: list[Path], output: Path, host_out: Path | None, force: bool, as_json: bool
) -> None:
    """`plan calibrate --verify`: read each plan and its report once, refit, write, show before and after."""
    from tpuplan.cli.common import read_source
    from tpuplan.planner.plan import load_plan
    from tpuplan.runtime.verify.refit import from_pairs, refit
    from tpuplan.runtime.verify.report import load_report

    paths = [_pair(text) for text in pairs]
    if not models:
        raise UsageError("--verify needs --model: the model (or profile) the plans are of, to price their stages")
    check_outputs([output, host_out], force=force, inputs=[*models, *(p for pair in paths for p in pair)])
    profiles = {}
    for m in models:
        prof = read_source(m, None, None).profile
        profiles[prof.model.sha256] = prof
    docs = [(load_plan(plan_path), load_report(report_path), str(report_path)) for plan_path, report_path in paths]
    devices, hosts, times, reported = from_pairs(docs, profiles)
    if len(devices) != 1 or (host_out is not None and len(hosts) != 1):
        raise TpuplanError(f"the plans use {len(devices)} device spec(s) and {len(hosts)} host(s): refit one at a time")
    fit = refit(times, devices, hosts, reported)
    host_doc = [(host_out, next(iter(fit.hosts.values())))] if host_out is not None else []
    _write_all([(output, next(iter(fit.devices.values()))), *host_doc], force)
    if any(is_stdout(p) for p in (output, host_out)):
        return
    if as_json:
        print_json(fit.model_dump(mode="json"))
        return
    typer.echo(verify_fit_table(fit))
    typer.echo("wrote " + ", ".join(shown(str(p)) for p in (output, host_out) if p is not None))


def _pair(text: str) -> tuple[Path, Path]:
    plan, sep, report = text.rpartition(":")
    if not sep or not plan or not report:
        raise UsageError(f"--verify takes PLAN.json:REPORT.json (got {quoted(text)})")
    return Path(plan), Path(report)


def _silent(label: str, done: int, total: int | None) -> None:
    """No progress drawn (not a terminal, or --quiet)."""


def register(app: typer.Typer) -> None:
    @app.command("calibrate")
    def calibrate_cmd(
        output: Annotated[Path, typer.Option("--output", "-o", help="Write the fitted DeviceSpec JSON here.")],
        sweeps: Annotated[
            list[Path] | None, typer.Argument(help="Single-TPU sweep CSVs (shared/edgetpu-measurements).")
        ] = None,
        pipeline: Annotated[list[str] | None, typer.Option("--pipeline", help=PIPELINE_HELP)] = None,
        published: Annotated[
            Path | None, typer.Option("--published", help=PUBLISHED_HELP, file_okay=False, dir_okay=True)
        ] = None,
        sweep_host: Annotated[
            str | None, typer.Option("--sweep-host", help="Host preset or JSON of the machine that timed the sweeps.")
        ] = None,
        devices_dir: Annotated[
            Path | None, typer.Option("--devices-dir", help="Write every fitted device here (with --published).")
        ] = None,
        hosts_dir: Annotated[Path | None, typer.Option("--hosts-dir", help="Write each fitted runner here.")] = None,
        base: Annotated[
            str | None,
            typer.Option(
                "--base", help="Device preset or JSON the fit starts from (its name and the op classes not measured)."
            ),
        ] = None,
        name: Annotated[str | None, typer.Option("--name", help="Name of the fitted device.")] = None,
        verify: Annotated[list[str] | None, typer.Option("--verify", help=VERIFY_HELP)] = None,
        host_out: Annotated[
            Path | None, typer.Option("--host-out", help="With --verify: write the fitted host here.")
        ] = None,
        models: Annotated[list[Path] | None, typer.Option("--model", "-m", help=MODEL_HELP)] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Fit the Edge TPU cost model (and the pipeline runners) to real measurements; print the errors."""
        require_planner("plan calibrate", solver=False)  # the fit is the planner's side (Python 3.10)
        from tpuplan.profiles.calibration.fit import calibrate
        from tpuplan.profiles.calibration.measurements import MeasuredFile, read_measurements
        from tpuplan.profiles.calibration.published import read_published
        from tpuplan.profiles.pricing.device import resolve_device
        from tpuplan.profiles.pricing.host import resolve_host

        if verify:
            if sweeps or pipeline or hosts_dir or base or name:
                raise UsageError(
                    "--verify fits from plan verify reports alone: give sweep CSVs, --pipeline, "
                    "--hosts-dir, --base and --name in a separate run"
                )
            _from_verify(list(verify), list(models or []), output, host_out, force, as_json)
            return
        if host_out is not None or models:
            raise UsageError("--host-out and --model go with --verify (use --hosts-dir for --pipeline runners)")
        name = name_option(name)
        runs, hosts = _files(list(sweeps or []), list(pipeline or []), spec_option(sweep_host, "--sweep-host"))
        extra = read_published(published) if published is not None else []
        for f in extra:
            machine = f.run.host or ""
            hosts.setdefault(machine, resolve_host(machine))
        inputs = (
            [p for p, _ in runs]
            + spec_files(*hosts, spec_option(base, "--base"))
            + ([published / "README.md"] if published else [])
        )
        outputs = {"": output, **_host_outputs(hosts_dir, hosts)}
        start = resolve_device(base)
        if name:
            start = start.model_copy(update={"name": name})
        devices = {start.name: start, **{d: resolve_device(d) for f in extra if (d := f.run.device or "") != ""}}
        device_paths = _spec_outputs(devices_dir, list(devices), "--devices-dir")
        check_outputs([*outputs.values(), *device_paths.values()], force=force, inputs=inputs)
        with progress_bar(quiet) as bar:
            progress = bar or _silent
            files = []
            for i, (p, run) in enumerate(runs):
                files.append(MeasuredFile(read_measurements(p), run))
                progress("reading measurements", i + 1, len(runs))
            progress("fitting", 0, 1)
            result = calibrate([*files, *extra], devices, hosts)
            progress("fitting", 1, 1)
        docs: list[tuple[Path, BaseModel]] = [(output, result.device)]
        docs += [(path, result.devices[dev_name]) for dev_name, path in device_paths.items()]
        docs += [(path, result.hosts[runner]) for runner, path in outputs.items() if runner]
        _write_all(docs, force)
        if is_stdout(output):
            return
        if as_json:
            print_json(result.model_dump(mode="json"))
            return
        typer.echo(calibration_table(result))
        typer.echo("wrote " + ", ".join(shown(str(p)) for p in [*outputs.values(), *device_paths.values()]))
