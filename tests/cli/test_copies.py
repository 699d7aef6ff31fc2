"""Copies end to end without the shared models: `plan solve --replicate`, `--cuts` with `--copies`,
`plan compare` with and without copies, `plan show` and its PNG, and schema-1 plans read as schema 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_solve import one_line_error, plan
from tpuplan.planner.plan import PLAN_VERSION, load_plan
from tpuplan.planner.plan_v1 import MIGRATED_NOTE
from tpuplan.profiles.tflite.reader import load_model
from tpuplan.runtime.backends.registry import InterpreterStage
from tpuplan.runtime.tensors.inputs import InputSpec, random_input

V1_PLAN = Path(__file__).parents[1] / "data" / "plan_v1_fc600x6.json"


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three equal conv layers: no cut balances them better than copies of the whole model do."""
    path = tmp_path_factory.mktemp("rep") / "conv.tflite"
    assert plan("synth", "conv", "--filters", "64", "--layers", "3", "--size", "32", "-o", path).returncode == 0
    return path


def _solve(*args: str | Path) -> dict[str, object]:
    res = plan("solve", *args, "--json")
    assert res.returncode == 0, res.stderr
    out: dict[str, object] = json.loads(res.stdout)
    return out


def test_replicate_beats_every_plain_plan_and_is_priced_like_cuts(conv_model: Path) -> None:
    rep = _solve(conv_model, "--tpus", "4", "--replicate")
    plain = _solve(conv_model, "--tpus", "4")
    copies = [s["copies"] for s in rep["stages"]]  # type: ignore[attr-defined]
    assert rep["tpus"] == sum(copies) <= 4 and max(copies) > 1
    assert rep["predicted_period_us"] < plain["predicted_period_us"]  # type: ignore[operator]
    assert rep["solver"]["status"] == "OPTIMAL"  # type: ignore[index]
    cuts = ",".join(map(str, rep["cuts"])) or ""  # type: ignore[call-overload]
    priced = _solve(
        conv_model, *(["--cuts", cuts] if cuts else ["--cuts", "none"]), "--copies", ",".join(map(str, copies))
    )
    assert priced["predicted_period_us"] == rep["predicted_period_us"]
    assert priced["tpus"] == rep["tpus"]


@pytest.mark.parametrize(
    ("args", "text", "code"),
    [
        (["--cuts", "2", "--replicate"], "--replicate chooses the cuts and the copies", 2),
        (["--tpus", "4", "--replicate", "--objective", "latency"], "least period", 2),
        (["--tpus", "4", "--replicate", "--batch", "10"], "least period", 2),
        (["--tpus", "4", "--copies", "2,2"], "--copies of several stages prices given cuts", 2),
        (["--cuts", "2", "--copies", "0,2"], "at least 1 per stage", 1),
        (["--cuts", "2", "--copies", "1,2,3"], "3 copy counts given for 2 stages", 1),
        (["--tpus", "2", "--cuts", "2", "--copies", "1,2"], "use 3 TPUs, not 2", 2),
        (["--tpus", "3", "--cuts", "2"], "1 cuts given for 3 TPUs", 2),
        (["--tpus", "65", "--replicate"], "1 to 64 TPUs", 1),
    ],
)
def test_bad_copy_options_are_one_line_errors(conv_model: Path, args: list[str], text: str, code: int) -> None:
    """Flags that contradict each other are usage errors (exit 2); numbers the planner refuses, 1."""
    res = plan("solve", conv_model, *args)
    one_line_error(res, text, code)
    assert text in res.stderr


def test_compare_shows_the_plan_with_copies(conv_model: Path) -> None:
    res = plan("compare", conv_model, "--tpus", "4", "--json")
    assert res.returncode == 0, res.stderr
    entries = {e["name"]: e for e in json.loads(res.stdout)["entries"]}
    copied, plain = entries["tpuplan with copies"], entries["tpuplan"]
    assert max(copied["copies"]) > 1 and copied["predicted_period_us"] < plain["predicted_period_us"]
    table = plan("compare", conv_model, "--tpus", "4")
    assert "tpuplan with copies" in table.stdout and "copies" in table.stdout.splitlines()[2]
    latency = json.loads(plan("compare", conv_model, "--tpus", "4", "--objective", "latency", "--json").stdout)
    assert "tpuplan with copies" not in {e["name"] for e in latency["entries"]}
    assert any("not shown" in n for n in latency["notes"])


