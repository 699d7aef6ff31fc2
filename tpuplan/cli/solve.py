"""`plan solve` and `plan compare`: the optimal cut, and the cut next to what people do without us."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

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
    spec_files,
    time_limit_option,
)
from tpuplan.cli.plantable import comparison_table, plan_table
from tpuplan.planner.baselines import compare
from tpuplan.planner.costs import Goal, Objective
from tpuplan.planner.plan import Plan
from tpuplan.planner.plan_build import check_profile_matches, evaluate
from tpuplan.planner.solve import DEFAULT_WORKERS, DeviceSet, NoPlanError, solve_auto, solve_set
from tpuplan.profiles.docio import read_bytes
from tpuplan.profiles.errors import TpuplanError, quoted
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host

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
COPIES_HELP = "TPUs per stage (e.g. 1,3,1) for --cuts; one number alone: the whole model on that many TPUs."
IN_ORDER_HELP = "Take the --device list in stage order (one per TPU) instead of as a pool the planner assigns."


def parse_objective(text: str) -> Objective:
    if text not in ("throughput", "latency"):
        raise TpuplanError(f"--objective must be throughput or latency (got {text!r})")
    return "throughput" if text == "throughput" else "latency"


def parse_tpus(text: str | None) -> int | None:
    """An int, or None for 'auto'."""
    if text is None or text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise TpuplanError(f"--tpus must be a number or 'auto' (got {quoted(text)})") from None


@dataclass(frozen=True)
class SolveOptions:
    """What --tpus, --cuts and the solver options ask for."""

    tpus: str | None
    cuts: str | None
    max_tpus: int
    tolerance: float
    allow_spill: bool
    time_limit: float | None
    workers: int
    seed: int
    timings: bool
    replicate: bool = False
    copies: str | None = None
    in_order: bool = False


def _check_replicate(o: SolveOptions, k: int | None, goal: Goal) -> None:
    if o.copies is not None and o.cuts is None and "," in o.copies:
        raise TpuplanError("--copies of several stages prices given cuts: give --cuts too (or --replicate)")
    if not o.replicate:
        return
    if o.cuts is not None or o.copies is not None:
        raise TpuplanError("--replicate chooses the cuts and the copies: drop --cuts and --copies")
    if goal != Goal():
        raise TpuplanError("--replicate plans for the least period: drop --objective latency and --batch")


def device_set(pool: list[tuple[DeviceSpec, int]], counted: bool, in_order: bool, replicate: bool) -> DeviceSet | None:
    """The devices --device asks for: a pool the planner assigns (several kinds, or counts given), or
    (with --in-order, or one device for all) devices in stage order; None: the profile's device."""
    expanded = [d for d, n in pool for _ in range(n)]
    if not pool:
        return None
    if in_order or (len(pool) == 1 and not counted):
        if replicate and len({d.model_dump_json() for d in expanded}) > 1:
            raise TpuplanError("--replicate with --in-order plans for TPUs of one kind: give one --device or a pool")
        return DeviceSet(tuple(expanded), copies=replicate)
    return DeviceSet.pool(pool, copies=replicate)


