"""`plan solve`, `plan compare`, `plan show` through `tpuplan.cli.main`, the console script's entry.

In process for speed (importing ortools costs ~1 s per subprocess); one test runs the installed `plan`
script itself, so exit codes and "one line on stderr" are checked as a user sees them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import plan
from tests.shared_data import MODELS, needs
from tpuplan.planner.plan import load_plan
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.tflite.reader import load_model

MODEL = MODELS / "mobilenet_v1_0.25_128_quant.tflite"
PLAN_BIN = Path(sys.executable).parent / "plan"

pytestmark = needs(MODEL)


def plan_script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = [str(PLAN_BIN)] if PLAN_BIN.is_file() else [sys.executable, "-m", "tpuplan"]
    return subprocess.run([*exe, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def profile_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "profile.json"
    write_doc(path, build_profile(load_model(MODEL), preset("edgetpu-usb")))
    return path


def one_line_error(res: subprocess.CompletedProcess[str], text: str, code: int = 1) -> None:
    """Exit `code` (1: bad input, 2: usage error) and exactly one line on stderr, the error."""
    assert res.returncode == code, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plan: error:"), res.stderr
    assert text in lines[0]


def test_console_script() -> None:
    res = plan_script("solve", MODEL, "--tpus", "3")
    assert res.returncode == 0, res.stderr
    assert "OPTIMAL (proven)" in res.stdout
    one_line_error(plan_script("solve", MODEL, "--tpus", "0"), "at least 1")


def test_solve_model_prints_table() -> None:
    res = plan("solve", MODEL, "--tpus", "3", "--host", "pycoral")
    assert res.returncode == 0, res.stderr
    assert "OPTIMAL (proven)" in res.stdout and "period" in res.stdout and "latency" in res.stdout
    assert res.stdout.count("edgetpu-usb") >= 2 and "host pycoral" in res.stdout


def test_solve_json_output_show_roundtrip(profile_json: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    res = plan("solve", profile_json, "-k", "4", "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["kind"] == "tpuplan.plan" and doc["tpus_requested"] == 4
    assert 1 <= doc["tpus"] <= 4 and len(doc["cuts"]) == doc["tpus"] - 1
    assert out.read_text() == res.stdout
    assert load_plan(out).solver.proven_optimal
    shown = plan("show", out)
    assert shown.returncode == 0 and "OPTIMAL (proven)" in shown.stdout
    assert plan("show", out, "--json").stdout == out.read_text()
    again = plan("solve", profile_json, "-k", "4", "-o", out)
    one_line_error(again, "already exists")
    assert plan("solve", profile_json, "-k", "4", "-o", out, "--force").returncode == 0


def test_cuts_are_evaluated(profile_json: Path) -> None:
    res = plan("solve", profile_json, "--cuts", "5,17", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["cuts"] == [5, 17] and doc["solver"]["status"] == "EVALUATED"


def test_auto_and_devices(profile_json: Path) -> None:
    res = plan("solve", profile_json, "--tpus", "auto", "--max-tpus", "3", "--json")
    assert res.returncode == 0, res.stderr
    assert [r["tpus"] for r in json.loads(res.stdout)["curve"]] == [1, 2, 3]
    args = ["-k", "2", "--device", "edgetpu-usb,cpu", "--host", "pycoral", "--in-order", "--json"]
    res = plan("solve", profile_json, *args)
    assert res.returncode == 0, res.stderr
    stages = [s["device"] for s in json.loads(res.stdout)["stages"]]
    assert stages == ["edgetpu-usb", "cpu"][: len(stages)]
    res = plan("solve", profile_json, "-k", "2", "-d", "edgetpu-usb", "-d", "cpu", "--in-order", "--json")
    names = [d["name"] for d in json.loads(res.stdout)["devices"]]
    assert names == ["edgetpu-usb", "cpu"][: len(names)]
    pooled = json.loads(plan("solve", profile_json, "-k", "2", "-d", "edgetpu-usb,cpu", "--json").stdout)
    names = [d["name"] for d in pooled["devices"]]  # a pool: the planner picks, each device at most once
    assert sorted(names) == sorted(set(names)) and set(names) <= {"edgetpu-usb", "cpu"}
    assert any("pool 1x edgetpu-usb, 1x cpu" in note for note in pooled["notes"])


def test_compare(profile_json: Path) -> None:
    res = plan("compare", profile_json, "--tpus", "3")
    assert res.returncode == 0, res.stderr
    assert "compiler --num_segments" in res.stdout and "single TPU" in res.stdout
    doc = json.loads(plan("compare", profile_json, "--tpus", "3", "--json").stdout)
    assert doc["kind"] == "tpuplan.comparison" and doc["entries"][0]["name"] == "tpuplan"


@pytest.mark.parametrize(
    ("args", "text", "code"),
    [
        (["--tpus", "0"], "at least 1", 1),
        (["--tpus", "1000"], "more than the", 1),
        (["--tpus", "many"], "number or 'auto'", 2),
        (["--cuts", "9,4"], "strictly increasing", 1),
        (["--cuts", "3,999"], "out of range", 1),
        (["--cuts", "3,x"], "comma-separated", 2),
        (["--cuts", "3,9", "--tpus", "4"], "2 cuts given for 4 TPUs", 2),
        (["--tpus", "3", "--device", "edgetpu-usb,edgetpu-usb"], "3 TPUs asked, but the pool has 2", 1),
        (["--tpus", "3", "--device", "edgetpu-usb,cpu", "--in-order"], "2 devices given for 3 TPUs", 1),
        (["--tpus", "3", "--device", "nosuchdevice"], "unknown device preset", 1),
        (["--tpus", "3", "--time-limit", "0"], "time-limit", 2),
        ([], "give --tpus", 2),
    ],
)
def test_solve_errors_are_one_line(profile_json: Path, args: list[str], text: str, code: int) -> None:
    """A flag's value or flags that contradict each other: exit 2; what the profile cannot do: exit 1."""
    one_line_error(plan("solve", profile_json, *args), text, code)


def test_wrong_documents(profile_json: Path, tmp_path: Path) -> None:
    one_line_error(plan("show", profile_json), "not a tpuplan.plan document")
    plan_json = tmp_path / "p.json"
    assert plan("solve", profile_json, "-k", "2", "-o", plan_json).returncode == 0
    one_line_error(plan("solve", plan_json, "-k", "2"), "not a tpuplan.profile document")
    one_line_error(plan("solve", tmp_path / "missing.json", "-k", "2"), "no such file")
    other = tmp_path / "other.tflite"
    other.write_bytes(b"something else")
    one_line_error(plan("solve", profile_json, "-k", "2", "--model", other), "another model")
    one_line_error(plan("solve", tmp_path / "model.onnx", "-k", "2"), "expected a profile")
