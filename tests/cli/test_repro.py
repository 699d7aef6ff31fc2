"""Reproducible documents: the same inputs give byte-identical plans and manifests (issue 14, item 4):
the worker count is recorded only with --timings, and `model.path` is the model's file name only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_solve import plan
from tests.shared_data import MODELS, needs
from tpuplan.planner.plan import load_plan, plan_digest

SMALL = MODELS / "mobilenet_v1_0.25_128_quant.tflite"

pytestmark = needs(SMALL)


def _solve(tmp_path: Path, name: str, model: Path | str, *args: str) -> bytes:
    out = tmp_path / name
    res = plan("solve", model, "--tpus", "3", "-o", out, *args)
    assert res.returncode == 0, res.stderr
    return out.read_bytes()


def test_solving_twice_gives_the_same_digest(tmp_path: Path) -> None:
    one = _solve(tmp_path, "w1.json", SMALL, "--workers", "1")
    _solve(tmp_path, "w8.json", SMALL, "--workers", "8")
    assert plan_digest(load_plan(tmp_path / "w1.json")) == plan_digest(load_plan(tmp_path / "w8.json"))
    assert json.loads(one)["solver"]["wall_time_s"] is None  # left out unless --timings
    assert _solve(tmp_path, "again.json", SMALL, "--workers", "1") == one


def test_solve_with_1_and_8_workers_gives_the_same_bytes(tmp_path: Path) -> None:
    one, eight = (_solve(tmp_path, f"w{w}.json", SMALL, "--workers", str(w)) for w in (1, 8))
    assert one == eight


def test_plan_does_not_depend_on_how_the_model_path_was_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = _solve(tmp_path, "abs.json", SMALL)
    monkeypatch.chdir(SMALL.parent)
    assert _solve(tmp_path, "rel.json", SMALL.name) == absolute


def _split(tmp_path: Path, name: str, model: Path | str, plan_path: Path) -> bytes:
    out = tmp_path / name
    res = plan("split", model, plan_path, "-o", out)
    assert res.returncode == 0, res.stderr
    return (out / "manifest.json").read_bytes()


def test_splitting_twice_gives_identical_manifests_recording_the_plan_digest(tmp_path: Path) -> None:
    plan_path = tmp_path / "plan.json"
    plan_path.write_bytes(_solve(tmp_path, "plan.json", SMALL))
    first, second = _split(tmp_path, "a", SMALL, plan_path), _split(tmp_path, "b", SMALL, plan_path)
    assert first == second
    assert json.loads(first)["plan_sha256"] == plan_digest(load_plan(plan_path))


def test_manifest_does_not_depend_on_how_the_model_path_was_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_path = tmp_path / "plan.json"
    plan_path.write_bytes(_solve(tmp_path, "plan.json", SMALL))
    absolute = _split(tmp_path, "abs", SMALL, plan_path)
    monkeypatch.chdir(SMALL.parent)
    assert _split(tmp_path, "rel", SMALL.name, plan_path) == absolute
