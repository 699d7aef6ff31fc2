"""`plan solve` and `plan compare`: the optimal cut, and the cut next to what people do without us."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from tpuplan.cli.common import (
    DEVICES_HELP,
    FORCE_HELP,
    HOST_HELP,
    JSON_HELP,
    NO_STATE_HELP,
    SOURCE_HELP,
    STATE_HELP,
    apply_state,
    check_output,
    device_names,
    emit,
    parse_cuts,
    parse_pool,
    read_source,
    require_planner,
    spec_files,
    spec_option,
    time_limit_option,
)
from tpuplan.cli.plantable import comparison_table, plan_table
from tpuplan.planner.defaults import DEFAULT_WORKERS
from tpuplan.profiles.errors import TpuplanError, UsageError, quoted

if TYPE_CHECKING:  # the planner (and OR-Tools) is imported by the commands that solve
    from tpuplan.planner.costs import Goal, Objective
    from tpuplan.planner.devices import DeviceSet
    from tpuplan.planner.plan import Plan
    from tpuplan.planner.solving import SearchSettings
    from tpuplan.profiles.model import Profile
    from tpuplan.profiles.pricing.device import DeviceSpec
    from tpuplan.profiles.pricing.host import HostSpec

OBJECTIVE_HELP = "throughput: least period (inputs per second); latency: least time for one input."
BATCH_HELP = "Spread one-off costs (start-up, first-inference upload) over a batch of N inputs."
TOLERANCE_HELP = "--tpus auto: the fewest TPUs within this fraction of the best (0.05 = 5%)."
REPLICATE_HELP = (
    "Let a stage run on several TPUs that take its inputs in turn (copies; one stage on every TPU is the "
    "whole model on each: data parallelism): cuts and copies chosen together for the least period, over "
    "1 to 64 TPUs (--tpus K, or auto up to --max-tpus). A stage of a state loop is never copied."
)
TIME_LIMIT_HELP = (
    "Seconds for the whole solve (default 30), pricing the stages included; when it passes, the best plan "
    "found so far is kept and marked not proven."
)
COPIES_HELP = (
    "TPUs per stage (e.g. 1,3,1; at most 64 TPUs in all) for --cuts; one number alone: the whole model on "
    "that many TPUs."
)
ROBUST_HELP = (
    "Take the plan whose longest period over the calibration's scenarios (the fit again without one source "
    "each) is least, proven; the table gives each scenario's own optimum and what this plan and the nominal "
    "one give up against it. With --tpus K; no copies."
)
IN_ORDER_HELP = "Take the --device list in stage order (one per TPU) instead of as a pool the planner assigns."
MEASURED_HELP = (
    "A `plan verify -o` report of this model on these devices and host: its stages keep their measured times, "
    "the rest are priced by the device and host refitted to every report given. Repeatable."
)
T = TypeVar("T")
Pool = list[tuple["DeviceSpec", int]]


def parse_objective(text: str) -> Objective:
    if text not in ("throughput", "latency"):
        raise UsageError(f"--objective must be throughput or latency (got {quoted(text)})")
    return "throughput" if text == "throughput" else "latency"


def parse_tpus(text: str | None) -> int | None:
    """An int, or None for 'auto'."""
    if text is None or text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--tpus must be a number or 'auto' (got {quoted(text)})") from None


@dataclass(frozen=True)
class SolveOptions:
    """What --tpus, --cuts and the solver options ask for."""

    tpus: str | None
    cuts: str | None
    max_tpus: int
    tolerance: float
    allow_spill: bool
    time_limit: float | None
    workers: int | None  # None: the solver's own default
    seed: int
    timings: bool
    replicate: bool = False
    copies: str | None = None
    in_order: bool = False
    robust: bool = False

    @property
    def prices_only(self) -> bool:
        """--cuts or --copies: a given plan is priced, no solver involved."""
        return self.cuts is not None or self.copies is not None


def _check_replicate(o: SolveOptions, goal: Goal) -> None:
    from tpuplan.planner.costs import Goal

    if o.copies is not None and o.cuts is None and "," in o.copies:
        raise UsageError("--copies of several stages prices given cuts: give --cuts too (or --replicate)")
    if o.robust and (o.replicate or o.prices_only or goal != Goal() or parse_tpus(o.tpus) is None):
        raise UsageError(
            "--robust takes --tpus K for the least period: drop --replicate, --cuts, --copies, "
            "--objective latency, --batch and --tpus auto"
        )
    if not o.replicate:
        return
    if o.cuts is not None or o.copies is not None:
        raise UsageError("--replicate chooses the cuts and the copies: drop --cuts and --copies")
    if goal != Goal():
        raise UsageError("--replicate plans for the least period: drop --objective latency and --batch")


def device_set(pool: Pool, counted: bool, in_order: bool, replicate: bool) -> DeviceSet | None:
    """The devices --device asks for: a pool the planner assigns (several kinds, or counts given), or
    (with --in-order, or one device for all) devices in stage order; None: the profile's device."""
    from tpuplan.planner.devices import DeviceSet

    expanded = [d for d, n in pool for _ in range(n)]
    if not pool:
        return None
    if in_order or (len(pool) == 1 and not counted):
        if replicate and len({d.model_dump_json() for d in expanded}) > 1:
            raise UsageError("--replicate with --in-order plans for TPUs of one kind: give one --device or a pool")
        return DeviceSet(tuple(expanded), copies=replicate)
    return DeviceSet.pool(pool, copies=replicate)


