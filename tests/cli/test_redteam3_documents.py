"""Red-team pass 3 (issue 22), documents and what is checked against them: edited plans, reports and
manifests, schema-1 plans, lax numbers, flags checked before the run. Each test names its finding.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import Inputs, make_inputs, one_line_error, plan
from tpuplan.planner.plan import load_plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.planner.solve import solve
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import load_profile
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite.reader import parse_model
from tpuplan.runtime.pipeline.pycoral import load_pycoral
from tpuplan.runtime.split.write import write_split

V1_PLAN = Path(__file__).resolve().parents[1] / "data" / "plan_v1_fc600x6.json"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("r3docs"))


@pytest.fixture(scope="module")
def copies(inputs: Inputs) -> tuple[Path, Path, Path]:
    """A plan with copies (stage 0 on 2 TPUs), its model and its split."""
    prof = load_profile(inputs.profile)
    with_copies = evaluate(prof, None, [3], copies=[2, 1])
    path = inputs.root / "rplan.json"
    write_doc(path, with_copies)
    write_split(parse_model(inputs.model.read_bytes(), inputs.model), inputs.root / "rsegs", plan=with_copies)
    return path, inputs.model, inputs.root / "rsegs"


def _edited(path: Path, tmp_path: Path, edit: Any, name: str = "edited.json") -> Path:
    doc = json.loads(path.read_text())
    edit(doc)
    out = tmp_path / name
    out.write_text(json.dumps(doc, allow_nan=True))
    return out


def test_r08_tolerance_has_one_range_checked_before_the_run(inputs: Inputs) -> None:
    """R08: `--tolerance 100` was accepted, then the report refused it after the whole verification."""
    for value in ("100", "10.5", "nan"):
        res = plan("verify", inputs.plan, "--model", inputs.model, "--tolerance", value)
        assert res.returncode == 2 and "--tolerance" in res.stderr and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("predicted_compute_us", float("nan"), "predicted_compute_us must be an integer"),
        ("predicted_compute_us", float("inf"), "predicted_compute_us must be an integer"),
        ("predicted_compute_us", "abc", "predicted_compute_us must be an integer"),
        ("predicted_overhead_us", "x", "predicted_overhead_us must be a finite number"),
        ("link_bytes_per_us", "fast", "link_bytes_per_us must be a finite number"),
        ("op_costs", "abc", "op_costs must be an object"),
        ("n_ops", "HUGE", "a number of 5,000 digits is out of range"),
    ],
)
def test_r10_edited_schema_1_plans_are_one_line(tmp_path: Path, where: str, value: object, message: str) -> None:
    """R10: NaN, infinity, strings and objects in a schema-1 plan crashed its migration (ValueError,
    OverflowError); a 5,000-digit number was called 'older than 2 and cannot be migrated'."""

    def edit(doc: dict[str, Any]) -> None:
        if where in ("link_bytes_per_us", "op_costs"):
            doc["devices"][0][where] = value
        elif where == "n_ops":
            doc[where] = value
        else:
            doc["stages"][0][where] = value

    bad = _edited(V1_PLAN, tmp_path, edit)
    bad.write_text(bad.read_text().replace('"HUGE"', "9" * 5000))
    line = one_line_error(plan("show", bad), message)
    assert "cannot be migrated" not in line and ("invalid schema-1 plan" in line or "n_ops" in line)
    assert not math.isnan(load_plan(V1_PLAN).predicted_throughput_per_s)  # the unedited one still reads


def test_r12_calibrate_host_with_huge_measured_times_is_one_line(inputs: Inputs, tmp_path: Path) -> None:
    """R12: measured_us of 10^10 (the profile reader's bound) made HostOpCost raise a ValidationError."""
    measured = tmp_path / "mprof.json"
    res = plan("profile", inputs.model, "--measure", "--repeats", "1", "-o", measured, "-q")
    assert res.returncode == 0, res.stderr

    def huge(doc: dict[str, Any]) -> None:
        for op in doc["ops"]:
            op["measured_us"] = 1e10

    res = plan("calibrate-host", _edited(measured, tmp_path, huge), "-o", tmp_path / "h.json")
    one_line_error(res, "give a host price out of bounds")
    assert not (tmp_path / "h.json").exists()


def test_r23_run_plan_checks_the_manifest_copies(copies: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """R23: a manifest's copies edited 2 -> 64 ran 64 interpreters under `--plan` without a word."""
    rplan, _, rsegs = copies
    edited = tmp_path / "rsegs2"
    edited.mkdir()
    for f in rsegs.iterdir():
        (edited / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((rsegs / "manifest.json").read_text())
    manifest["segments"][0]["copies"] = 64
    (edited / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(plan("run", edited, "--plan", rplan, "-n", "2"), "but the plan gives the stages [2, 1] copies")
    res = plan("run", rsegs, "--plan", rplan, "-n", "2", "--json")
    assert res.returncode == 0 and [s["copies"] for s in json.loads(res.stdout)["stages"]] == [2, 1], res.stderr


def test_r25_show_checks_the_interval_against_the_copies(copies: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """R25: a plan with stage 0's copies edited (and tpus to match) was shown with the old period."""

    def more(doc: dict[str, Any]) -> None:
        doc["stages"][0]["copies"] += 5
        doc["tpus"] += 5
        doc["tpus_requested"] = doc["tpus"]

    one_line_error(plan("show", _edited(copies[0], tmp_path, more)), "copies the formula gives")


@pytest.mark.parametrize(("flag", "value"), [("--cuts", ""), ("--cuts", ","), ("--copies", "1,,2")])
def test_r26_empty_cuts_and_empty_items_are_refused(inputs: Inputs, flag: str, value: str) -> None:
    """R26: `--cuts ''` was a valid 1-stage plan and `1,,2` was read as `1,2`."""
    args = ["--cuts", "3", "--copies", value] if flag == "--copies" else ["--cuts", value]
    one_line_error(plan("solve", inputs.profile, *args), f"{flag}: empty" if not value else "an empty item", 2)
    ok = plan("solve", inputs.profile, "--cuts", "none", "--json")  # one stage, said on purpose
    assert ok.returncode == 0 and json.loads(ok.stdout)["cuts"] == []
    one_line_error(plan("split", inputs.model, "--cuts", "", "-o", inputs.root / "s"), "--cuts: empty", 2)


def test_r28_a_host_cost_is_never_negative(tmp_path: Path) -> None:
    """R28: 'runner ... -1231.2 us with these' when the stages overlapped; reports carried negatives."""
    from tpuplan.runtime.run import PipelineRun
    from tpuplan.runtime.verify.hostcost import overlapped_us, runner_host

    run = PipelineRun(count=100, wall_s=0.1, cpu_s=0.05, stats=[], latencies_us=[])  # 1000 us per input
    host = runner_host(2, run, [900.0, 900.0])  # the stages alone add to 1800 us: they overlapped
    assert host.real_stage_us == 0 and host.real_stage_cpu_us == 0
    assert overlapped_us(run, [900.0, 900.0]) == pytest.approx(800.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("stage_us", "5"), ("stage_us", True), ("serialized", "0.5"), ("bus_shared", "yes")],
)
def test_lax_numbers_in_documents_are_refused(inputs: Inputs, tmp_path: Path, field: str, value: object) -> None:
    """Section 6: `"stage_us": "5"`, `true` and `"copies": "7"` were read as numbers."""
    from tpuplan.profiles.pricing.host import host_preset

    host = tmp_path / "h.json"
    write_doc(host, host_preset("tpuplan"))
    bad = _edited(host, tmp_path, lambda d: d.__setitem__(field, value), "lax.json")
    one_line_error(plan("solve", inputs.profile, "--tpus", "2", "--host", bad), f"at {field}")


def test_lax_copies_and_duplicate_keys_in_a_plan_are_refused(copies: tuple[Path, Path, Path], tmp_path: Path) -> None:
    rplan = copies[0]
    for value in ("2", 2.0):
        bad = _edited(rplan, tmp_path, lambda d, v=value: d["stages"][0].__setitem__("copies", v))
        one_line_error(plan("show", bad), "stages.0.copies")
    text = rplan.read_text().replace('"kind": "tpuplan.plan",', '"kind": "tpuplan.plan", "tpus": 1,', 1)
    (tmp_path / "dup.json").write_text(text)
    one_line_error(plan("show", tmp_path / "dup.json"), "the key 'tpus' is given twice")


def test_source_suffix_case_and_a_model_named_json(inputs: Inputs, tmp_path: Path) -> None:
    """Section 5: `P.JSON` was 'expected a profile .json or a .tflite model'; a model named .json was
    'not a JSON document (utf-32-le codec ...)'."""
    upper = tmp_path / "P.JSON"
    upper.write_bytes(inputs.profile.read_bytes())
    assert plan("solve", upper, "--tpus", "2").returncode == 0
    named = tmp_path / "model.json"
    named.write_bytes(inputs.model.read_bytes())
    one_line_error(plan("solve", named, "--tpus", "2"), "is a .tflite model, not a profile JSON document")


def test_a_directory_named_in_a_manifest_is_said_to_be_one(tmp_path: Path) -> None:
    model = tmp_path / "fc.tflite"
    model.write_bytes(synth_fc(16, depth=2))
    write_split(parse_model(model.read_bytes(), model), tmp_path / "segs", cuts=[1])
    manifest = json.loads((tmp_path / "segs" / "manifest.json").read_text())
    (tmp_path / "segs" / "adir").mkdir()
    manifest["segments"][0]["file"] = "adir"
    (tmp_path / "segs" / "manifest.json").write_text(json.dumps(manifest))
    one_line_error(plan("run", tmp_path / "segs", "-n", "1"), "segment file 'adir' is a directory")


def test_r17_a_broken_pycoral_install_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """R17: a pycoral package whose import raises RuntimeError printed a traceback."""
    package = tmp_path / "pycoral"
    (package / "pipeline").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('this pycoral is broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "pycoral" or m.startswith("pycoral.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(TpuplanError, match=r"needs Google's pycoral .*RuntimeError: this pycoral is broken"):
        load_pycoral()


def test_plans_solved_here_still_pass_their_own_reader(inputs: Inputs, tmp_path: Path) -> None:
    """The strict reader (R24's other half) accepts every document tpuplan writes: a plan, a profile."""
    prof = build_profile(parse_model(inputs.model.read_bytes(), inputs.model), preset("cpu"))
    write_doc(tmp_path / "p.json", prof)
    write_doc(tmp_path / "plan.json", solve(prof, 2))
    assert load_plan(tmp_path / "plan.json").tpus == 2 and load_profile(tmp_path / "p.json") == prof
