"""A planning question, and the stage choices a plan may take: what every search of `planner.search` reads.

A plan is a path of stages through the ops: stage s (layer s) takes ops p+1..e on one device kind (an
option: the kind's stage table), with r copies. Layers say which kinds each stage may use (one each when
the devices are given in order; every kind of a pool otherwise, with at most `counts[kind]` devices of a
kind in all). With `open_end` a plan may stop after any stage: an "empty choice" (p = e = n-1, no device)
carries it through the layers left. With `copies` a stage may run on r devices taking its inputs in turn;
a question asked at a period t gives every stage the fewest copies that meet t (more only use devices).

A question asks for plans whose objective J = alpha P + beta L + gamma O (`formula.Goal`) is at most a cap
(and whose secondary number, when capped, too). Its components are what a partial plan adds up: one per
period bound of the cost formula (`formula.PERIOD_BOUNDS`: the largest stage time, the sums), the latency
T, the one-off O and the devices used of each kind. `sweep` works out, for every stage of the band
(the stages a table priced), the least each component can be over whole plans through it (a shortest
path from the first op and one to the last), drops the stages no plan within the caps uses, and keeps the
rest as `Choices` per layer: usually a few per layer, which the label search, the bounds and CP-SAT then
read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from tpuplan.planner.costs import Goal
from tpuplan.profiles.pricing.formula import BOUND_NAMES, PERIOD_BOUNDS, PeriodBound
from tpuplan.profiles.pricing.tables import StageCostTable

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
BIG = 2**55  # above any real sum (stage values <= 2^38, at most 1,024 stages and 64 copies); 3 x BIG fits int64
Combine = Literal["max", "sum"]
SCENARIO_SEP = "@"  # a period bound in one scenario of the calibration: "serialized@without x" (planner.robust)


def is_bound(name: str) -> bool:
    """Whether a component is a period bound: one of the cost formula's, in a scenario or not."""
    return name.partition(SCENARIO_SEP)[0] in BOUND_NAMES


@dataclass(frozen=True)
class Option:
    """A device kind a stage may run on: its stage table, and its index among the kinds (for counts)."""

    table: StageCostTable
    kind: int = 0


@dataclass(frozen=True)
class Problem:
    """Plans of len(layers) stages (fewer with `open_end`) over n ops; stage s runs on one of the
    options listed for layer s."""

    options: tuple[Option, ...]
    layers: tuple[tuple[int, ...], ...]
    open_end: bool = False
    counts: tuple[int, ...] | None = None  # devices of each kind (None: a device per stage)
    copies: bool = False
    onchip: bool = False
    loops: tuple[tuple[int, int], ...] = ()  # op spans of state loops: a stage touching one has one copy
    budget: int | None = None  # devices of all kinds together (with copies; counts cap each kind)
    bounds: tuple[PeriodBound, ...] = PERIOD_BOUNDS  # the period's bounds (planner.robust: one set per scenario)

    @property
    def n(self) -> int:
        return self.options[0].table.n

    @property
    def k(self) -> int:
        return len(self.layers)

    @property
    def start_us(self) -> int:
        return self.options[0].table.start_us

    @property
    def kinds(self) -> int:
        return 1 + max(o.kind for o in self.options)

    def max_copies(self) -> int:
        """The most devices one stage may take."""
        if not self.copies:
            return 1
        if self.counts is not None:
            return min(max(self.counts), self.budget or max(self.counts))
        return self.k


def table_loops(tables: Sequence[StageCostTable]) -> tuple[tuple[int, int], ...]:
    """The state loops of the tables' profile: no stage touching one is copied."""
    return tuple(sorted({span for t in tables for span in t.loops}))


def in_order(tables: Sequence[StageCostTable], **kw: object) -> Problem:
    """Stage s on tables[s] (the same table object shares its options)."""
    kw.setdefault("loops", table_loops(tables))
    ids: dict[int, int] = {}
    options: list[Option] = []
    layers = []
    for t in tables:
        if id(t) not in ids:
            ids[id(t)] = len(options)
            options.append(Option(t, 0))
        layers.append((ids[id(t)],))
    return Problem(tuple(options), tuple(layers), **kw)  # type: ignore[arg-type]