def test_show_and_png_say_copies(conv_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    assert plan("solve", conv_model, "--tpus", "4", "--replicate", "-o", path).returncode == 0
    shown = plan("show", path)
    assert shown.returncode == 0 and "TPUs" in shown.stdout and "every ms" in shown.stdout
    assert "stage 0 on" in shown.stdout
    pytest.importorskip("matplotlib")
    png = tmp_path / "plan.png"
    assert plan("show", path, "--png", png).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schema_1_plan_is_read_as_the_current_schema(tmp_path: Path) -> None:
    old = json.loads(V1_PLAN.read_text())
    new = load_plan(V1_PLAN)
    assert old["schema_version"] == 1 and new.schema_version == PLAN_VERSION == 3
    assert new.cuts == old["cuts"] and new.tpus == old["tpus"] and [s.copies for s in new.stages] == [1, 1]
    assert new.predicted_period_us == old["predicted_bottleneck_us"]
    assert [s.predicted_us for s in new.stages] == [s["predicted_us"] for s in old["stages"]]
    assert new.devices[0].link.in_us_per_kib == pytest.approx(1024 / old["devices"][0]["link_bytes_per_us"])
    assert MIGRATED_NOTE in new.notes
    model = tmp_path / "fc.tflite"  # the model the old plan was made for, made again byte for byte
    assert plan("synth", "fc", "--width", "600", "--depth", "6", "-o", model).returncode == 0
    split = plan("split", model, V1_PLAN, "-o", tmp_path / "seg")
    assert split.returncode == 0, split.stderr
    assert len(list((tmp_path / "seg").glob("*.tflite"))) == 2


def test_broken_schema_1_plan_is_a_one_line_error(tmp_path: Path) -> None:
    old = json.loads(V1_PLAN.read_text())
    del old["predicted_bottleneck_us"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    res = plan("show", path)
    one_line_error(res, "")
    assert str(path) in res.stderr and "schema-1" in res.stderr


def test_replicated_plan_runs_bit_identical_and_in_order(conv_model: Path, tmp_path: Path) -> None:
    """The done-when of the runtime part: a plan with copies, split (each stage once), run on the CPU
    backend with one interpreter per copy; outputs equal the unsplit model's, in input order."""
    plan_path, segs = tmp_path / "plan.json", tmp_path / "segs"
    assert plan("solve", conv_model, "--tpus", "4", "--replicate", "-o", plan_path).returncode == 0
    copies = [s.copies for s in load_plan(plan_path).stages]
    assert max(copies) > 1
    assert plan("split", conv_model, plan_path, "-o", segs).returncode == 0
    manifest = json.loads((segs / "manifest.json").read_text())
    assert [s["copies"] for s in manifest["segments"]] == copies
    assert len(list(segs.glob("*.tflite"))) == len(copies)  # each stage written once
    inputs, out = tmp_path / "in.npy", tmp_path / "out.npz"
    model = load_model(conv_model)
    whole = InterpreterStage("whole", model.data)
    (spec,) = [InputSpec.from_details(d) for d in whole.input_details()]
    feeds = np.stack([random_input([spec], np.random.default_rng(i))[spec.name][0] for i in range(40)])
    np.save(inputs, feeds)
    res = plan("run", segs, "--input", inputs, "-o", out, "--json")
    assert res.returncode == 0, res.stderr
    assert [s["copies"] for s in json.loads(res.stdout)["stages"]] == copies
    got = np.load(out)
    (name,) = got.files
    expected = [whole.run({spec.name: feeds[i : i + 1]}) for i in range(len(feeds))]
    whole.close()
    assert all(np.array_equal(got[name][i], next(iter(expected[i].values()))) for i in range(len(feeds)))
    report = plan(  # an Edge TPU plan measured on the CPU: the outputs are what is judged
        "verify", plan_path, "--model", conv_model, "--backend", "cpu", "--inputs", "12", "--json", "--outputs-only"
    )
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["outputs_match"] is True