def _plan_for(
    source: Path, profile: Profile, pool: Pool, counted: bool, host: HostSpec, goal: Goal, o: SolveOptions
) -> Plan:
    """Price --cuts (and --copies), or solve for --tpus K or auto."""
    k = parse_tpus(o.tpus)
    if o.tpus is None and not o.prices_only:
        raise UsageError("give --tpus K, --tpus auto or --cuts")
    _check_replicate(o, goal)
    if o.prices_only:
        return _priced(profile, [d for d, n in pool for _ in range(n)], host, goal, o, k)
    return _solved(source, lambda: solve_for(profile, pool, counted, host, goal, o, k))


def _priced(
    profile: Profile, devices: list[DeviceSpec], host: HostSpec, goal: Goal, o: SolveOptions, k: int | None
) -> Plan:
    """--cuts and --copies: price a given plan (--copies N alone: the whole model on N TPUs)."""
    from tpuplan.planner.plan_build import evaluate

    if o.tpus is not None and k is None:
        raise UsageError("--cuts cannot be combined with --tpus auto")
    cut_list = parse_cuts(o.cuts) if o.cuts is not None else []
    copies = parse_cuts(o.copies, what="--copies") if o.copies is not None else None
    if k is not None and copies and k != sum(copies):
        raise UsageError(f"{len(cut_list)} cuts and copies {o.copies} use {sum(copies)} TPUs, not {k}")
    if k is not None and not copies and k != len(cut_list) + 1:
        raise UsageError(f"{len(cut_list)} cuts given for {k} TPUs (need {k - 1})")
    return evaluate(profile, devices or None, cut_list, host, goal, copies)


def solve_for(
    profile: Profile, pool: Pool, counted: bool, host: HostSpec, goal: Goal, o: SolveOptions, k: int | None
) -> Plan:
    """--tpus K or auto over the devices --device names (a pool, or in order; the profile's when none)."""
    from tpuplan.planner.devices import DeviceSet
    from tpuplan.planner.solve import solve_auto, solve_set  # OR-Tools

    dset = device_set(pool, counted, o.in_order, o.replicate) or DeviceSet((profile.device,), copies=o.replicate)
    settings: SearchSettings = {
        "host": host,
        "allow_spill": o.allow_spill,
        "time_limit_s": o.time_limit,
        "workers": DEFAULT_WORKERS if o.workers is None else o.workers,
        "seed": o.seed,
        "timings": o.timings,
    }
    if o.robust and k is not None:
        from tpuplan.planner.robust import solve_robust

        return solve_robust(profile, dset, k, **settings)
    if k is None:
        return solve_auto(profile, dset, o.max_tpus, goal=goal, tolerance=o.tolerance, **settings)
    return solve_set(profile, dset, k, goal=goal, **settings)


