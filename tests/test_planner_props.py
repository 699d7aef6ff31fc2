"""Property tests on random small cost tables: CP-SAT + tie-break == brute force, reference == brute force.

Tables are built from random integers with small ranges (many ties, so the tie-break is exercised) and
memory caps that bind (so the on-chip rule and the spill term both matter).
"""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from tpuplan.planner.reference import brute_force, fewest_onchip_stages, reference_solve
from tpuplan.planner.solve import solve_tables
from tpuplan.planner.synthetic import synthetic_table
from tpuplan.profiles.stagecost import StageCostTable


@st.composite
def cost_table(draw: st.DrawFn, n: int, name: str = "t") -> StageCostTable:
    ints = st.lists(st.integers(0, 40), min_size=n, max_size=n)
    cached = draw(st.lists(st.integers(0, 60), min_size=n, max_size=n))
    return synthetic_table(
        draw(ints),
        draw(st.lists(st.integers(0, 30), min_size=n, max_size=n)),
        cached,
        draw(ints),
        capacity=draw(st.integers(0, max(sum(cached), 1))),
        overhead=draw(st.integers(0, 15)),
        model_out=draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)),
        name=name,
    )


@st.composite
def instance(draw: st.DrawFn, *, hetero: bool = False, irregular: bool = False) -> list[StageCostTable]:
    n = draw(st.integers(1, 12))
    k = draw(st.integers(1, min(n, 4)))
    first = draw(cost_table(n, "a"))
    pool = [first, draw(cost_table(n, "b"))] if hetero else [first]
    if irregular:  # last_cached and streaming not monotone: the reference's general path
        lc = [draw(st.integers(a - 1, n - 1)) for a in range(n)]
        stream = [0]
        for _ in range(n):
            stream.append(stream[-1] + draw(st.integers(-20, 30)))
        pool = [dataclasses.replace(t, last_cached=lc, stream_prefix=stream) for t in pool]
    return [pool[draw(st.integers(0, len(pool) - 1))] for _ in range(k)]


def _check(tables: list[StageCostTable], allow_spill: bool) -> None:
    out = solve_tables(tables, allow_spill=allow_spill, workers=1)
    best = brute_force(tables, onchip=out.onchip)
    assert best is not None
    assert out.status == "OPTIMAL" and out.proven
    assert out.objective == best[0]
    assert out.cuts == best[2]  # least total time, then smallest cuts: the pinned tie-break
    if not allow_spill:  # the on-chip rule is imposed exactly when some plan keeps everything on chip
        assert out.onchip == (brute_force(tables, onchip=True) is not None)
    ref = reference_solve(tables, onchip=out.onchip)
    assert ref is not None and ref.proven and ref.bottleneck == best[0]


@settings(max_examples=300, deadline=None)
@given(instance(), st.booleans())
def test_cpsat_equals_brute_force(tables: list[StageCostTable], allow_spill: bool) -> None:
    _check(tables, allow_spill)


@settings(max_examples=150, deadline=None)
@given(instance(hetero=True), st.booleans())
def test_cpsat_equals_brute_force_two_devices(tables: list[StageCostTable], allow_spill: bool) -> None:
    _check(tables, allow_spill)


@settings(max_examples=150, deadline=None)
@given(instance(irregular=True), st.booleans())
def test_irregular_tables(tables: list[StageCostTable], allow_spill: bool) -> None:
    _check(tables, allow_spill)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 12).flatmap(lambda n: cost_table(n)))
def test_fewest_onchip_stages_is_the_minimum(table: StageCostTable) -> None:
    need = fewest_onchip_stages([table])
    fits = [k for k in range(1, table.n + 1) if brute_force([table] * k, onchip=True) is not None]
    assert need == (fits[0] if fits else None)
