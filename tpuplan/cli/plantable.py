"""Plans and comparisons for people: `plan solve`, `plan show` and `plan compare` print these."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tpuplan.cli.common import bar, mib, ms, per_second, shown, table
from tpuplan.compat import zip_strict

if TYPE_CHECKING:
    from tpuplan.planner.comparison import Comparison
    from tpuplan.planner.plan import Plan


def _bound(name: str) -> str:
    """What a period bound of the cost formula is, in words."""
    from tpuplan.profiles.pricing.formula import PERIOD_BOUNDS

    return next((b.doc for b in PERIOD_BOUNDS if b.name == name), name)


def status_text(plan: Plan) -> str:
    s = plan.solver
    if s.status == "OPTIMAL":
        return "OPTIMAL (proven)"
    if s.status == "REFERENCE":
        return "OPTIMAL (proven by the exact reference; CP-SAT did not finish)"
    if s.status == "EVALUATED":
        return "EVALUATED (cuts given, not optimised)"
    return "FEASIBLE, not proven optimal"


def _stage_rows(plan: Plan) -> list[list[object]]:
    worst = max(s.predicted_us for s in plan.stages)
    rows: list[list[object]] = []
    for s, dev in zip_strict(plan.stages, plan.devices):
        tpu = dev.backend == "edgetpu"  # a CPU stage has no on-chip memory to show
        mark = " M" if s.measured_invoke_us is not None else ""  # its invoke measured by plan verify
        rows.append(
            [
                s.index,
                f"{s.first_op}..{s.last_op}",
                s.copies,
                f"{s.tpu_ops}/{s.n_ops}" if tpu else "-",
                mib(s.param_bytes),
                mib(s.predicted_onchip_bytes) if tpu else "-",
                mib(s.predicted_offchip_bytes) if tpu else "-",
                f"{s.bytes_in / 1024:.1f}",
                f"{s.bytes_out / 1024:.1f}",
                ms(s.part_us("device")) + mark,
                ms(s.part_us("host")) + mark,
                ms(s.part_us("runner")),
                ms(s.predicted_us) + mark,
                ms(s.predicted_interval_us),
                s.device,
                bar(s.predicted_us, worst, 20),
            ]
        )
    return rows


def _units(plan: Plan) -> str:
    cpus = sum(1 for d in plan.devices if d.backend == "cpu")
    if cpus == len(plan.devices):
        return f"{len(plan.stages)} stage(s) on the host CPU"
    return f"{plan.tpus - cpus} TPU(s)" + (f" and {cpus} CPU stage(s)" if cpus else "")


def plan_table(plan: Plan) -> str:
    """The plan for people: one row per stage with a bar of its predicted time, then the pipeline."""
    head = [
        "stage",
        "ops",
        "TPUs",
        "TPU ops",
        "param MiB",
        "on-chip MiB",
        "off-chip MiB",
        "in KiB",
        "out KiB",
        "device ms",
        "host ops ms",
        "runner ms",
        "stage ms",
        "every ms",
        "device",
        "time",
    ]
    align = [False, False, *([True] * 12), False, False]
    goal = plan.goal
    lines = [
        f"model   {shown(plan.model.path)}  sha256 {plan.model.sha256[:12]}  ({plan.profile_source} profile, "
        f"{plan.n_ops} ops)",
        f"plan    {_units(plan)}, {len(plan.stages)} stage(s), cuts after ops: "
        f"{','.join(map(str, plan.cuts)) or '-'}; host {shown(plan.host.name)}; "
        f"goal: {goal.objective}" + (f", batch {goal.batch}" if goal.batch else ""),
        "",
        table(head, _stage_rows(plan), right=align),
        "",
        f"period      {ms(plan.predicted_period_us)} ms, set by {_bound(plan.period_bound)}   throughput "
        f"{per_second(plan.predicted_throughput_per_s)}/s   latency {ms(plan.predicted_latency_us)} ms   (predicted"
        + ("; measured invokes where marked M)" if any(s.measured_invoke_us is not None for s in plan.stages) else ")"),
        *_range_lines(plan),
    ]
    if plan.predicted_per_input_us is not None:
        lines.append(
            f"batch       {ms(plan.predicted_per_input_us)} ms per input over {goal.batch} inputs, with "
            f"{ms(plan.predicted_oneoff_us)} ms of one-off costs (predicted)"
        )
    timing = f", {plan.solver.wall_time_s:.2f} s" if plan.solver.wall_time_s is not None else ""
    lines.append(f"status      {status_text(plan)}{timing}")
    if not plan.fits_on_chip:
        spill = [str(s.index) for s in plan.stages if not s.fits_on_chip]
        need = plan.tpus_needed_on_chip
        lines.append(
            f"memory      stage(s) {','.join(spill)} stream parameters from the host every inference; "
            + (f"{need} TPUs would keep everything on chip" if need else "no TPU count keeps it all on chip")
        )
    if any(s.measured_invoke_us is not None for s in plan.stages):
        lines.append(
            "measured    'M': the stage's invoke as plan verify measured it (shared between device and host as "
            "predicted); every other number predicted"
        )
    if any(s.copies > 1 for s in plan.stages):
        lines.append(
            "copies      'TPUs' > 1: the stage runs on that many TPUs taking inputs in turn; 'every ms' is "
            "the time between its results, 'stage ms' one input's time through it"
        )
    from tpuplan.profiles.state import summary

    stateful = summary(plan.state)
    if stateful:
        lines.append(f"state       {stateful}")
    lines += _curve_lines(plan)
    lines += _robust_lines(plan)
    lines += [f"note        {shown(n)}" for n in [plan.solver.note, *plan.notes] if n]
    return "\n".join(lines)


def _range_lines(plan: Plan) -> list[str]:
    """The period and latency as ranges over the calibration's scenarios (when it keeps some)."""
    r = plan.predicted_range
    if r is None or len(r.scenarios) < 2:
        return ["range       no calibration scenarios: the spread of these numbers is not known"]
    worst = f"; longest {r.widest}" if r.widest else ""
    return [
        f"range       period {ms(r.period_us.low)}..{ms(r.period_us.high)} ms, latency {ms(r.latency_us.low)}.."
        f"{ms(r.latency_us.high)} ms over {len(r.scenarios)} calibration scenarios "
        f"(the fit again without one source each{worst})"
    ]


