"""`plan tune`: plan, split, verify on the hardware, re-plan with what was measured, until the plan stops
changing; one verify is one hardware run.

Each round verifies the current plan (`runtime.verify.check.verify`: every stage timed alone, one run of
the pipeline), then plans again from every report so far (`runtime.verify.refit.with_measurements`): the
stages already timed keep their measured times, the others are priced by the device and host refitted
to all the times. The loop stops when the new plan is one already verified, or promises less than
`min_gain` (1%) over the best verified plan priced again with every report (its stages all measured):
no run is worth making for less than the measurements' own noise. It hands back the better of the two,
and otherwise stops after `max_runs` runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from tpuplan.planner.costs import Goal
from tpuplan.planner.plan import Plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_PIPELINE_US
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.profiles.tflite.reader import LoadedModel
from tpuplan.runtime.backends.kinds import Backend, get_backend
from tpuplan.runtime.progress import Progress
from tpuplan.runtime.verify.check import verify
from tpuplan.runtime.verify.refit import Remeasured, Reported, with_measurements
from tpuplan.runtime.verify.report import VerifyReport

Replan = Callable[[Profile, list[DeviceSpec], HostSpec], Plan]  # the solve (its options fixed by the caller)
DEFAULT_MAX_RUNS = 5
DEFAULT_MIN_GAIN = 0.01  # a new plan must promise this much over the best verified one to be worth a run


@dataclass(frozen=True)
class Round:
    """One hardware run: the plan verified, its report, and the plan made afterwards from every report (the
    next to verify, or, on the last round, the one handed back)."""

    plan: Plan
    report: VerifyReport
    next_plan: Plan
    notes: list[str]

    @property
    def changed(self) -> bool:
        return not same_plan(self.plan, self.next_plan)


@dataclass
class TuneResult:
    """Every round, the plan to use, and whether the loop stopped because the plan stopped changing."""

    first: Plan
    rounds: list[Round] = field(default_factory=list)
    converged: bool = False

    @property
    def runs(self) -> int:
        return len(self.rounds)

    @property
    def plan(self) -> Plan:
        return self.rounds[-1].next_plan if self.rounds else self.first


def same_plan(a: Plan, b: Plan) -> bool:
    """The same segments on the same devices, with the same copies: nothing new to measure."""
    return (
        a.cuts == b.cuts
        and [s.copies for s in a.stages] == [s.copies for s in b.stages]
        and [s.device for s in a.stages] == [s.device for s in b.stages]
    )


@dataclass(frozen=True)
class VerifyOptions:
    """How each hardware run verifies: inputs, repeats per stage, tolerance (only reported)."""

    inputs: int = 10
    repeats: int = 10
    tolerance: float = 0.15
    seed: int = 0


def tune(
    profile: Profile,
    model: LoadedModel,
    devices: Sequence[DeviceSpec],
    host: HostSpec,
    replan: Replan,
    *,
    backend: str | Backend = "edgetpu",
    device_strings: Sequence[str] | None = None,
    max_runs: int = DEFAULT_MAX_RUNS,
    min_gain: float = DEFAULT_MIN_GAIN,
    earlier: Sequence[Reported] = (),
    options: VerifyOptions | None = None,
    on_round: Callable[[int, Round], None] | None = None,
    progress: Progress | None = None,
) -> TuneResult:
    """Plan, verify, re-plan until no new plan promises `min_gain` over the best one verified, or
    `max_runs` hardware runs were made; `earlier` reports (of this model, devices and host) count as
    measured from the start."""
    if not 1 <= max_runs <= 100:
        raise TpuplanError(f"--max-runs must be 1 to 100 (got {max_runs})")
    if not 0 <= min_gain < 1:
        raise TpuplanError(f"--min-gain must be from 0 to below 1 (got {min_gain:g})")
    chosen = get_backend(backend)
    o = options or VerifyOptions()
    reported = list(earlier)
    plan = _plan(profile, devices, host, reported, replan)[0]
    result = TuneResult(plan)
    verified: list[Plan] = []
    while result.runs < max_runs:
        rep = verify(
            plan,
            model,
            backend=chosen,
            devices=device_strings,
            inputs=o.inputs,
            repeats=o.repeats,
            tolerance=o.tolerance,
            seed=o.seed,
            outputs_only=False,
            progress=progress,
        )
        if not rep.comparable:
            raise TpuplanError(f"the {chosen.name} backend does not time what the plan predicts: nothing to tune on")
        reported.append(Reported(rep, f"run {result.runs + 1}", host.name))
        verified.append(plan)
        nxt, got = _plan(profile, devices, host, reported, replan)
        assert got is not None
        best = min((_repriced(v, got) for v in verified), key=lambda v: v.solver.objective)
        done = any(same_plan(nxt, v) for v in verified) or nxt.solver.objective >= best.solver.objective * (
            1 - min_gain
        )
        step = Round(plan, rep, best if done else nxt, got.notes)
        result.rounds.append(step)
        if on_round is not None:
            on_round(result.runs, step)
        if done:
            result.converged = True
            break
        plan = nxt
    return result


def _plan(
    profile: Profile, devices: Sequence[DeviceSpec], host: HostSpec, reported: Sequence[Reported], replan: Replan
) -> tuple[Plan, Remeasured | None]:
    """The plan from every report so far (none: the specs' own), and what the reports made of the specs."""
    if not reported:
        return replan(profile, list(devices), host), None
    got = with_measurements(profile, devices, host, reported)
    plan = replan(got.profile, got.devices, got.host)
    return plan.model_copy(update={"notes": [*plan.notes, *got.notes]}), got


def _repriced(plan: Plan, got: Remeasured) -> Plan:
    """A verified plan priced again with every report (its stages all measured now) and the refit."""
    by_name = {d.name: d for d in got.devices}
    again = evaluate(
        got.profile,
        [by_name[s.device] for s in plan.stages],
        plan.cuts,
        got.host,
        Goal(plan.goal.objective, plan.goal.batch),
        [s.copies for s in plan.stages],
    )
    return again.model_copy(update={"notes": [*again.notes, *got.notes]})


class TuneRound(StrictModel):
    """One hardware run as `plan tune --json` reports it (measured: SIMULATED when the report says so)."""

    run: int = Field(ge=1, le=100)
    cuts: list[int]
    copies: list[int]
    predicted_period_us: int = Field(ge=0, le=MAX_PIPELINE_US)
    measured_slowest_stage_us: float = Field(ge=0, le=MAX_PIPELINE_US, description="MEASURED (or SIMULATED)")
    measured_throughput_per_s: float = Field(ge=0, le=1e9, description="MEASURED (or SIMULATED)")
    verdict: str = Field(max_length=40)
    next_cuts: list[int]
    changed: bool


class TuneSummary(StrictModel):
    kind: Literal["tpuplan.tune"] = "tpuplan.tune"
    schema_version: Literal[1] = 1
    backend: str = Field(max_length=100)
    simulated: bool
    runs: int = Field(ge=0, le=100, description="hardware runs (verifies) made")
    min_gain: float = Field(ge=0, lt=1, description="a new plan had to promise this much over the best verified")
    converged: bool = Field(description="no new plan promised min_gain; else --max-runs ended the loop")
    rounds: list[TuneRound]
    plan: Plan


def summary(result: TuneResult, backend: Backend, min_gain: float = DEFAULT_MIN_GAIN) -> TuneSummary:
    return TuneSummary(
        backend=backend.name,
        simulated=backend.simulated,
        runs=result.runs,
        min_gain=min_gain,
        converged=result.converged,
        rounds=[
            TuneRound(
                run=i + 1,
                cuts=r.plan.cuts,
                copies=[s.copies for s in r.plan.stages],
                predicted_period_us=r.plan.predicted_period_us,
                measured_slowest_stage_us=r.report.measured_bottleneck_us,
                measured_throughput_per_s=r.report.measured_throughput_per_s,
                verdict=r.report.verdict,
                next_cuts=r.next_plan.cuts,
                changed=r.changed,
            )
            for i, r in enumerate(result.rounds)
        ],
        plan=result.plan,
    )
