"""`plan solve`, `plan compare`, `plan show`: the planner's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from planner.baselines import Comparison, compare
from planner.plan import Plan, check_profile_matches, evaluate, load_plan
from planner.solve import DEFAULT_WORKERS, solve, solve_auto
from profiles.build import build_profile
from profiles.device import DeviceSpec, resolve_device
from profiles.errors import TpuplanError
from profiles.model import Profile, load_profile
from runtime.cli_common import DEVICE_HELP, bar, emit, mib, table

SOURCE_HELP = "A profile JSON (from `plan profile`) or a .tflite CPU model (profiled on the first --device)."
DEVICES_HELP = DEVICE_HELP + " Repeat or comma-separate: one for every TPU, or one per TPU in stage order."


def parse_devices(specs: list[str] | None) -> list[DeviceSpec]:
    names = [s.strip() for spec in specs or [] for s in spec.split(",") if s.strip()]
    return [resolve_device(name) for name in names]


def parse_cuts(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise TpuplanError(f"--cuts must be comma-separated op indices (got {text!r})") from None


def parse_tpus(text: str | None) -> int | None:
    """An int, or None for 'auto'."""
    if text is None or text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise TpuplanError(f"--tpus must be a number or 'auto' (got {text!r})") from None


def load_source(source: Path, devices: list[DeviceSpec], model: Path | None) -> Profile:
    """A profile from a profile JSON, or by profiling a model on the first device."""
    if source.suffix == ".json":
        profile = load_profile(source)
    elif source.suffix == ".tflite":
        profile = build_profile(source, devices[0] if devices else resolve_device(None))
    else:
        raise TpuplanError(f"{source}: expected a profile .json or a .tflite model")
    if model is not None:
        check_profile_matches(profile, model)
    return profile


def _ms(us: int | float) -> str:
    return f"{us / 1000:,.3f}"


def status_text(plan: Plan) -> str:
    s = plan.solver
    if s.status == "OPTIMAL":
        return "OPTIMAL (proven)"
    if s.status == "REFERENCE":
        return "OPTIMAL (proven by the exact reference; CP-SAT did not finish)"
    if s.status == "EVALUATED":
        return "EVALUATED (cuts given, not optimised)"
    return "FEASIBLE, not proven optimal"


def plan_table(plan: Plan) -> str:
    """The plan for people: one row per stage with a bar of its predicted time."""
    worst = plan.predicted_bottleneck_us
    rows = [
        [
            s.index,
            f"{s.first_op}..{s.last_op}",
            s.n_ops,
            mib(s.param_bytes),
            mib(s.predicted_onchip_bytes),
            mib(s.predicted_offchip_bytes),
            f"{s.bytes_in / 1024:.1f}",
            f"{s.bytes_out / 1024:.1f}",
            _ms(s.predicted_us),
            s.device,
            bar(s.predicted_us, worst, 24),
        ]
        for s in plan.stages
    ]
    head = ["stage", "ops", "#ops", "param MiB", "on-chip MiB", "off-chip MiB", "in KiB", "out KiB",
            "pred ms", "device", "time"]
    align = [False, False, *([True] * 7), False, False]
    slowest = max(plan.stages, key=lambda s: s.predicted_us).index
    lines = [
        f"model   {plan.model.path}  sha256 {plan.model.sha256[:12]}  ({plan.profile_source} profile, "
        f"{plan.n_ops} ops)",
        f"plan    {plan.tpus} TPU(s), cuts after ops: {','.join(map(str, plan.cuts)) or '-'}",
        "",
        table(head, rows, right=align),
        "",
        f"bottleneck  {_ms(worst)} ms (stage {slowest})   throughput {plan.predicted_throughput_per_s:,.1f}"
        f"/s   latency {_ms(plan.predicted_latency_us)} ms   (predicted)",
        f"status      {status_text(plan)}, {plan.solver.wall_time_s:.2f} s",
    ]
    if not plan.fits_on_chip:
        spill = [str(s.index) for s in plan.stages if not s.fits_on_chip]
        need = plan.tpus_needed_on_chip
        lines.append(
            f"memory      stage(s) {','.join(spill)} stream parameters from the host every inference; "
            + (f"{need} TPUs would keep everything on chip" if need else "no TPU count keeps it all on chip")
        )
    if plan.auto:
        lines += ["", "TPUs  bottleneck ms  throughput/s  gain vs K-1  on chip"]
        for r in plan.auto:
            gain = f"x{r.gain_vs_previous:.2f}" if r.gain_vs_previous is not None else "-"
            lines.append(
                f"{r.tpus:>4}  {_ms(r.predicted_bottleneck_us):>13}  {r.predicted_throughput_per_s:>12,.1f}"
                f"  {gain:>11}  {'yes' if r.fits_on_chip else 'no'}"
            )
    if plan.solver.note:
        lines.append(f"note        {plan.solver.note}")
    return "\n".join(lines)


def comparison_table(cmp: Comparison) -> str:
    rows = [
        [
            e.name,
            e.tpus,
            ",".join(map(str, e.cuts)) or "-",
            _ms(e.predicted_bottleneck_us),
            f"{e.predicted_throughput_per_s:,.1f}",
            mib(e.predicted_offchip_bytes),
            "yes" if e.fits_on_chip else "no",
            f"x{e.speedup_of_ours:.2f}",
        ]
        for e in cmp.entries
    ]
    head = ["plan", "TPUs", "cuts", "bottleneck ms", "throughput/s", "off-chip MiB", "on chip", "ours is"]
    return "\n".join(
        [
            f"model {cmp.model.path}, {cmp.tpus} TPU(s); ours: {cmp.ours_status}"
            + (" (proven)" if cmp.ours_proven_optimal else ", not proven optimal"),
            "",
            table(head, rows),
            "",
            "'ours is' = that plan's predicted bottleneck / ours (x2.00: ours has twice the throughput).",
        ]
    )


def register(app: typer.Typer) -> None:
    @app.command("solve")
    def solve_cmd(
        source: Annotated[Path, typer.Argument(help=SOURCE_HELP)],
        tpus: Annotated[
            str | None, typer.Option("--tpus", "-k", help="Number of Edge TPUs, or 'auto'.")
        ] = None,
        max_tpus: Annotated[int, typer.Option("--max-tpus", help="Largest K tried by --tpus auto.")] = 8,
        device: Annotated[list[str] | None, typer.Option("--device", "-d", help=DEVICES_HELP)] = None,
        allow_spill: Annotated[
            bool,
            typer.Option("--allow-spill", help="Allow stages that stream parameters even when all could fit."),
        ] = False,
        time_limit: Annotated[
            float | None, typer.Option("--time-limit", help="Seconds for the whole solve (default 30).")
        ] = None,
        workers: Annotated[int, typer.Option("--workers", help="CP-SAT worker threads.")] = DEFAULT_WORKERS,
        seed: Annotated[int, typer.Option("--seed", help="CP-SAT random seed.")] = 0,
        cuts: Annotated[
            str | None, typer.Option("--cuts", help="Price these cuts (e.g. 12,40,77) instead of solving.")
        ] = None,
        model: Annotated[
            Path | None, typer.Option("--model", help="Check that the profile was made from this model.")
        ] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the plan JSON here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the plan JSON instead of a table.")] = False,
        force: Annotated[bool, typer.Option("--force", help="Overwrite --output if it exists.")] = False,
    ) -> None:
        """Find the segmentation with the least predicted bottleneck (highest pipeline throughput)."""
        if output is not None and output.exists() and not force:
            raise TpuplanError(f"{output}: already exists (use --force to overwrite)")
        devices = parse_devices(device)
        k = parse_tpus(tpus)
        if tpus is None and cuts is None:
            raise TpuplanError("give --tpus K, --tpus auto or --cuts")
        profile = load_source(source, devices, model)
        if cuts is not None:
            if tpus is not None and k is None:
                raise TpuplanError("--cuts cannot be combined with --tpus auto")
            cut_list = parse_cuts(cuts)
            if k is not None and k != len(cut_list) + 1:
                raise TpuplanError(f"{len(cut_list)} cuts given for {k} TPUs (need {k - 1})")
            plan = evaluate(profile, devices or None, cut_list)
        elif k is None:
            plan = solve_auto(
                profile, devices or None, max_tpus,
                allow_spill=allow_spill, time_limit_s=time_limit, workers=workers, seed=seed,
            )
        else:
            plan = solve(
                profile, k, devices or None,
                allow_spill=allow_spill, time_limit_s=time_limit, workers=workers, seed=seed,
            )
        emit(plan, output=output, as_json=as_json, table=plan_table(plan), force=force)

    @app.command("compare")
    def compare_cmd(
        source: Annotated[Path, typer.Argument(help=SOURCE_HELP)],
        tpus: Annotated[int, typer.Option("--tpus", "-k", help="Number of Edge TPUs.")],
        device: Annotated[list[str] | None, typer.Option("--device", "-d", help=DEVICES_HELP)] = None,
        allow_spill: Annotated[bool, typer.Option("--allow-spill", help="As for `plan solve`.")] = False,
        time_limit: Annotated[float | None, typer.Option("--time-limit", help="Seconds for our solve.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    ) -> None:
        """Our plan next to the compiler's --num_segments split, equal ops and a single TPU."""
        devices = parse_devices(device)
        profile = load_source(source, devices, None)
        cmp = compare(profile, tpus, devices or None, allow_spill=allow_spill, time_limit_s=time_limit)
        emit(cmp, output=None, as_json=as_json, table=comparison_table(cmp))

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
    ) -> None:
        """Print a saved plan: per-stage ops, memory, link bytes and predicted time."""
        plan = load_plan(plan_path)
        if png is not None:
            from runtime.plots import write_plan_png

            measured = None
            if report is not None:
                from runtime.verify import load_report

                rep = load_report(report)
                if rep.model_sha256 != plan.model.sha256 or len(rep.stages) != len(plan.stages):
                    raise TpuplanError(f"{report}: this verify report is for another plan")
                measured = [c.measured_us for c in rep.stages]
            write_plan_png(png, plan, measured)
        emit(plan, output=None, as_json=as_json, table=plan_table(plan))
        if png is not None and not as_json:
            typer.echo(f"wrote {png}")