def _curve_lines(plan: Plan) -> list[str]:
    """The --tpus auto curve: row K is the best plan over at most K TPUs (never worse than row K-1);
    a row the time limit cut short says 'no' under proven."""
    if not plan.curve:
        return []
    chosen = next(
        (r.tpus for r in plan.curve if r.objective == plan.solver.objective and r.tpus_used in (None, plan.tpus)),
        plan.tpus,
    )
    rows = [
        [
            r.tpus,
            r.tpus_used if r.tpus_used is not None else "-",
            r.shape or "-",
            ms(r.predicted_period_us),
            ms(r.predicted_latency_us),
            per_second(r.predicted_throughput_per_s),
            f"x{r.gain_vs_previous:.2f}" if r.gain_vs_previous is not None else "-",
            "yes" if r.fits_on_chip else "no",
            "yes" if r.proven_optimal else "NO",
            "<- chosen" if r.tpus == chosen else "",
        ]
        for r in plan.curve
    ]
    head = ["K", "uses", "plan", "period ms", "latency ms", "throughput/s", "gain vs K-1", "on chip", "proven", ""]
    return ["", table(head, rows, right=[True, True, False, True, True, True, True, False, False, False])]


def _robust_lines(plan: Plan) -> list[str]:
    """--robust: each scenario's period of this plan and of the nominal plan against its own optimum."""
    r = plan.robust
    if r is None:
        return []

    def regret(us: int, best: int) -> str:
        return f"+{100 * (us / max(best, 1) - 1):.1f}%"

    rows = [
        [
            shown(s.scenario),
            ms(s.best_period_us) + ("" if s.best_proven else " (not proven)"),
            ms(s.period_us),
            regret(s.period_us, s.best_period_us),
            ms(s.nominal_plan_period_us),
            regret(s.nominal_plan_period_us, s.best_period_us),
        ]
        for s in r.scenarios
    ]
    head = ["scenario", "own best ms", "this plan ms", "regret", "nominal plan ms", "regret"]
    return [
        "",
        f"robust: longest period {ms(r.worst_period_us)} ms over {len(r.scenarios)} scenarios "
        f"(the nominal plan's: {ms(r.nominal_worst_period_us)} ms)",
        table(head, rows, right=[False, True, True, True, True, True]),
    ]


def comparison_table(cmp: Comparison) -> str:
    rows = [
        [
            e.name,
            e.tpus,
            ",".join(map(str, e.cuts)) or "-",
            ",".join(map(str, e.copies)),
            ms(e.predicted_period_us),
            f"{ms(e.period_range.low)}..{ms(e.period_range.high)}" + (" ~" if e.within_ours else "")
            if e.period_range is not None
            else "-",
            ms(e.predicted_latency_us),
            per_second(e.predicted_throughput_per_s),
            mib(e.predicted_offchip_bytes),
            "yes" if e.fits_on_chip else "no",
            e.host_only_stages,
            f"x{e.speedup_of_ours:.2f}",
        ]
        for e in cmp.entries
    ]
    head = [
        "plan",
        "TPUs",
        "cuts",
        "copies",
        "period ms",
        "range ms",
        "latency ms",
        "throughput/s",
        "off-chip MiB",
        "on chip",
        "host-only stages",
        "ours is",
    ]
    return "\n".join(
        [
            f"model {shown(cmp.model.path)}, {cmp.tpus} TPU(s), host {shown(cmp.host)}, "
            f"goal {cmp.goal.objective}; ours: "
            f"{cmp.ours_status}" + (" (proven)" if cmp.ours_proven_optimal else ", not proven optimal"),
            "",
            table(head, rows),
            "",
            "'ours is' = that plan's objective / ours (x2.00: ours is twice as good). All numbers predicted; "
            "'range' is the period over the calibration's scenarios, '~' where it meets ours.",
            *map(shown, cmp.notes),
        ]
    )