def _with_measured(
    profile: Profile, pool: Pool, host: HostSpec, reports: list[Path]
) -> tuple[Profile, Pool, HostSpec, list[str]]:
    """--measured: the profile keeping the reports' stage times, the devices and host refitted to them."""
    from tpuplan.runtime.verify.refit import Reported, with_measurements
    from tpuplan.runtime.verify.report import load_report

    devices = [d for d, _ in pool] or [profile.device]
    got = with_measurements(profile, devices, host, [Reported(load_report(p), str(p)) for p in reports])
    refitted = [(dev, n) for dev, (_, n) in zip(got.devices, pool)] if pool else [(got.devices[0], 1)]
    return got.profile, refitted, got.host, got.notes


def _solved(source: Path, work: Callable[[], T]) -> T:
    """Run a solve; "no plan exists" names the source (the solver module, OR-Tools, imported only now)."""
    from tpuplan.planner.solving import NoPlanError

    try:
        return work()
    except NoPlanError as exc:
        raise TpuplanError(f"{source}: {exc.reason}") from None


def _usage(tpus: str | None, cuts: str | None, copies: str | None, time_limit: float | None, host: str | None) -> None:
    """Flag values that are wrong whatever the files say: refused (exit 2) before any file is read."""
    time_limit_option(time_limit)
    parse_tpus(tpus)
    if cuts is not None:
        parse_cuts(cuts)
    if copies is not None:
        parse_cuts(copies, what="--copies")
    spec_option(host, "--host")


def register(app: typer.Typer) -> None:
    _register_solve(app)
    _register_compare(app)


