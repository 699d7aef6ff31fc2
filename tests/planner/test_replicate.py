"""Plans with copies: the exact reference and CP-SAT against a brute force over every K, cut set and
copy count, on small random tables (runner parts that copies do not divide, serialized and bus sums,
memory caps that bind)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.planner.test_planner_props import cost_table
from tpuplan.planner.search.replicate import (
    brute_force_replicated,
    copies_needed,
    reference_replicated,
    solve_replicated,
)
from tpuplan.planner.synthetic import synthetic_table
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.plancost import pipeline_cost
from tpuplan.profiles.pricing.tables import StageCostTable


def table() -> st.SearchStrategy[StageCostTable]:
    return st.integers(1, 6).flatmap(lambda n: cost_table(n))


@settings(max_examples=200, deadline=None)
@given(table(), st.integers(1, 5), st.booleans())
def test_solve_replicated_equals_brute_force(t: StageCostTable, tpus: int, allow_spill: bool) -> None:
    try:
        out = solve_replicated(t, tpus, allow_spill=allow_spill)
    except TpuplanError as exc:
        assert "no plan over" in str(exc)
        assert brute_force_replicated(t, tpus, onchip=False) is None
        return
    onchip = not allow_spill and brute_force_replicated(t, tpus, onchip=True) is not None
    best = brute_force_replicated(t, tpus, onchip=onchip)
    assert best is not None
    assert out.proven
    ends = [*out.cuts, t.n - 1]
    assert (out.period_us, out.tpus, -len(ends), out.latency_us, list(zip(ends, out.copies, strict=True))) == best
    ref = reference_replicated(t, tpus, onchip=onchip)
    assert ref is not None and ref[0] == best[0] and ref[4]


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 6).flatmap(lambda n: st.tuples(cost_table(n), st.integers(0, n - 1), st.integers(0, n - 1))))
def test_state_loops_are_never_copied_and_bound_the_period(case: tuple[StageCostTable, int, int]) -> None:
    """A state loop over ops lo..hi: no stage holding one of them gets copies, and the stages holding them
    add up towards the period (the formula's `state` bound); the plan is the brute force's."""
    t, x, y = case
    lo, hi = min(x, y), max(x, y)
    values = {k: _dense(t, k) for k in ("time", "serial", "bus_in", "bus_out", "oneoff")}
    held = np.zeros((t.n, t.n), dtype=np.bool_)
    for a in range(t.n):
        held[a, a:] = [a <= hi and b >= lo for b in range(a, t.n)]
    values["loop"] = np.where(held, values["time"], 0)
    valid, onchip = _dense_mask(t, "valid"), _dense_mask(t, "onchip")
    looped = StageCostTable.dense("looped", "edgetpu", t.n, values, valid, onchip, loops=[(lo, hi)])
    for tpus in (1, 3):
        try:
            out = solve_replicated(looped, tpus)
        except TpuplanError as exc:
            assert "no plan over" in str(exc)
            continue
        onchip_rule = brute_force_replicated(looped, tpus, onchip=True, loops=((lo, hi),)) is not None
        best = brute_force_replicated(looped, tpus, onchip=onchip_rule, loops=((lo, hi),))
        ends = [*out.cuts, t.n - 1]
        assert best is not None and out.proven
        assert (out.period_us, out.tpus, -len(ends), out.latency_us, list(zip(ends, out.copies, strict=True))) == best
        pairs = _bounds(out.cuts, t.n)
        assert all(r == 1 for (a, b), r in zip(pairs, out.copies, strict=True) if a <= hi and b >= lo)
        assert out.period_us >= sum(looped.stage_time_us(a, b) for a, b in pairs if a <= hi and b >= lo)


def _dense(t: StageCostTable, name: str) -> np.ndarray:
    out = np.zeros((t.n, t.n), dtype=np.int64)
    for a in range(t.n):
        for b in range(a, t.n):
            out[a, b] = t.stage_values(a, b)[name]
    return out


def _dense_mask(t: StageCostTable, what: str) -> np.ndarray:
    out = np.zeros((t.n, t.n), dtype=np.bool_)
    for a in range(t.n):
        for b in range(a, t.n):
            out[a, b] = t.is_valid(a, b) if what == "valid" else t.fits_on_chip(a, b)
    return out


def test_copies_divide_the_work_but_not_the_serialized_share() -> None:
    t = synthetic_table([1000], [0], [0], [0], capacity=10, overhead=0, serial_fixed=100)
    assert t.copied_time_us(0, 0, 1) == 1000
    assert t.copied_time_us(0, 0, 4) == 325  # ceil(900 / 4) + 100
    assert copies_needed(t, 0, 0, 325, 8) == 4
    assert copies_needed(t, 0, 0, 324, 8) == 5
    assert copies_needed(t, 0, 0, 100, 8) > 8  # the serialized share alone takes 100 us: never


def test_one_heavy_layer_gets_the_spare_tpus() -> None:
    """The case the issue is about: a layer no cut can split sets the period of every plain plan."""
    t = synthetic_table([100, 4000, 100], [0, 0, 0], [0, 0, 0], [0, 0, 0], capacity=10, overhead=0)
    out = solve_replicated(t, 6)
    heavy = next(k for k, (a, b) in enumerate(_bounds(out.cuts, t.n)) if a <= 1 <= b)
    assert out.copies[heavy] == max(out.copies) >= 4
    assert out.period_us < pipeline_cost([t] * 3, [0, 1]).period_us
    assert out.proven and out.tpus <= 6


def test_tpus_out_of_range_is_an_error() -> None:
    t = synthetic_table([1], [0], [0], [0], capacity=1)
    with pytest.raises(TpuplanError, match="1 to 64 TPUs"):
        solve_replicated(t, 65)


def _bounds(cuts: list[int], n: int) -> list[tuple[int, int]]:
    return list(zip([0, *(c + 1 for c in cuts)], [*cuts, n - 1], strict=True))