def _plan_for(
    profile: Profile, pool: list[tuple[DeviceSpec, int]], counted: bool, host: HostSpec, goal: Goal, o: SolveOptions
) -> Plan:
    """Price --cuts (and --copies), or solve for --tpus K or auto."""
    k = parse_tpus(o.tpus)
    if o.tpus is None and o.cuts is None and o.copies is None:
        raise TpuplanError("give --tpus K, --tpus auto or --cuts")
    _check_replicate(o, k, goal)
    expanded = [d for d, n in pool for _ in range(n)]
    if o.cuts is not None or o.copies is not None:
        if o.tpus is not None and k is None:
            raise TpuplanError("--cuts cannot be combined with --tpus auto")
        cut_list = parse_cuts(o.cuts) if o.cuts is not None else []  # --copies N alone: the whole model on N
        copies = parse_cuts(o.copies, what="--copies") if o.copies is not None else None
        if k is not None and copies and k != sum(copies):
            raise TpuplanError(f"{len(cut_list)} cuts and copies {o.copies} use {sum(copies)} TPUs, not {k}")
        if k is not None and not copies and k != len(cut_list) + 1:
            raise TpuplanError(f"{len(cut_list)} cuts given for {k} TPUs (need {k - 1})")
        return evaluate(profile, expanded or None, cut_list, host, goal, copies)
    dset = device_set(pool, counted, o.in_order, o.replicate) or DeviceSet((profile.device,), copies=o.replicate)
    if k is None:
        return solve_auto(
            profile,
            dset,
            o.max_tpus,
            host=host,
            goal=goal,
            tolerance=o.tolerance,
            allow_spill=o.allow_spill,
            time_limit_s=o.time_limit,
            workers=o.workers,
            seed=o.seed,
            timings=o.timings,
        )
    return solve_set(
        profile,
        dset,
        k,
        host=host,
        goal=goal,
        allow_spill=o.allow_spill,
        time_limit_s=o.time_limit,
        workers=o.workers,
        seed=o.seed,
        timings=o.timings,
    )


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
            int, typer.Option("--workers", min=1, max=64, help="CP-SAT worker threads.")
        ] = DEFAULT_WORKERS,
        seed: Annotated[int, typer.Option("--seed", min=0, max=2**31 - 1, help="CP-SAT random seed.")] = 0,
        cuts: Annotated[
            str | None, typer.Option("--cuts", help="Price these cuts (e.g. 12,40,77) instead of solving.")
        ] = None,
        model: Annotated[
            Path | None, typer.Option("--model", help="Check that the profile was made from this model.")
        ] = None,
        replicate: Annotated[bool, typer.Option("--replicate", help=REPLICATE_HELP)] = False,
        copies: Annotated[str | None, typer.Option("--copies", help=COPIES_HELP)] = None,
        in_order: Annotated[bool, typer.Option("--in-order", help=IN_ORDER_HELP)] = False,
        timings: Annotated[bool, typer.Option("--timings", help="Record the solve's wall time in the plan.")] = False,
        state: Annotated[list[str] | None, typer.Option("--state", help=STATE_HELP)] = None,
        no_state: Annotated[bool, typer.Option("--no-state", help=NO_STATE_HELP)] = False,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the plan JSON here.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
        force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    ) -> None:
        """Find the segmentation with the least predicted period (or latency), proven optimal by CP-SAT."""
        if output is not None:
            inputs = [source, *([model] if model else []), *spec_files(*device_names(device), host)]
            check_output(output, force=force, inputs=inputs)
        time_limit_option(time_limit)
        goal = Goal(parse_objective(objective), batch)
        pool, counted = parse_pool(device)
        host_spec = resolve_host(host)
        profile = read_source(source, pool[0][0] if pool else None, host_spec).profile
        if model is not None:
            check_profile_matches(profile, read_bytes(model, what=".tflite model"), str(model))
        profile = apply_state(profile, state, no_state)
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
        )
        started = time.monotonic()
        try:
            plan = _plan_for(profile, pool, counted, host_spec, goal, options)
        except NoPlanError as exc:
            raise TpuplanError(f"{source}: {exc.reason}") from None
        if not as_json:
            typer.echo(f"solved in {time.monotonic() - started:.2f} s", err=True)
        emit(plan, output=output, as_json=as_json, table=plan_table(plan))


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
        if output is not None:
            check_output(output, force=force, inputs=[source, *spec_files(*device_names(device), host)])
        time_limit_option(time_limit)
        goal = Goal(parse_objective(objective), batch)
        pool, counted = parse_pool(device)
        host_spec = resolve_host(host)
        profile = apply_state(read_source(source, pool[0][0] if pool else None, host_spec).profile, state, no_state)
        try:
            cmp = compare(
                profile,
                tpus,
                device_set(pool, counted, in_order, False),
                host=host_spec,
                goal=goal,
                allow_spill=allow_spill,
                time_limit_s=time_limit,
            )
        except NoPlanError as exc:
            raise TpuplanError(f"{source}: {exc.reason}") from None
        emit(cmp, output=output, as_json=as_json, table=comparison_table(cmp))