def _register_solve(app: typer.Typer) -> None:
    @app.command("solve")
    def solve_cmd(
        source: Annotated[Path, typer.Argument(help=SOURCE_HELP)],
        tpus: Annotated[str | None, typer.Option("--tpus", "-k", help="Number of Edge TPUs, or 'auto'.")] = None,
        max_tpus: Annotated[
            int, typer.Option("--max-tpus", min=1, max=64, help="Largest K tried by --tpus auto (copies: up to 64).")
        ] = 8,
        tolerance: Annotated[float, typer.Option("--tolerance", min=0.0, max=10.0, help=TOLERANCE_HELP)] = 0.05,
        objective: Annotated[str, typer.Option("--objective", help=OBJECTIVE_HELP)] = "throughput",
        batch: Annotated[int | None, typer.Option("--batch", min=1, max=1_000_000, help=BATCH_HELP)] = None,
        device: Annotated[list[str] | None, typer.Option("--device", "-d", help=DEVICES_HELP)] = None,
        host: Annotated[str | None, typer.Option("--host", help=HOST_HELP)] = None,
        allow_spill: Annotated[
            bool, typer.Option("--allow-spill", help="Allow stages that stream parameters even when all could fit.")
        ] = False,
        time_limit: Annotated[float | None, typer.Option("--time-limit", help=TIME_LIMIT_HELP)] = None,
        workers: Annotated[
            int | None, typer.Option("--workers", min=1, max=64, help="CP-SAT worker threads (default 1).")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", min=0, max=2**31 - 1, help="CP-SAT random seed.")] = 0,
        cuts: Annotated[
            str | None,
            typer.Option("--cuts", help="Price these cuts (e.g. 12,40,77; 'none': one stage) instead of solving."),
        ] = None,
        model: Annotated[
            Path | None, typer.Option("--model", help="Check that the profile was made from this model.")
        ] = None,
        replicate: Annotated[bool, typer.Option("--replicate", help=REPLICATE_HELP)] = False,
        copies: Annotated[str | None, typer.Option("--copies", help=COPIES_HELP)] = None,
        in_order: Annotated[bool, typer.Option("--in-order", help=IN_ORDER_HELP)] = False,
        robust: Annotated[bool, typer.Option("--robust", help=ROBUST_HELP)] = False,
        timings: Annotated[bool, typer.Option("--timings", help="Record the solve's wall time in the plan.")] = False,
        state: Annotated[list[str] | None, typer.Option("--state", help=STATE_HELP)] = None,
        no_state: Annotated[bool, typer.Option("--no-state", help=NO_STATE_HELP)] = False,
        measured: Annotated[list[Path] | None, typer.Option("--measured", help=MEASURED_HELP)] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the plan JSON here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Find the segmentation with the least predicted period (or latency), proven optimal by CP-SAT."""
        from tpuplan.planner.costs import Goal
        from tpuplan.planner.plan_build import check_profile_matches
        from tpuplan.profiles.docio import read_bytes
        from tpuplan.profiles.pricing.host import resolve_host

        _usage(tpus, cuts, copies, time_limit, host)  # the flags first: a usage error whatever the files
        if output is not None:
            files = spec_files(*device_names(device), host)
            check_output(output, force=force, inputs=[source, *([model] if model else []), *files, *(measured or [])])
        options = SolveOptions(
            tpus,
            cuts,
            max_tpus,
            tolerance,
            allow_spill,
            time_limit,
            workers,
            seed,
            timings,
            replicate,
            copies,
            in_order,
            robust,
        )
        if not options.prices_only:  # pricing given cuts needs no solver
            require_planner("plan solve")
        goal = Goal(parse_objective(objective), batch)
        pool, counted = parse_pool(device)
        host_spec = resolve_host(host)
        profile = read_source(source, pool[0][0] if pool else None, host_spec).profile
        if model is not None:
            check_profile_matches(profile, read_bytes(model, what=".tflite model"), str(model))
        profile = apply_state(profile, state, no_state)
        notes: list[str] = []
        if measured:
            profile, pool, host_spec, notes = _with_measured(profile, pool, host_spec, measured)
        started = time.monotonic()
        plan = _plan_for(source, profile, pool, counted, host_spec, goal, options)
        if notes:
            plan = plan.model_copy(update={"notes": [*plan.notes, *notes]})
        if not as_json:
            typer.echo(f"solved in {time.monotonic() - started:.2f} s", err=True)
        emit(plan, output=output, force=force, as_json=as_json, table=plan_table(plan))


def _register_compare(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_cmd(
        source: Annotated[Path, typer.Argument(help=SOURCE_HELP)],
        tpus: Annotated[int, typer.Option("--tpus", "-k", min=1, max=64, help="Number of Edge TPUs.")],
        device: Annotated[list[str] | None, typer.Option("--device", "-d", help=DEVICES_HELP)] = None,
        host: Annotated[str | None, typer.Option("--host", help=HOST_HELP)] = None,
        objective: Annotated[str, typer.Option("--objective", help=OBJECTIVE_HELP)] = "throughput",
        batch: Annotated[int | None, typer.Option("--batch", min=1, max=1_000_000, help=BATCH_HELP)] = None,
        allow_spill: Annotated[bool, typer.Option("--allow-spill", help="As for `plan solve`.")] = False,
        time_limit: Annotated[float | None, typer.Option("--time-limit", help=TIME_LIMIT_HELP)] = None,
        state: Annotated[list[str] | None, typer.Option("--state", help=STATE_HELP)] = None,
        no_state: Annotated[bool, typer.Option("--no-state", help=NO_STATE_HELP)] = False,
        in_order: Annotated[bool, typer.Option("--in-order", help=IN_ORDER_HELP)] = False,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the comparison JSON here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Our plan next to the compiler's --num_segments split, equal ops and a single TPU."""
        from tpuplan.planner.baselines import compare
        from tpuplan.planner.costs import Goal
        from tpuplan.profiles.pricing.host import resolve_host

        _usage(None, None, None, time_limit, host)
        parse_objective(objective)
        if output is not None:
            check_output(output, force=force, inputs=[source, *spec_files(*device_names(device), host)])
        require_planner("plan compare")
        goal = Goal(parse_objective(objective), batch)
        pool, counted = parse_pool(device)
        host_spec = resolve_host(host)
        profile = apply_state(read_source(source, pool[0][0] if pool else None, host_spec).profile, state, no_state)
        dset = device_set(pool, counted, in_order, False)
        cmp = _solved(
            source,
            lambda: compare(
                profile,
                tpus,
                dset,
                host=host_spec,
                goal=goal,
                allow_spill=allow_spill,
                time_limit_s=time_limit,
            ),
        )
        emit(cmp, output=output, force=force, as_json=as_json, table=comparison_table(cmp))
