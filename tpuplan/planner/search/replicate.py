"""Stages with copies: several TPUs run one stage and take its inputs in turn.

A stage can never be cut finer than one layer, so on models with one heavy layer more stages stop paying.
Given T TPUs of one kind, choose K stages and a number of copies r_k >= 1 per stage, sum r_k <= T, for the
least period P = max over the cost formula's period bounds, the stage bound read with copies:
T_k(r) = ceil((T_k - S_k) / r) + S_k (`pipeline_formula.interval`): each copy has its own device and runner thread,
so a stage's work divides among its copies except its serialized share S_k (work under the one lock); the
sums over the stages do not shrink (every input is still copied and sent once). A copy holds the whole
stage's parameters on its own TPU and pays the stage's one-off. One stage on all T TPUs is data
parallelism: the whole model on each TPU. A stage that holds an op of a state loop is never copied.
Ties: fewest TPUs, then fewest copies (more stages), then least latency, then the smallest (end, copies)
stage by stage.

This is the planner's search (`planner.search.engine`) on a problem of up to T stages of one kind, with
T devices of it and copies: asked "a plan of period <= t?", every stage takes the fewest copies that
meet t (`problem.copies_needed`), so the exact reference and CP-SAT see one choice per stage.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.planner.costs import Goal
from tpuplan.planner.search.engine import optimize, reference
from tpuplan.planner.search.problem import Option, Problem, in_loop, table_loops
from tpuplan.planner.search.problem import copies_needed as needed
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.plancost import pipeline_cost, stage_pairs
from tpuplan.profiles.pricing.tables import StageCostTable

MAX_REPLICATED_TPUS = 64
COPIES_RANK = ("tpus", "negstages", "T")


@dataclass(frozen=True)
class Replicated:
    """A plan with copies: where the stages end, how many TPUs run each, and its numbers (us)."""

    cuts: list[int]
    copies: list[int]
    period_us: int
    latency_us: int
    status: str  # OPTIMAL: CP-SAT proved and pinned it; REFERENCE: the exact reference only; FEASIBLE: neither
    notes: tuple[str, ...] = ()

    @property
    def proven(self) -> bool:
        return self.status in ("OPTIMAL", "REFERENCE")

    @property
    def tpus(self) -> int:
        return sum(self.copies)


def copies_problem(
    table: StageCostTable, tpus: int, loops: tuple[tuple[int, int], ...] = (), onchip: bool = False
) -> Problem:
    """Up to `tpus` stages on `tpus` TPUs of the table's kind, with copies."""
    if not 1 <= tpus <= MAX_REPLICATED_TPUS:
        raise TpuplanError(f"copies are planned for 1 to {MAX_REPLICATED_TPUS} TPUs (got {tpus})")
    k = min(tpus, table.n)
    return Problem((Option(table),), ((0,),) * k, True, (tpus,), True, onchip, loops or table_loops([table]))


def solve_replicated(
    table: StageCostTable,
    tpus: int,
    *,
    allow_spill: bool = False,
    time_limit_s: float | None = None,
    loops: tuple[tuple[int, int], ...] = (),
    deadline: float | None = None,
) -> Replicated:
    """The least-period plan with copies over at most `tpus` TPUs of one kind, proven and pinned."""
    problem = copies_problem(table, tpus, loops)
    out = optimize(
        problem, Goal(), rank=COPIES_RANK, allow_spill=allow_spill, time_limit_s=time_limit_s, deadline=deadline
    )
    notes = list(out.notes)
    cost = pipeline_cost([table] * len(out.copies), out.cuts, out.copies)
    if out.proven and cost.period_us != out.objective:
        raise TpuplanError(
            f"internal error: plan with copies priced {cost.period_us} us, search said {out.objective} us"
        )
    return Replicated(out.cuts, out.copies, cost.period_us, cost.latency_us, out.status, tuple(notes))


def reference_replicated(
    table: StageCostTable, tpus: int, *, onchip: bool, deadline: float | None = None
) -> tuple[int, int, int, list[int], bool] | None:
    """(least period, TPUs, K, cuts, proven) of a plan with copies found by the exact reference alone."""
    found = reference(copies_problem(table, tpus, onchip=onchip), Goal(), deadline=deadline)
    if found is None:
        return None
    pk = found.plan
    return found.value, sum(pk.copies), pk.stages, pk.cuts, found.proven


def copies_needed(table: StageCostTable, a: int, b: int, t: int, limit: int) -> int:
    """The fewest copies of stage a..b whose time between results is at most t (a large number when
    more than `limit` would be needed)."""
    v = table.stage_values(a, b)
    return int(needed(np.array([v["time"]]), np.array([v["serial"]]), t, limit)[0])


def brute_force_replicated(
    table: StageCostTable, tpus: int, *, onchip: bool, loops: tuple[tuple[int, int], ...] = ()
) -> tuple[int, int, int, int, list[tuple[int, int]]] | None:
    """(period, TPUs, -K, latency, [(end, copies) per stage]): the least such tuple over every plan with
    copies (tiny n and T only), the order `solve_replicated` breaks ties in."""
    n = table.n
    best: tuple[int, int, int, int, list[tuple[int, int]]] | None = None
    for k in range(1, min(n, tpus) + 1):
        for cuts in itertools.combinations(range(n - 1), k - 1):
            pairs = stage_pairs(list(cuts), n)
            if not all(table.is_valid(a, b) and (not onchip or table.fits_on_chip(a, b)) for a, b in pairs):
                continue
            held = [bool(in_loop(loops, np.array([a - 1]), np.array([b]))[0]) for a, b in pairs]
            for copies in itertools.product(range(1, tpus - k + 2), repeat=k):
                if sum(copies) > tpus or any(h and r > 1 for h, r in zip_strict(held, copies)):
                    continue
                cost = pipeline_cost([table] * k, cuts, copies)
                ends = [b for _, b in pairs]
                key = (cost.period_us, sum(copies), -k, cost.latency_us, list(zip_strict(ends, copies)))
                if best is None or key < best:
                    best = key
    return best
