"""The planner on real and synthetic models: CP-SAT equals the exact reference, beats the baselines,
is deterministic, respects its time limit, and refuses bad requests with one-line errors.

Only relations between algorithms are asserted, never absolute times: tpuplan/profiles/pricing/opcost.py is recalibrated
independently of these tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ortools.sat.python import cp_model

import tpuplan.planner.search.cpsat as cpsat
import tpuplan.planner.search.engine as engine
from tests.shared_data import MODELS, needs, require
from tpuplan.planner.baselines import baseline_plans, compare, equal_ops_cuts, param_balanced_cuts
from tpuplan.planner.costs import Goal, stage_tables, totals
from tpuplan.planner.plan import Plan, load_plan, stable_json
from tpuplan.planner.plan_build import evaluate
from tpuplan.planner.search.engine import reference_solve, solve_tables
from tpuplan.planner.search.reference import brute_force
from tpuplan.planner.solve import solve, solve_auto
from tpuplan.planner.synthetic import random_table, synthetic_table
from tpuplan.profiles.build import build_profile, price
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec, preset
from tpuplan.profiles.pricing.formula import LinkCost
from tpuplan.profiles.pricing.host import resolve_host
from tpuplan.profiles.pricing.tables import stage_table
from tpuplan.profiles.tflite.reader import load_model

SMALL = MODELS / "mobilenet_v1_0.25_128_quant.tflite"


def _cpu_models() -> list[Path]:
    if not MODELS.is_dir():
        return []
    return sorted(p for p in MODELS.glob("*.tflite") if not p.name.endswith("_edgetpu.tflite"))


@cache
def _profile(path: Path) -> Profile | None:
    try:
        return build_profile(load_model(path), preset("edgetpu-usb"))
    except TpuplanError:
        return None


def real_profile(path: Path) -> Profile:
    require(path)
    prof = _profile(path)
    if prof is None:
        pytest.skip(f"{path.name} does not load")
    return prof


def small_device(prof: Profile, parts: int | None) -> DeviceSpec:
    """A device holding about 1/parts of the model's cached parameters (None: less than any layer)."""
    base = preset("edgetpu-usb").model_copy(update={"io_reserve_frac": 0.0})
    cached = [op.cached_bytes for op in price(prof, base, resolve_host(prof.host)).ops]
    size = max(max(cached), sum(cached) // parts) if parts else max(cached) // 2
    return base.model_copy(update={"name": "small", "onchip_bytes": size, "max_cached_layer_bytes": max(cached)})


def check_plan(plan: Plan) -> None:
    """Internal consistency of a plan document against the cost formulas."""
    assert len(plan.stages) == plan.tpus == len(plan.cuts) + 1 == len(plan.devices) <= plan.tpus_requested
    assert plan.stages[0].first_op == 0 and plan.stages[-1].last_op == plan.n_ops - 1
    for a, b in itertools.pairwise(plan.stages):
        assert b.first_op == a.last_op + 1
    for s in plan.stages:
        terms = s.predicted_terms
        parts = s.part_us("device") + s.part_us("host") + s.part_us("runner")
        assert parts == s.predicted_us == s.predicted_values["time"]
        assert s.part_us("device") == terms["overhead"] + terms["compute"] + terms["spill"] + terms["link"]
        assert (terms["spill"] > 0) <= (not s.fits_on_chip)
        assert s.tpu_ops >= 1  # no TPU for host-only work
    serial = sum(s.predicted_values["serial"] for s in plan.stages)
    bus = max(sum(s.predicted_values[v] for s in plan.stages) for v in ("bus_in", "bus_out"))
    assert plan.predicted_period_us == max(max(s.predicted_us for s in plan.stages), serial, bus)
    assert plan.predicted_latency_us == sum(s.predicted_us for s in plan.stages)
    if plan.goal.objective == "throughput" and plan.goal.batch is None:
        assert plan.solver.objective == plan.predicted_period_us
    assert plan.fits_on_chip == all(s.fits_on_chip for s in plan.stages)


@needs(MODELS)
@pytest.mark.parametrize("path", _cpu_models(), ids=lambda p: p.name.removesuffix(".tflite"))
def test_real_models_cpsat_equals_reference_and_beats_baselines(path: Path) -> None:
    prof = real_profile(path)
    n = len(prof.ops)
    host = resolve_host(prof.host)
    for k in (k for k in (2, 3, 5) if k <= n):
        plan = solve(prof, k)
        check_plan(plan)
        assert plan.solver.status == "OPTIMAL" and plan.solver.proven_optimal
        tables = stage_tables(prof, plan.devices, host)
        ref = reference_solve(tables, Goal(), onchip=plan.fits_on_chip)
        assert ref is not None and ref.objective == plan.solver.objective
        for name, base in baseline_plans(prof, k, None, host, Goal()).items():
            if (plan.fits_on_chip and not base.fits_on_chip) or any(s.tpu_ops == 0 for s in base.stages):
                continue  # a spilling baseline, or one giving a TPU only host work, is another contest
            assert plan.solver.objective <= base.solver.objective, name


def _synth_profiles(tmp_path: Path) -> list[Profile]:
    synth = pytest.importorskip("tpuplan.profiles.synth")
    made: list[Profile] = []
    cases: list[tuple[str, Callable[[], bytes]]] = [
        ("fc1024", lambda: synth.synth_fc(1024)),
        ("fc2048", lambda: synth.synth_fc(2048)),
        ("conv256", lambda: synth.synth_conv(256)),
        ("conv512", lambda: synth.synth_conv(512, layers=8)),
    ]
    for name, make in cases:
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(make())
        made.append(build_profile(load_model(path), preset("edgetpu-usb")))
    return made


def test_synthetic_models_never_worse_than_baselines(tmp_path: Path) -> None:
    for prof in _synth_profiles(tmp_path):
        host = resolve_host(prof.host)
        for k in (k for k in (2, 3, 5) if k <= len(prof.ops)):
            spill = solve(prof, k, allow_spill=True)
            default = solve(prof, k)
            check_plan(spill)
            assert spill.solver.proven_optimal and default.solver.proven_optimal
            assert spill.solver.objective <= default.solver.objective
            for name, base in baseline_plans(prof, k, None, host, Goal()).items():
                if any(s.tpu_ops == 0 for s in base.stages):
                    continue
                assert spill.solver.objective <= base.solver.objective, name
                if base.fits_on_chip or not default.fits_on_chip:
                    assert default.solver.objective <= base.solver.objective, name


def test_memory_binding_default_keeps_on_chip_and_reports_tpus_needed() -> None:
    prof = real_profile(MODELS / "mobilenet_v2_1.0_224_quant.tflite")
    dev = small_device(prof, 3)
    table = stage_table(prof, dev)
    needed = solve(prof, 2, [dev]).tpus_needed_on_chip
    assert needed is not None and needed > 2
    two = solve(prof, 2, [dev])
    assert not two.fits_on_chip and "stream" in two.solver.note
    enough = solve(prof, needed, [dev])
    assert enough.tpus_needed_on_chip == needed
    if enough.tpus == needed:  # all on chip, unless fewer TPUs that stream are predicted faster
        assert enough.fits_on_chip and all(table.fits_on_chip(s.first_op, s.last_op) for s in enough.stages)
    free = solve(prof, needed, [dev], allow_spill=True)
    assert free.solver.objective <= enough.solver.objective


def test_solve_auto_rows_and_choice() -> None:
    prof = real_profile(MODELS / "mobilenet_v2_1.0_224_quant.tflite")
    dev = small_device(prof, 3)
    plan = solve_auto(prof, dev, 6)
    assert plan.curve is not None and [r.tpus for r in plan.curve] == [1, 2, 3, 4, 5, 6]
    assert plan.curve[0].gain_vs_previous is None
    for prev, row in itertools.pairwise(plan.curve):
        assert row.gain_vs_previous == pytest.approx(
            row.predicted_throughput_per_s / prev.predicted_throughput_per_s, rel=1e-3
        )
    best = min(r.objective for r in plan.curve)
    fewest = min(r.tpus for r in plan.curve if r.objective <= best * 1.05)
    assert plan.tpus == fewest and plan.solver.objective == next(r.objective for r in plan.curve if r.tpus == fewest)
    check_plan(plan)
    strict = solve_auto(prof, dev, 6, tolerance=0.0)
    assert strict.solver.objective == best


def test_heterogeneous_devices_match_brute_force() -> None:
    prof = real_profile(SMALL)
    slow = preset("edgetpu-usb").model_copy(
        update={"name": "slow-link", "link": LinkCost(in_us_per_kib=60, out_us_per_kib=60), "invoke_overhead_us": 900.0}
    )
    fast = preset("edgetpu-usb")
    host = resolve_host(prof.host)
    for devs in ([fast, slow], [slow, fast, slow], [fast, fast, slow]):
        tables = stage_tables(prof, devs, host)
        out = solve_tables(tables)
        best = brute_force(tables, Goal(), onchip=out.onchip)
        assert best is not None and out.proven
        assert (out.objective, out.cuts) == (best[0], best[2])
        plan = solve(prof, len(devs), devs)
        check_plan(plan)
        assert [s.device for s in plan.stages] == [d.name for d in devs[: plan.tpus]]
        assert plan.solver.objective <= out.objective


def test_determinism_repeat_and_workers() -> None:
    prof = real_profile(MODELS / "deeplabv3_mnv2_pascal_quant.tflite")
    a = solve(prof, 5, workers=8)
    b = solve(prof, 5, workers=8)
    c = solve(prof, 5, workers=1)
    assert stable_json(a) == stable_json(b) == stable_json(c)
    rng = np.random.default_rng(7)
    table = random_table(rng, 200, tpus=4)
    outs = [solve_tables([table] * 6, workers=w).cuts for w in (8, 1, 8, 2)]
    assert all(o == outs[0] for o in outs)


def test_time_limit_falls_back_to_a_valid_plan() -> None:
    table = random_table(np.random.default_rng(3), 600, tpus=6)
    out = solve_tables([table] * 12, allow_spill=True, time_limit_s=1e-4)
    assert out.status == "FEASIBLE" and not out.proven
    assert len(out.cuts) == 11 and out.cuts == sorted(set(out.cuts))
    assert out.best_bound <= out.objective == totals([table] * 12, out.cuts, Goal()).objective
    prof = real_profile(SMALL)
    plan = solve(prof, 3, time_limit_s=1e-4)
    check_plan(plan)
    assert plan.solver.parameters.time_limit_s == 1e-4


def _patched_run(status_of: Callable[[Any], Any]) -> Callable[..., Any]:
    real = cpsat._run

    def run(solver: Any, model: Any, deadline: float) -> Any:
        return status_of(real(solver, model, deadline))

    return run


def _no_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave every question below the optimum to CP-SAT: no bounds narrow its choices."""
    monkeypatch.setattr(engine, "_question_below", _unpruned)


def _unpruned(problem: Any, found: Any, goal: Any, v: int) -> Any:
    from dataclasses import replace

    return replace(found.question, objective=v), list(found.base)


@pytest.mark.parametrize(
    ("fake", "status", "note"),
    [
        (lambda s: cp_model.UNKNOWN, "REFERENCE", True),  # nothing proven by CP-SAT: the reference's plan
        (lambda s: cp_model.INFEASIBLE, "OPTIMAL", False),  # "nothing better" at every step: proven and pinned
        (lambda s: cp_model.FEASIBLE if s == cp_model.OPTIMAL else s, "OPTIMAL", False),  # found = found
    ],
)
def test_every_cpsat_status_is_handled(
    monkeypatch: pytest.MonkeyPatch, fake: Callable[[Any], Any], status: str, note: bool
) -> None:
    prof = real_profile(SMALL)
    honest = solve(prof, 4)
    _no_bounds(monkeypatch)
    monkeypatch.setattr(cpsat, "_run", _patched_run(fake))
    plan = solve(prof, 4)
    check_plan(plan)
    assert plan.solver.status == status and plan.solver.proven_optimal
    assert plan.solver.objective == honest.solver.objective
    assert bool(plan.solver.note) == note


def test_bounds_alone_prove_a_serialized_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """A period set by host work summed over stages: CP-SAT's relaxation mixes plans and proves slowly, the
    shortest-path bounds of planner.search.prune settle "nothing below" at once (CP-SAT is never asked here)."""
    table = synthetic_table(
        [50] * 12,
        [0] * 12,
        [0] * 12,
        [5] * 12,
        capacity=10,
        overhead=20,
        serial=[30] * 12,
        serial_fixed=40,
        cut_serial=[7] * 12,
    )
    monkeypatch.setattr(cpsat, "_run", lambda *a: pytest.fail("CP-SAT was asked"))
    out = solve_tables([table] * 4, Goal())
    assert out.status == "OPTIMAL" and totals([table] * 4, out.cuts, Goal()).bound == "serialized"
    assert out.objective == brute_force([table] * 4, Goal(), onchip=out.onchip)[0]  # type: ignore[index]


def test_model_invalid_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    prof = real_profile(SMALL)
    _no_bounds(monkeypatch)
    monkeypatch.setattr(cpsat, "_run", _patched_run(lambda s: cp_model.MODEL_INVALID))
    with pytest.raises(TpuplanError, match="internal error"):
        solve(prof, 3)


def test_evaluate_and_baseline_cuts() -> None:
    prof = real_profile(SMALL)
    n = len(prof.ops)
    plan = evaluate(prof, None, [5, 17])
    check_plan(plan)
    assert plan.solver.status == "EVALUATED" and not plan.solver.proven_optimal
    assert [(s.first_op, s.last_op) for s in plan.stages] == [(0, 5), (6, 17), (18, n - 1)]
    table = stage_table(prof)
    assert plan.stages[1].predicted_us == table.stage_time_us(6, 17)
    assert equal_ops_cuts(10, 3) == [2, 5]
    assert param_balanced_cuts([10] * 10, 3) == [2, 5]
    assert param_balanced_cuts([100, 1, 1, 1, 1, 1], 3) == [0, 4]
    cmp = compare(prof, 3)
    assert cmp.entries[0].name == "tpuplan" and cmp.entries[0].speedup_of_ours == 1.0
    assert all(e.speedup_of_ours >= 1.0 for e in cmp.entries if "copies" not in e.name and "each of" not in e.name)
    copied = next(e for e in cmp.entries if e.name == "tpuplan with copies")  # plain plans are plans with copies
    assert copied.speedup_of_ours <= 1.0 and copied.tpus <= 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: solve(p, 0), "at least 1"),
        (lambda p: solve(p, 10_000), "more than the"),
        (lambda p: solve(p, 3, [preset("edgetpu-usb")] * 2), "2 devices given for 3 TPUs"),
        (lambda p: solve(p, 3, time_limit_s=0), "time limit"),
        (lambda p: solve(p, 3, workers=0), "workers"),
        (lambda p: evaluate(p, None, [4, 3]), "strictly increasing"),
        (lambda p: evaluate(p, None, [-1]), "out of range"),
        (lambda p: evaluate(p, None, [len(p.ops) - 1]), "out of range"),
        (lambda p: solve_auto(p, None, 0), "max_tpus"),
    ],
)
def test_errors_are_one_line(call: Callable[[Profile], Any], message: str) -> None:
    prof = real_profile(SMALL)
    with pytest.raises(TpuplanError, match=message) as info:
        call(prof)
    assert "\n" not in str(info.value)


def test_profile_for_another_model(tmp_path: Path) -> None:
    from tpuplan.planner.plan_build import check_profile_matches

    prof = real_profile(SMALL)
    check_profile_matches(prof, SMALL.read_bytes(), str(SMALL))
    with pytest.raises(TpuplanError, match="another model"):
        check_profile_matches(prof, b"not the same model", "other.tflite")


def test_plan_document_roundtrip(tmp_path: Path) -> None:
    prof = real_profile(SMALL)
    plan = solve(prof, 3)
    write_doc(tmp_path / "plan.json", plan)
    assert load_plan(tmp_path / "plan.json") == plan
    write_doc(tmp_path / "profile.json", prof)
    with pytest.raises(TpuplanError, match=r"not a tpuplan\.plan document"):
        load_plan(tmp_path / "profile.json")


def test_auto_curve_never_worse_with_more_tpus_and_deterministic(tmp_path: Path) -> None:
    """R20: row K is the best plan over at most K TPUs (never worse than row K-1), every row says whether
    it is proven, and the same input gives the same plan."""
    synth = pytest.importorskip("tpuplan.profiles.synth")
    path = tmp_path / "fc.tflite"
    path.write_bytes(synth.synth_fc(64, depth=60, weights="zeros"))
    prof = build_profile(load_model(path), preset("edgetpu-usb"), resolve_host("python-threads"))
    runs = [solve_auto(prof, None, 6, host=resolve_host("python-threads")) for _ in range(2)]
    assert stable_json(runs[0]) == stable_json(runs[1])
    curve = runs[0].curve or []
    assert [r.tpus for r in curve] == [1, 2, 3, 4, 5, 6]
    for prev, row in itertools.pairwise(curve):
        assert row.objective <= prev.objective and row.tpus_used is not None and row.tpus_used <= row.tpus
    assert all(r.proven_optimal for r in curve)
    cut = solve_auto(prof, None, 6, host=resolve_host("python-threads"), time_limit_s=1e-4)
    unproven = [r.tpus for r in cut.curve or [] if not r.proven_optimal]
    assert unproven and any(f"curve row(s) {','.join(map(str, unproven))}" in n for n in cut.notes)


def test_time_limit_covers_pricing_the_stages(tmp_path: Path) -> None:
    """R31: the limit starts before any stage is priced; out of time, the best plan so far, unproven."""
    synth = pytest.importorskip("tpuplan.profiles.synth")
    path = tmp_path / "fc.tflite"
    path.write_bytes(synth.synth_fc(64, depth=400, weights="zeros"))
    prof = build_profile(load_model(path), preset("edgetpu-usb"))
    plan = solve(prof, 8, time_limit_s=1e-3)
    check_plan(plan)
    assert plan.solver.status == "FEASIBLE" and "time limit" in plan.solver.note
