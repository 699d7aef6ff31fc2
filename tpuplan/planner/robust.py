"""--robust: the plan whose longest period over the calibration's scenarios is least, proven.

A calibrated device and host keep scenarios (`profiles.pricing.scenarios`: the fit made again without one
source at a time, each a plausible set of coefficients). A plan's worst case is its longest period over
them. Since the period is the largest of its bounds (`formula.PERIOD_BOUNDS`), the worst case is the
largest of: the slowest stage in its slowest scenario, and every sum bound (serialized host work, the
shared bus, a state loop) in every scenario. The search of `planner.search` takes those bounds as they
are (`Problem.bounds`), from tables whose pricer (`ScenarioPricer`) gives every stage its values in every
scenario: `time` the largest over them, the summed values once per scenario ("serial@<scenario>").

Rather than hand the search every scenario's sums at once (up to 4 x 9 more components, each a dimension
of its labels), bounds are added as they are needed. The first search minimises the slowest stage over
every scenario with the nominal scenario's sums: a relaxation, at most the worst case of every plan. If
the plan it finds has a worst case equal to that optimum, no plan can do better (proven). Otherwise the
scenario sum that set its worst case joins the bounds and the search runs again; every round adds one,
so the loop ends (in one or two rounds on the shared models).
Copies are not planned here: a copied stage's interval mixes time and serial work of one scenario, which
the largest-over-scenarios values would overstate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.planner.costs import Goal, totals
from tpuplan.planner.devices import DeviceSet, Tables
from tpuplan.planner.plan import Plan, SolverInfo
from tpuplan.planner.plan_build import build_plan, check_k
from tpuplan.planner.search.engine import Outcome
from tpuplan.planner.search.problem import SCENARIO_SEP, Problem
from tpuplan.planner.solving import Options, SearchSettings, checked_search, device_of, solver_info
from tpuplan.planner.uncertainty import RobustInfo, ScenarioRow, scenario_values
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing import formula, pipeline_formula
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.scenarios import NOMINAL, scenario_names, with_scenario
from tpuplan.profiles.pricing.stagecost import StagePricer
from tpuplan.profiles.pricing.tables import StageCostTable, table_of

if TYPE_CHECKING:
    from typing_extensions import Unpack

SUMS = tuple(b for b in formula.PERIOD_BOUNDS if b.combine == "sum")  # the bounds summed over the stages


def scenario_key(name: str, scenario: str) -> str:
    """A value or bound of one scenario, as the tables and the search name it."""
    return f"{name}{SCENARIO_SEP}{scenario}"


class ScenarioPricer(StagePricer):
    """Prices a stage in every scenario: the nominal pricer's quantities, with `time` (and every other
    stage value) the largest over the scenarios and each summed value once per scenario. The nominal
    floor stays a floor: the largest time is at least the nominal one."""

    def __init__(self, profile: Profile, device: DeviceSpec, host: HostSpec, scenarios: Sequence[str]) -> None:
        super().__init__(profile, device, host)
        self.scenarios = list(scenarios)
        self._others = [
            StagePricer(profile, with_scenario(device, s), with_scenario(host, s)) for s in self.scenarios[1:]
        ]
        each = [scenario_key(b.value, s) for s in self.scenarios for b in SUMS]
        self.value_keys = (*formula.STAGE_VALUES, *each)

    def block(
        self,
        starts: Sequence[int] | Any,
        his: Sequence[int] | Any,
        keep: Sequence[str] | None = None,
        los: Sequence[int] | Any | None = None,
    ) -> dict[str, Any]:
        out = super().block(starts, his, keep, los)
        if "values" not in out:
            return out
        each = [out["values"], *(p.block(starts, his, ("values",), los)["values"] for p in self._others)]
        values = {k: np.max(np.stack([v[k] for v in each]), axis=0) for k in formula.STAGE_VALUES}
        for scenario, v in zip_strict(self.scenarios, each):
            values |= {scenario_key(b.value, scenario): v[b.value] for b in SUMS}
        return {**out, "values": values}


class ScenarioTables(Tables):
    """Stage tables priced in every scenario (`ScenarioPricer`)."""

    def __init__(self, profile: Profile, host: HostSpec, scenarios: Sequence[str]) -> None:
        super().__init__(profile, host)
        self.scenarios = list(scenarios)

    def new(self, device: DeviceSpec) -> StageCostTable:
        return table_of(ScenarioPricer(self.profile, device, self.host, self.scenarios))


def bounds_of(active: Sequence[tuple[str, str]]) -> tuple[formula.PeriodBound, ...]:
    """The period bounds of a round: the slowest stage over every scenario, and the (sum, scenario)
    pairs added so far."""
    by_name = {b.name: b for b in SUMS}
    return (
        formula.PERIOD_BOUNDS[0],
        *(
            formula.PeriodBound(
                scenario_key(name, s), scenario_key(by_name[name].value, s), "sum", f"{by_name[name].doc} ({s})"
            )
            for name, s in active
        ),
    )


def worst_case(problem: Problem, got: Outcome, scenarios: Sequence[str]) -> tuple[int, tuple[str, str] | None]:
    """The plan's longest period over the scenarios (the formula's pipeline over every scenario's bounds),
    and the (sum, scenario) that sets it (None: the slowest stage does)."""
    every = [(b.name, s) for s in scenarios for b in SUMS]
    bounds = bounds_of(every)
    cost = totals([problem.options[o].table for o in got.options], got.cuts, Goal(), bounds=bounds)
    pairs = dict(zip_strict([b.name for b in bounds[1:]], every))
    return cost.period_us, pairs.get(cost.bound)


def solve_robust(
    profile: Profile,
    dset: DeviceSet,
    k: int,
    **settings: Unpack[SearchSettings],
) -> Plan:
    """The plan over at most k TPUs whose longest period over the calibration's scenarios is least
    (fewest TPUs among those), proven; its `robust` part gives each scenario's own optimum."""
    from tpuplan.planner.solve import rank_of, solve_set  # (planner.solve imports the search too)

    start = time.monotonic()
    check_k(profile, k)
    if dset.copies:
        raise TpuplanError("--robust plans without copies: drop --replicate")
    spec_host = settings.get("host") or resolve_host(profile.host)
    scenarios = scenario_names(*dset.kinds, spec_host)
    if len(scenarios) == 1:
        names = ", ".join(d.name for d in dset.kinds)
        raise TpuplanError(
            f"--robust needs the scenarios of a calibration: {names} and host {spec_host.name} keep none "
            "(the presets and `plan calibrate` write them)"
        )
    opts = Options.of(Goal(), settings)
    base = dset.problem(ScenarioTables(profile, spec_host, scenarios), k)
    active = [(b.name, NOMINAL) for b in SUMS]
    rounds = 0
    while True:
        rounds += 1
        problem = replace(base, bounds=bounds_of(active))
        got = checked_search(profile, problem, opts, rank_of(dset, opts.goal), True)
        worst, which = worst_case(problem, got, scenarios)
        if which is None or which in active or worst <= got.objective or not got.proven:
            break
        active.append(which)
    proven = got.proven and worst <= got.objective
    solve = partial(
        solve_set,
        profile,
        host=spec_host,
        allow_spill=opts.allow_spill,
        time_limit_s=opts.time_limit_s,
        workers=opts.workers,
    )
    nominal = solve(dset, k)
    devices, cuts = [device_of(problem, o) for o in got.options], got.cuts
    rows = _scenario_rows(profile, dset, k, spec_host, scenarios, (devices, cuts), nominal, solve)
    info = RobustInfo(
        worst_period_us=worst,
        nominal_worst_period_us=max(r.nominal_plan_period_us for r in rows),
        rounds=rounds,
        scenarios=rows,
    )
    kept = info.nominal_worst_period_us <= worst  # the nominal plan is as robust: it is kept, being better as fitted
    if kept:
        devices, cuts = list(nominal.devices), nominal.cuts
        rows = [r.model_copy(update={"period_us": r.nominal_plan_period_us}) for r in rows]
        info = info.model_copy(update={"scenarios": rows})
    nominal_tables = Tables(profile, spec_host)
    tables = [nominal_tables.of(d) for d in devices]
    plan = build_plan(
        profile, devices, tables, cuts, Goal(), _solver(got, cuts, opts, start, opts.timings, tables), tpus_requested=k
    )
    note = (
        f"robust: the least longest period over {len(scenarios)} scenarios (nominal and refits without one "
        f"source each): {worst} us, the nominal plan's {info.nominal_worst_period_us} us; "
        f"{'proven' if proven else 'not proven'} in {rounds} round(s)"
        + ("; the nominal plan reaches it too and is kept" if kept else "")
    )
    return plan.model_copy(update={"robust": info, "notes": [*plan.notes, note]})


