"""`plan solve` and `plan compare`: the optimal cut, and the cut next to what people do without us."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tpuplan.cli.common import (
    DEVICES_HELP,
    FORCE_HELP,
    JSON_HELP,
    SOURCE_HELP,
    bar,
    check_output,
    emit,
    mib,
    ms,
    parse_cuts,
    parse_devices,
    positive,
    read_source,
    table,
)
from tpuplan.planner.baselines import Comparison, compare
from tpuplan.planner.plan import Plan, check_profile_matches, evaluate
from tpuplan.planner.solve import DEFAULT_WORKERS, solve, solve_auto
from tpuplan.profiles.device import DeviceSpec
from tpuplan.profiles.docio import read_bytes
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile


def parse_tpus(text: str | None) -> int | None:
    """An int, or None for 'auto'."""
    if text is None or text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise TpuplanError(f"--tpus must be a number or 'auto' (got {text!r})") from None


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
            ms(s.predicted_us),
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
        f"bottleneck  {ms(worst)} ms (stage {slowest})   throughput {plan.predicted_throughput_per_s:,.1f}"
        f"/s   latency {ms(plan.predicted_latency_us)} ms   (predicted)",
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
                f"{r.tpus:>4}  {ms(r.predicted_bottleneck_us):>13}  {r.predicted_throughput_per_s:>12,.1f}"
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
            ms(e.predicted_bottleneck_us),
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


def _plan_for(profile: Profile, devices: list[DeviceSpec], tpus: str | None, cuts: str | None, max_tpus: int,
              allow_spill: bool, time_limit: float | None, workers: int, seed: int) -> Plan:
    """Price --cuts, or solve for --tpus K or auto."""
    k = parse_tpus(tpus)
    if tpus is None and cuts is None:
        raise TpuplanError("give --tpus K, --tpus auto or --cuts")
    if cuts is not None:
        if tpus is not None and k is None:
            raise TpuplanError("--cuts cannot be combined with --tpus auto")
        cut_list = parse_cuts(cuts)
        if k is not None and k != len(cut_list) + 1:
            raise TpuplanError(f"{len(cut_list)} cuts given for {k} TPUs (need {k - 1})")
        return evaluate(profile, devices or None, cut_list)
    if k is None:
        return solve_auto(profile, devices or None, max_tpus, allow_spill=allow_spill, time_limit_s=time_limit,
                          workers=workers, seed=seed)
    return solve(profile, k, devices or None, allow_spill=allow_spill, time_limit_s=time_limit, workers=workers,
                 seed=seed)


def register(app: typer.Typer) -> None:
    @app.command("solve")
    def solve_cmd(
        source: Annotated[Path, typer.Argument(help=SOURCE_HELP)],
        tpus: Annotated[str | None, typer.Option("--tpus", "-k", help="Number of Edge TPUs, or 'auto'.")] = None,
        max_tpus: Annotated[int, typer.Option("--max-tpus", min=1, help="Largest K tried by --tpus auto.")] = 8,
        device: Annotated[list[str] | None, typer.Option("--device", "-d", help=DEVICES_HELP)] = None,
        allow_spill: Annotated[
            bool, typer.Option("--allow-spill", help="Allow stages that stream parameters even when all could fit.")
        ] = False,
        time_limit: Annotated[
            float | None, typer.Option("--time-limit", help="Seconds for the whole solve (default 30).")
        ] = None,
        workers: Annotated[int, typer.Option("--workers", min=1, help="CP-SAT worker threads.")] = DEFAULT_WORKERS,
        seed: Annotated[int, typer.Option("--seed", help="CP-SAT random seed.")] = 0,
        cuts: Annotated[
            str | None, typer.Option("--cuts", help="Price these cuts (e.g. 12,40,77) instead of solving.")
        ] = None,
        model: Annotated[
            Path | None, typer.Option("--model", help="Check that the profile was made from this model.")
        ] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the plan JSON here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Find the segmentation with the least predicted bottleneck (highest pipeline throughput)."""
        if output is not None:
            check_output(output, force=force, inputs=[source] + ([model] if model else []))
        positive(time_limit, "--time-limit")
        devices = parse_devices(device)
        profile = read_source(source, devices[0] if devices else None).profile
        if model is not None:
            check_profile_matches(profile, read_bytes(model, what=".tflite model"), str(model))
        plan = _plan_for(profile, devices, tpus, cuts, max_tpus, allow_spill, time_limit, workers, seed)
        emit(plan, output=output, as_json=as_json, table=plan_table(plan))

    @app.command("compare")
    def compare_cmd(
        source: Annotated[Path, typer.Argument(help=SOURCE_HELP)],
        tpus: Annotated[int, typer.Option("--tpus", "-k", help="Number of Edge TPUs.")],
        device: Annotated[list[str] | None, typer.Option("--device", "-d", help=DEVICES_HELP)] = None,
        allow_spill: Annotated[bool, typer.Option("--allow-spill", help="As for `plan solve`.")] = False,
        time_limit: Annotated[float | None, typer.Option("--time-limit", help="Seconds for our solve.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    ) -> None:
        """Our plan next to the compiler's --num_segments split, equal ops and a single TPU."""
        positive(time_limit, "--time-limit")
        devices = parse_devices(device)
        profile = read_source(source, devices[0] if devices else None).profile
        cmp = compare(profile, tpus, devices or None, allow_spill=allow_spill, time_limit_s=time_limit)
        emit(cmp, output=None, as_json=as_json, table=comparison_table(cmp))
