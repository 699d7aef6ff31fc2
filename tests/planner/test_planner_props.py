"""Property tests on random small cost tables: CP-SAT + tie-break == brute force, reference == brute force,
for every objective (least period, least latency, a batch of N), one or two kinds of device, and tables
with no structure at all.

Tables are built from random integers with small ranges (many ties, so the tie-break is exercised), memory
caps that bind (so the on-chip rule matters), stages that hold no Edge TPU op (so validity matters), and
serialized and bus times (so the period can be set by a sum over stages instead of the slowest stage).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tpuplan.planner.costs import Goal
from tpuplan.planner.search.engine import reference_solve, solve_tables
from tpuplan.planner.search.labels import _PAIRWISE_CHUNK, _dominated
from tpuplan.planner.search.reference import brute_force, fewest_onchip_stages
from tpuplan.planner.synthetic import synthetic_table
from tpuplan.profiles.pricing.formula import STAGE_VALUES
from tpuplan.profiles.pricing.tables import StageCostTable

GOALS = st.sampled_from([Goal(), Goal("latency"), Goal("throughput", 5), Goal("latency", 3), Goal("throughput", 1)])


@st.composite
def cost_table(draw: st.DrawFn, n: int, name: str = "t") -> StageCostTable:
    """Scales drawn per table: sometimes every number is 0..3 (ties everywhere), sometimes the serialized
    and bus sums are as large as the stage times (the period is then a sum, and either sum can bind)."""
    scale = draw(st.sampled_from([3, 40]))
    sums = draw(st.sampled_from([0, 3, 40]))

    def ints(hi: int) -> st.SearchStrategy[list[int]]:
        return st.lists(st.integers(0, hi), min_size=n, max_size=n)

    cached = draw(ints(60))
    return synthetic_table(
        draw(ints(scale)),
        draw(ints(scale)),
        cached,
        draw(ints(scale)),
        capacity=draw(st.integers(0, max(sum(cached), 1))),
        overhead=draw(st.integers(0, scale)),
        model_out=draw(ints(3)),
        serial=draw(ints(sums)),
        serial_fixed=draw(st.integers(0, sums)),
        bus=draw(ints(sums)),
        oneoff=draw(ints(scale)),
        tpu=draw(st.lists(st.booleans(), min_size=n, max_size=n).filter(any)),
        cut_serial=draw(ints(sums)),
        cut_bus=draw(ints(sums)),
        name=name,
    )


@st.composite
def free_table(draw: st.DrawFn, n: int) -> StageCostTable:
    """No structure at all: every stage a..b has its own random numbers."""

    def matrix(hi: int) -> np.ndarray:
        values = draw(st.lists(st.integers(0, hi), min_size=n * n, max_size=n * n))
        return np.triu(np.array(values, dtype=np.int64).reshape(n, n))

    upper = np.triu(np.ones((n, n), dtype=np.bool_))
    valid = upper & np.array(draw(st.lists(st.booleans(), min_size=n * n, max_size=n * n))).reshape(n, n)
    valid |= np.eye(n, dtype=np.bool_)  # every single op may be a stage: some plan always exists
    onchip = valid & np.array(draw(st.lists(st.booleans(), min_size=n * n, max_size=n * n))).reshape(n, n)
    hi = draw(st.sampled_from([3, 60]))
    values = {name: matrix(hi) for name in STAGE_VALUES}
    return StageCostTable.dense("free", "edgetpu", n, values, valid, onchip)


@st.composite
def instance(draw: st.DrawFn, *, hetero: bool = False, free: bool = False) -> list[StageCostTable]:
    n = draw(st.integers(1, 9))
    k = draw(st.integers(1, min(n, 4)))
    make = free_table if free else cost_table
    pool = [draw(make(n))] + ([draw(make(n))] if hetero else [])
    return [pool[draw(st.integers(0, len(pool) - 1))] for _ in range(k)]


def _check(tables: list[StageCostTable], goal: Goal, allow_spill: bool) -> None:
    try:
        out = solve_tables(tables, goal, allow_spill=allow_spill, workers=1)
    except Exception as exc:  # no plan: then brute force finds none either
        assert "no plan over" in str(exc)
        assert brute_force(tables, goal, onchip=False) is None
        return
    best = brute_force(tables, goal, onchip=out.onchip)
    assert best is not None
    assert out.status == "OPTIMAL" and out.proven
    assert out.objective == best[0]
    assert out.cuts == best[2]  # least secondary, then smallest cuts: the pinned tie-break
    if not allow_spill:  # the on-chip rule is imposed exactly when some plan keeps everything on chip
        assert out.onchip == (brute_force(tables, goal, onchip=True) is not None)
    ref = reference_solve(tables, goal, onchip=out.onchip)
    assert ref is not None and ref.proven and ref.objective == best[0]


@settings(max_examples=250, deadline=None)
@given(instance(), GOALS, st.booleans())
def test_cpsat_equals_brute_force(tables: list[StageCostTable], goal: Goal, allow_spill: bool) -> None:
    _check(tables, goal, allow_spill)


@settings(max_examples=120, deadline=None)
@given(instance(hetero=True), GOALS, st.booleans())
def test_cpsat_equals_brute_force_two_devices(tables: list[StageCostTable], goal: Goal, allow_spill: bool) -> None:
    _check(tables, goal, allow_spill)


@settings(max_examples=150, deadline=None)
@given(instance(free=True), GOALS, st.booleans())
def test_tables_without_structure(tables: list[StageCostTable], goal: Goal, allow_spill: bool) -> None:
    _check(tables, goal, allow_spill)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 9).flatmap(lambda n: cost_table(n)))
def test_fewest_onchip_stages_is_the_minimum(table: StageCostTable) -> None:
    need = fewest_onchip_stages([table])
    fits = [k for k in range(1, table.n + 1) if brute_force([table] * k, Goal(), onchip=True) is not None]
    assert need == (min(fits) if fits else None)


def test_period_set_by_two_sums_seeded() -> None:
    """Both the serialized and the bus sums move with the cuts and trade against each other: the
    reference must keep every (S, V) pair that could still finish under the period (hypothesis rarely
    draws such tables, so 300 seeded ones)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(3, 9))
        k = int(rng.integers(2, min(n, 4) + 1))

        def r(hi: int, n: int = n) -> list[int]:
            return [int(x) for x in rng.integers(0, hi + 1, n)]

        table = synthetic_table(
            r(40),
            r(3),
            r(60),
            r(40),
            capacity=10**6,
            overhead=5,
            serial=r(40),
            serial_fixed=5,
            bus=r(40),
            cut_serial=r(40),
            cut_bus=r(40),
        )
        best = brute_force([table] * k, Goal(), onchip=False)
        ref = reference_solve([table] * k, Goal(), onchip=False)
        assert best is not None and ref is not None and ref.objective == best[0]


def test_front_of_many_labels_equals_pairwise() -> None:
    """The front is cut block by block against the rows kept so far: over several blocks (ties, duplicates,
    long chains of domination) it drops exactly the rows an earlier row matches or beats everywhere."""
    rng = np.random.default_rng(1)
    for _ in range(40):
        n, d = int(rng.integers(1, 3 * _PAIRWISE_CHUNK)), int(rng.integers(3, 5))
        c = rng.integers(0, int(rng.integers(2, 40)), size=(n, d))
        c = c[np.lexsort([c[:, j] for j in reversed(range(d))])]
        pairwise = [bool(((c[:i] <= c[i]).all(axis=1)).any()) for i in range(n)]
        assert _dominated(c).tolist() == pairwise