def _solver(
    got: Outcome, cuts: list[int], opts: Options, start: float, timings: bool, tables: list[StageCostTable]
) -> SolverInfo:
    """The solver's record of the plan: its objective the plan's own (nominal) period, as every plan's is;
    proven means proven for the worst case."""
    nominal = totals(tables, cuts, Goal()).objective
    mine = replace(got, objective=nominal, best_bound=min(got.best_bound, nominal))
    return solver_info(mine, opts, start if timings else None, "objective: the longest period over the scenarios")


def _scenario_rows(
    profile: Profile,
    dset: DeviceSet,
    k: int,
    host: HostSpec,
    scenarios: Sequence[str],
    chosen: tuple[Sequence[DeviceSpec], Sequence[int]],
    nominal: Plan,
    solve: Callable[..., Plan],
) -> list[ScenarioRow]:
    """Each scenario: the chosen plan's period, its own optimum, and the nominal plan's period in it."""
    rows = []
    for s in scenarios:
        own = solve(
            DeviceSet(tuple(with_scenario(d, s) for d in dset.kinds), dset.counts), k, host=with_scenario(host, s)
        )
        rows.append(
            ScenarioRow(
                scenario=s,
                period_us=_period(profile, chosen[0], host, chosen[1], s),
                best_period_us=own.predicted_period_us,
                best_proven=own.solver.proven_optimal,
                nominal_plan_period_us=_period(profile, nominal.devices, host, nominal.cuts, s),
            )
        )
    return rows


def _period(profile: Profile, devices: Sequence[DeviceSpec], host: HostSpec, cuts: Sequence[int], s: str) -> int:
    """A plan's period in one scenario."""
    stages = scenario_values(profile, devices, host, cuts, s)
    return int(pipeline_formula.pipeline(stages).period)
