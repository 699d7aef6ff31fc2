"""What every solve shares: the options and the one deadline, the search of `planner.search.engine`
with its errors, and the plan assembled from what it found."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from tpuplan.planner.costs import Goal
from tpuplan.planner.defaults import DEFAULT_TIME_LIMIT_S, DEFAULT_WORKERS
from tpuplan.planner.plan import Plan, SolverInfo, SolverParameters
from tpuplan.planner.plan_build import build_plan
from tpuplan.planner.search.cpsat import check_solver_options
from tpuplan.planner.search.engine import Outcome, optimize
from tpuplan.planner.search.problem import Problem
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec


class SearchSettings(TypedDict, total=False):
    """How a solve searches, given by keyword to every solve (`planner.solve`, `planner.robust`): one list,
    so that a solve that hands them on to another passes them whole. Their defaults are in `Options.of`."""

    host: HostSpec | None
    allow_spill: bool
    time_limit_s: float | None
    workers: int
    seed: int
    timings: bool


class GoalSettings(SearchSettings, total=False):
    """The settings of a solve that also takes the goal (the least period when None)."""

    goal: Goal | None


@dataclass
class Options:
    goal: Goal
    allow_spill: bool
    time_limit_s: float | None
    workers: int
    seed: int
    deadline: float
    host: HostSpec | None = None
    timings: bool = False

    @staticmethod
    def of(goal: Goal | None, settings: SearchSettings) -> Options:
        """The settings with their defaults, checked; the deadline starts now."""
        time_limit_s, workers = settings.get("time_limit_s"), settings.get("workers", DEFAULT_WORKERS)
        limit = DEFAULT_TIME_LIMIT_S if time_limit_s is None else time_limit_s
        check_solver_options(limit, workers)
        return Options(
            goal or Goal(),
            settings.get("allow_spill", False),
            time_limit_s,
            workers,
            settings.get("seed", 0),
            time.monotonic() + limit,
            settings.get("host"),
            settings.get("timings", False),
        )


def search(problem: Problem, opts: Options, rank: Sequence[str], prove: bool = True) -> Outcome:
    return optimize(
        problem,
        opts.goal,
        rank=rank,
        allow_spill=opts.allow_spill,
        workers=opts.workers,
        seed=opts.seed,
        prove=prove,
        deadline=opts.deadline,
    )


class NoPlanError(TpuplanError):
    """No plan exists for this model at all; `reason` says why without naming a file, so that the caller
    can name the file the user gave (a profile stores only the model's file name)."""

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"{model}: {reason}")
        self.reason = reason


def no_tpu_ops_message(profile: Profile) -> str:
    """Why no plan exists when the Edge TPU runs none of the ops: the first op's reason, and what to do
    when the reason is float tensors (the usual case: a model that was never quantised)."""
    first = profile.ops[0]
    floats = all("float" in op.edgetpu_reason for op in profile.ops if not op.supported)
    advice = "; quantise the model to int8 (full-integer post-training quantisation) first" if floats else ""
    return (
        f"no plan exists: the Edge TPU runs none of this model's {len(profile.ops)} ops "
        f"(op 0 {first.op_type}: {first.edgetpu_reason or 'not supported'}){advice}"
    )


def checked_search(profile: Profile, problem: Problem, opts: Options, rank: Sequence[str], prove: bool) -> Outcome:
    try:
        return search(problem, opts, rank, prove)
    except TpuplanError as exc:
        if "no plan over" in str(exc) and not any(op.supported for op in profile.ops):
            raise NoPlanError(profile.model.path, no_tpu_ops_message(profile)) from None
        raise


def solver_info(got: Outcome, opts: Options, start: float | None, note: str = "") -> SolverInfo:
    return SolverInfo(
        status=got.status,
        objective=got.objective,
        best_bound=got.best_bound,
        proven_optimal=got.proven,
        parameters=SolverParameters(
            workers=opts.workers if start is not None else None,
            time_limit_s=opts.time_limit_s,
            seed=opts.seed,
            allow_spill=opts.allow_spill,
        ),
        wall_time_s=None if start is None else round(time.monotonic() - start, 4),
        note="; ".join([*got.notes, *([note] if note else [])]),
    )


def plan_of(
    profile: Profile,
    problem: Problem,
    got: Outcome,
    opts: Options,
    requested: int,
    notes: list[str],
    start: float | None,
    note: str = "",
) -> Plan:
    tables = [problem.options[o].table for o in got.options]
    devices = [device_of(problem, o) for o in got.options]
    return build_plan(
        profile,
        devices,
        tables,
        got.cuts,
        opts.goal,
        solver_info(got, opts, start, note),
        tpus_requested=requested,
        notes=notes,
        copies=got.copies if problem.copies else None,
    )


def device_of(problem: Problem, o: int) -> DeviceSpec:
    pricer = problem.options[o].table.pricer
    if pricer is None:
        raise TpuplanError("internal error: a plan needs tables priced from a profile")
    return pricer.device
