"""A pool of mixed devices: the planner chooses which device runs which stage (and, with copies, how many
copies each stage gets), proves the optimum over every assignment, and is never worse than any fixed
order of the same devices. Checked against a brute force over every plan on small random tables."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.common import MODELS
from tests.planner.test_planner_props import GOALS, cost_table
from tpuplan.planner.costs import Goal, totals
from tpuplan.planner.devices import DeviceSet
from tpuplan.planner.search.engine import optimize, secondary_rank
from tpuplan.planner.search.problem import Option, Problem
from tpuplan.planner.search.replicate import COPIES_RANK
from tpuplan.planner.solve import solve, solve_set
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.formula import LinkCost
from tpuplan.profiles.pricing.plancost import stage_pairs
from tpuplan.profiles.pricing.tables import StageCostTable
from tpuplan.profiles.tflite.reader import load_model

Key = tuple[int, int, int, int, list[tuple[int, int, int]]]


def brute(
    tables: list[StageCostTable], counts: list[int], k: int, goal: Goal, *, onchip: bool, copies: bool
) -> Key | None:
    """The least (J, TPUs or stages, -stages or secondary, secondary, [(end, kind, copies)]) over every
    plan of at most k TPUs (stages without copies) with at most counts[kind] devices of a kind."""
    n, best = tables[0].n, None
    for stages in range(1, k + 1):
        for cuts in itertools.combinations(range(n - 1), stages - 1):
            pairs = stage_pairs(list(cuts), n)
            for kinds in itertools.product(range(len(tables)), repeat=stages):
                if not all(
                    tables[kd].is_valid(a, b) and (not onchip or tables[kd].fits_on_chip(a, b))
                    for kd, (a, b) in zip(kinds, pairs, strict=True)
                ):
                    continue
                for reps in itertools.product(range(1, k + 1), repeat=stages) if copies else [(1,) * stages]:
                    use = Counter()
                    for kd, r in zip(kinds, reps, strict=True):
                        use[kd] += r
                    if sum(reps) > k or any(use[kd] > c for kd, c in enumerate(counts)):
                        continue
                    tot = totals([tables[kd] for kd in kinds], list(cuts), goal, list(reps) if copies else None)
                    second = tot.latency_us if goal.objective == "throughput" else tot.period_us
                    ends = [b for _, b in pairs]
                    order = list(zip(ends, kinds, reps, strict=True))
                    key: Key = (
                        (tot.objective, sum(reps), -stages, second, order)
                        if copies
                        else (tot.objective, stages, second, 0, order)
                    )
                    if best is None or key < best:
                        best = key
    return best


def _pool(tables: list[StageCostTable], counts: list[int], k: int, copies: bool) -> Problem:
    budget = k if copies and k < sum(counts) else None
    layers = (tuple(range(len(tables))),) * min(k, sum(counts), tables[0].n)
    options = tuple(Option(t, kd) for kd, t in enumerate(tables))
    return Problem(options, layers, True, tuple(counts), copies, False, (), budget)


@st.composite
def pool_case(draw: st.DrawFn) -> tuple[list[StageCostTable], list[int], int, bool]:
    n = draw(st.integers(1, 6))
    tables = [draw(cost_table(n, name=f"kind{j}")) for j in range(2)]
    counts = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    copies = draw(st.booleans())
    k = draw(st.integers(1, sum(counts)))
    return tables, counts, k, copies


@settings(max_examples=150, deadline=None)
@given(pool_case(), GOALS, st.booleans())
def test_pool_equals_brute_force(
    case: tuple[list[StageCostTable], list[int], int, bool], goal: Goal, spill: bool
) -> None:
    tables, counts, k, copies = case
    if copies:
        goal = Goal()  # copies are planned for the least period
    rank = COPIES_RANK if copies else ("stages", *secondary_rank(goal))
    try:
        out = optimize(_pool(tables, counts, k, copies), goal, rank=rank, allow_spill=spill)
    except TpuplanError as exc:
        assert "no plan over" in str(exc)
        assert brute(tables, counts, k, goal, onchip=False, copies=copies) is None
        return
    onchip = not spill and brute(tables, counts, k, goal, onchip=True, copies=copies) is not None
    best = brute(tables, counts, k, goal, onchip=onchip, copies=copies)
    assert best is not None and out.status == "OPTIMAL" and out.onchip == onchip
    ends = [*out.cuts, tables[0].n - 1]
    order = list(zip(ends, out.options, out.copies, strict=True))
    assert out.objective == best[0] and order == best[4]
    if copies:
        return
    for fixed in set(itertools.permutations([kd for kd, c in enumerate(counts) for _ in range(c)])):
        order = [Option(tables[kd], 0) for kd in fixed[: min(k, tables[0].n)]]
        in_order = Problem(tuple(order), tuple((s,) for s in range(len(order))), True)
        try:
            fixed_out = optimize(in_order, goal, rank=rank, allow_spill=spill, prove=False)
        except TpuplanError:
            continue
        assert out.objective <= fixed_out.objective or (out.onchip and not fixed_out.onchip)


def test_mixed_pool_on_a_real_model_beats_every_order() -> None:
    """The issue's case: one PCIe card and one USB Accelerator. Given in either order, the pool gives one
    plan, no worse than either fixed order, and its devices run the stages it says."""
    path = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
    if not path.is_file():
        return
    prof = build_profile(load_model(Path(path)), preset("edgetpu-usb"))
    usb, pci = preset("edgetpu-usb"), preset("edgetpu-pci")
    a = solve_set(prof, DeviceSet.pool([(usb, 1), (pci, 1)]), 2)
    b = solve_set(prof, DeviceSet.pool([(pci, 1), (usb, 1)]), 2)
    assert a.predicted_period_us == b.predicted_period_us and a.solver.proven_optimal
    for order in ([usb, pci], [pci, usb]):
        fixed = solve(prof, 2, order)
        assert a.predicted_period_us <= fixed.predicted_period_us
    slow = usb.model_copy(update={"name": "slow", "link": LinkCost(in_us_per_kib=80, out_us_per_kib=80)})
    mixed = solve_set(prof, DeviceSet.pool([(slow, 2), (pci, 1)]), 3)
    assert Counter(d.name for d in mixed.devices)["edgetpu-pci"] <= 1
    assert [s.device for s in mixed.stages] == [d.name for d in mixed.devices]
    kinds = [slow, pci]
    for perm in set(itertools.permutations([0, 0, 1])):
        assert mixed.predicted_period_us <= solve(prof, 3, [kinds[j] for j in perm]).predicted_period_us


def test_data_parallel_in_compare_and_auto() -> None:
    """The issue's case: MobileNet v2 fits on one TPU, so `compare` shows the whole model on each of K TPUs
    for K = 2..8, and `--tpus auto --replicate` picks it when it is best (pycoral host: no serialized
    host work, so K copies divide the period by K)."""
    from tpuplan.planner.baselines import compare
    from tpuplan.planner.solve import solve_auto
    from tpuplan.profiles.pricing.host import host_preset

    path = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
    if not path.is_file():
        return
    prof = build_profile(load_model(Path(path)), preset("edgetpu-usb"))
    for k in range(2, 9):
        cmp = compare(prof, k)
        row = next(e for e in cmp.entries if e.name == f"whole model on each of {k} TPUs")
        assert row.copies == [k] and row.cuts == [] and row.tpus == k
    host = host_preset("pycoral")
    auto = solve_auto(prof, DeviceSet((preset("edgetpu-usb"),), copies=True), 8, host=host)
    assert [s.copies for s in auto.stages] == [auto.tpus] and auto.tpus > 1
    assert (auto.curve or [])[-1].shape == "whole model on each of 8 TPUs (data parallel)"
    assert any("data parallel" in note and "period" in note and "latency" in note for note in auto.notes)