@dataclass
class Choices:
    """The stages one layer may take: ops p+1..e on option opt (-1: the empty choice), r copies, and
    the stage values of each (the formula's, per choice)."""

    p: I64
    e: I64
    opt: I64
    r: I64
    values: dict[str, I64]

    def take(self, keep: Mask | I64) -> Choices:
        return Choices(
            self.p[keep], self.e[keep], self.opt[keep], self.r[keep], {k: v[keep] for k, v in self.values.items()}
        )

    def __len__(self) -> int:
        return len(self.p)

    @staticmethod
    def concat(parts: Sequence[Choices]) -> Choices:
        return Choices(
            np.concatenate([c.p for c in parts]),
            np.concatenate([c.e for c in parts]),
            np.concatenate([c.opt for c in parts]),
            np.concatenate([c.r for c in parts]),
            {k: np.concatenate([c.values[k] for c in parts]) for k in parts[0].values},
        )


@dataclass(frozen=True)
class Component:
    """What a partial plan adds up: a stage value (the largest, or the sum), capped or not."""

    name: str
    combine: Combine
    cap: int | None = None


@dataclass(frozen=True)
class Question:
    """Plans of objective J <= `objective` (and secondary <= `secondary` when given); with copies, every
    stage takes the fewest copies that keep its time between results within `period_for_copies`."""

    goal: Goal
    objective: int
    secondary: int | None = None
    period_for_copies: int | None = None
    rank: tuple[str, ...] = ()  # numbers a tie-break ranks by: "tpus", "stages", "negstages", "T", "P"
    comps: tuple[Component, ...] = field(default=(), compare=False)


REACH = Component("reach", "sum")  # 0 for every choice: a bound of it is BIG exactly off every whole plan


def reachable(comps: tuple[Component, ...]) -> tuple[Component, ...]:
    """The components with which a bound is BIG off every whole plan: any component does that (a prefix
    or suffix that does not exist is BIG), REACH when there is none."""
    return comps or (REACH,)


def components(problem: Problem, q: Question, used: Sequence[str]) -> tuple[Component, ...]:
    """The components of question q: the period bounds whose values are not all zero (`used`) when the
    period counts, the latency and one-off when they do, the devices of each kind when counted, and
    the ranked numbers of a tie-break ("P" is the period, read from the period bounds)."""
    alpha, beta, gamma = q.goal.weights
    second = q.secondary is not None
    latency_goal = q.goal.objective == "latency"
    out = []
    if alpha > 0 or "P" in q.rank or (second and latency_goal):
        dropped = filters(q)
        out += [Component(b.name, b.combine) for b in problem.bounds if b.name in used and b.name not in dropped]
    if beta > 0 or "T" in q.rank or (second and not latency_goal):
        out.append(Component("T", "sum"))
    if gamma > 0:
        out.append(Component("O", "sum"))
    if problem.counts is not None:
        out += [Component(f"kind{k}", "sum", c) for k, c in enumerate(problem.counts)]
    if problem.budget is not None or "tpus" in q.rank:
        out.append(Component("tpus", "sum", problem.budget))
    out += [Component(name, "sum") for name in ("stages", "negstages") if name in q.rank]
    return tuple(out)


def filters(q: Question) -> tuple[str, ...]:
    """The `max` period bounds a question reads as filters instead of components: when J is the period
    alone (and not ranked), J <= cap holds exactly when every stage's value is within the cap, so they
    are checked choice by choice (`capped`) and the labels carry one component less."""
    if q.goal.weights[1:] != (0, 0) or "P" in q.rank:
        return ()
    named = {c.name for c in q.comps}
    return tuple(b.name for b in PERIOD_BOUNDS if b.combine == "max" and b.name not in named)


def capped(problem: Problem, q: Question, c: Choices) -> Mask:
    """Choices whose values of the filtered bounds (`filters`) are within q's cap."""
    ok = np.ones(len(c), dtype=np.bool_)
    for name in filters(q):
        ok &= comp_values(problem, Component(name, "max"), c, np.zeros(len(c), dtype=np.int64)) <= q.objective
    return ok


def prepare(problem: Problem, q: Question, caps: Mapping[str, int] | None = None) -> Question:
    """q with its components (after the tables priced what the search reads), `caps` on some of them."""
    comps = components(problem, q, used_bounds(problem))
    if caps:
        comps = tuple(replace(c, cap=caps[c.name]) if c.name in caps else c for c in comps)
    return replace(q, comps=comps)


def used_bounds(problem: Problem) -> list[str]:
    """The period bounds some stage gives a value (a bound zero everywhere is left out of the search)."""
    out = [problem.bounds[0].name]
    for b in problem.bounds[1:]:
        if any(o.table.top(b.value) > 0 or o.table.priced == 0 for o in problem.options):
            out.append(b.name)
    return out


