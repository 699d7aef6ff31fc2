"""Stateful models through the CLI: `plan inspect` and `plan solve` say so in one line, --state and
--no-state change what is planned, and `plan split` / `plan run` refuse copies of a stage that holds
state (R18: keras_lstm on four copies gave different outputs from the model's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.common import MODELS
from tests.cli.test_solve import one_line_error, plan
from tests.model_builders import state_pair_model

LSTM = MODELS / "keras_lstm_mnist_ptq.tflite"


@pytest.fixture(scope="module")
def pair_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("state") / "pair.tflite"
    path.write_bytes(state_pair_model())
    return path


def test_inspect_and_solve_say_stateful(pair_model: Path) -> None:
    shown = plan("inspect", pair_model)
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "stateful:" in line]
    assert len(lines) == 1 and "state -> init_state" in lines[0]
    solved = plan("solve", pair_model, "--tpus", "4", "--replicate")
    assert solved.returncode == 0, solved.stderr
    assert sum("stateful:" in line for line in solved.stdout.splitlines()) == 1
    none = plan("inspect", pair_model, "--no-state")
    assert none.returncode == 0 and "stateful:" not in none.stdout


def test_state_options(pair_model: Path) -> None:
    res = plan("solve", pair_model, "--tpus", "3", "--no-state", "--state", "init_state=state", "--json")
    assert res.returncode == 0, res.stderr
    (loop,) = json.loads(res.stdout)["state"]
    assert loop["declared"] and loop["names"] == ["init_state", "state"]
    one_line_error(plan("solve", pair_model, "--tpus", "3", "--state", "x=nothing"), "give IN=OUT")


def test_split_and_run_refuse_copies_of_a_stateful_stage(tmp_path: Path) -> None:
    if not LSTM.is_file():
        pytest.skip(f"{LSTM} not found")
    plan_path = tmp_path / "plan.json"
    priced = plan("solve", LSTM, "--cuts", "0,3", "--copies", "1,2,1", "--no-state", "-o", plan_path)
    assert priced.returncode == 0, priced.stderr
    one_line_error(plan("split", LSTM, plan_path, "-o", tmp_path / "segs"), "holds state")
    assert not (tmp_path / "segs").exists()
    one_line_error(plan("solve", LSTM, "--cuts", "0,3", "--copies", "1,2,1"), "runs on 2 copies")
    plain = plan("split", LSTM, "--cuts", "0,3", "-o", tmp_path / "plain")
    assert plain.returncode == 0, plain.stderr
    manifest = tmp_path / "plain" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["segments"][1]["copies"] = 2  # a split edited, or made before splits checked this
    manifest.write_text(json.dumps(doc))
    one_line_error(plan("run", tmp_path / "plain", "-n", "2"), "holds state")