def copies_needed(time: I64, serial: I64, t: int, limit: int) -> I64:
    """The fewest copies r whose time between results, ceil((T - S) / r) + S (pipeline_formula.interval), is at
    most t; BIG when more than `limit` would be needed."""
    fixed = np.minimum(serial, time)
    work = time - fixed
    room = t - fixed
    need = np.where(room > 0, -(-work // np.maximum(room, 1)), BIG)
    need = np.where(time <= t, 1, np.maximum(need, 1))
    out: I64 = np.where(need <= limit, need, BIG)
    return out


def interval(time: I64, serial: I64, r: I64) -> I64:
    """pipeline_formula.interval on arrays (r >= 1)."""
    fixed = np.minimum(serial, time)
    out: I64 = np.where(r > 1, -(-(time - fixed) // np.maximum(r, 1)) + fixed, time)
    return out


def in_loop(loops: Sequence[tuple[int, int]], p: I64, e: I64) -> Mask:
    """Stages p+1..e that hold an op of a state loop (op spans lo..hi)."""
    out = np.zeros(len(p), dtype=np.bool_)
    for lo, hi in loops:
        out |= (p + 1 <= hi) & (e >= lo)
    return out


def comp_values(problem: Problem, comp: Component, c: Choices, kinds: I64) -> I64:
    """A component's value of every choice (0 for the empty choice)."""
    name = comp.name
    if name == "reach":
        return np.zeros(len(c), dtype=np.int64)
    if name == "T":
        return c.values["time"]
    if name == "O":
        out: I64 = c.r * c.values["oneoff"]
        return out
    if name == "tpus":
        return c.r
    if name == "stages":
        return (c.opt >= 0).astype(np.int64)
    if name == "negstages":
        return -(c.opt >= 0).astype(np.int64)
    if name.startswith("kind"):
        return np.where(kinds == int(name[4:]), c.r, 0)
    bound = next(b for b in problem.bounds if b.name == name)
    if bound.value == PERIOD_BOUNDS[0].value and problem.copies:
        return interval(c.values["time"], c.values["serial"], np.maximum(c.r, 1))
    return c.values[bound.value]


def comp_matrix(problem: Problem, comps: Sequence[Component], c: Choices) -> I64:
    """[choices, components]: what each choice adds to each component."""
    kinds = np.array([o.kind for o in problem.options] + [-1], dtype=np.int64)[c.opt]
    cols = [comp_values(problem, comp, c, kinds) for comp in comps]
    out: I64 = np.stack(cols, axis=1) if cols else np.zeros((len(c), 0), dtype=np.int64)
    return out


def objective_of(q: Question, comps: Sequence[Component], whole: I64, start: int) -> tuple[I64, I64]:
    """(J, secondary) of whole plans (or lower bounds of them) from their component values [.., d]. A
    term past the cap is cut to just above it (the cap is exceeded all the same), so that no product
    of a weight and a large value overflows."""
    alpha, beta, gamma = q.goal.weights
    names = [c.name for c in comps]
    period_cols = [j for j, c in enumerate(comps) if is_bound(c.name)]
    shape = whole.shape[:-1]
    zero = np.zeros(shape, dtype=np.int64)
    period = whole[..., period_cols].max(axis=-1) if period_cols else zero
    latency = whole[..., names.index("T")] if "T" in names else zero
    oneoff = whole[..., names.index("O")] + start if "O" in names else zero + start
    top = max(q.objective, 0) + 1

    def term(w: int, x: I64) -> I64:
        out: I64 = w * np.minimum(x, top // w + 1) if w else zero
        return out

    j: I64 = term(alpha, period) + term(beta, latency) + term(gamma, oneoff)
    second: I64 = latency if q.goal.objective == "throughput" else period
    return j, second


def within(q: Question, comps: Sequence[Component], whole: I64, start: int) -> Mask:
    """Plans (or bounds of them) within the question's caps."""
    j, second = objective_of(q, comps, whole, start)
    ok: Mask = j <= q.objective
    if q.secondary is not None:
        ok &= second <= q.secondary
    for col, comp in enumerate(comps):
        if comp.cap is not None:
            ok &= whole[..., col] <= comp.cap
    ok &= (whole < BIG).all(axis=-1)
    return ok


def stage_cap(problem: Problem, q: Question) -> int:
    """The largest stage time T a plan within q can have: every T is at most P (alpha > 0) and L (beta >
    0); with copies, r copies of a stage take at most r times its time between results."""
    alpha, beta, gamma = q.goal.weights
    budget = q.objective - gamma * problem.start_us
    caps = [budget // w for w in (alpha, beta) if w > 0]
    cap = max(0, min(caps)) if caps else BIG
    if problem.copies and q.period_for_copies is not None:
        cap = min(cap, q.period_for_copies) * problem.max_copies()
    return int(min(cap, BIG))
