"""The cost formula is written once (`profiles.pricing.formula`): adding a term or a period bound changes
that module and the preset that gives its coefficient a value, nothing else.

The test does it for real: it copies the package, edits only those two files, and checks in a fresh
interpreter that every consumer follows: the pricer's terms and stage time, the plan document and its
self-check, the exact search and the CP-SAT proof (against a brute force over every cut set), the
calibration's features, verify's invoke part and the plan table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tpuplan.profiles.pricing import formula

ROOT = Path(__file__).resolve().parents[2]
FORMULA = Path("tpuplan/profiles/pricing/formula.py")
PRESET = Path("tpuplan/profiles/pricing/presets/devices/edgetpu-usb.json")

# A device term: a fixed cost per invoke for the USB transfer set-up, with its coefficient on the link.
NEW_COEFFICIENT = (
    "    calibrated: bool = False\n\n\nclass DeviceTimes(StrictModel):",
    '    per_invoke_us: float = Field(0.0, ge=0, le=1e6, description="transfer set-up per invoke")\n'
    "    calibrated: bool = False\n\n\nclass DeviceTimes(StrictModel):",
)
NEW_TERM = (
    "TIME_TERMS: tuple[Term, ...] = (\n",
    'TIME_TERMS: tuple[Term, ...] = (\n    Term("setup", "device", (("link.per_invoke_us", "one"),)),\n',
)
# A period bound: the host CPU runs every stage's runner work on one core, so its sum bounds the period.
NEW_VALUE = (
    '    "oneoff": ("stream_cold", "upload"),\n',
    '    "oneoff": ("stream_cold", "upload"),\n    "hostwork": ("runner", "stream_extra"),\n',
)
NEW_VALUE_NAME = (
    '    "oneoff": "O: once per run (each copy pays it)",\n',
    '    "oneoff": "O: once per run (each copy pays it)",\n    "hostwork": "runner work on one core",\n',
)
NEW_BOUND = (
    ")\nBOUND_NAMES",
    '    PeriodBound("cpu", "hostwork", "sum", "runner work of every stage on one core"),\n)\nBOUND_NAMES',
)

CHECK = r"""
import itertools, json, sys
from pathlib import Path
from tpuplan.planner.costs import Goal, stage_tables, totals
from tpuplan.planner.plan import parse_plan
from tpuplan.planner.search.reference import brute_force
from tpuplan.planner.solve import solve
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.calibration.fit import predict_rows, time_features
from tpuplan.profiles.calibration.measurements import MeasuredFile, RunSpec, read_measurements
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.pricing.host import host_preset
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite.reader import parse_model
from tpuplan.cli.plantable import plan_table

term, csv, setup = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
device = preset("edgetpu-usb")
host = host_preset("python-threads").model_copy(update=setup["host"])
model = parse_model(synth_fc(setup["width"], depth=3), Path("fc.tflite"))
profile = build_profile(model, device, host)
out = {"terms": list(formula.TERM_NAMES), "bounds": list(formula.BOUND_NAMES)}
plan = solve(profile, 3, host=host)
out["stages"] = len(plan.stages)
out["status"] = plan.solver.status
out["stage_terms"] = [s.predicted_terms.get(term) for s in plan.stages]
out["times_add_up"] = all(s.predicted_us == s.part_us("device") + s.part_us("host") + s.part_us("runner")
                          for s in plan.stages)
out["invoke_has_it"] = all(s.invoke_us >= s.predicted_terms.get(term, 0) > 0 for s in plan.stages) if term else None
again = parse_plan(plan.model_dump_json().encode(), "again")
out["reread"] = again == plan
out["period_bound"] = plan.period_bound
out["bounds_in_plan"] = sorted(plan.predicted_bounds)
tables = stage_tables(profile, [device] * len(plan.stages), host)
brute = brute_force(tables, Goal(), onchip=plan.solver.parameters.allow_spill is False and plan.fits_on_chip)
out["brute"] = brute[0] if brute else None
out["objective"] = plan.solver.objective
out["table"] = bool(plan_table(plan))
files = [MeasuredFile(read_measurements(csv), RunSpec(host="python-threads"))]
model_t, theta = time_features(files, {device.name: device}, {"python-threads": host})
pred = model_t.evaluate(theta)[0]
pts = predict_rows(files, {device.name: device}, {"python-threads": host})
out["fit_has_term"] = term in model_t.terms if term else None
out["fit_matches_pricer"] = all(abs(p * 1 - q.predicted_ms * 1000) <= 10 for p, q in zip(pred, pts))
print(json.dumps(out))
"""


def _copy_package(dest: Path) -> None:
    shutil.copytree(ROOT / "tpuplan", dest / "tpuplan", ignore=shutil.ignore_patterns("__pycache__"))


def _edit(dest: Path, path: Path, *edits: tuple[str, str]) -> None:
    text = (dest / path).read_text()
    for old, new in edits:
        assert text.count(old) == 1, f"{path} no longer has {old!r}: update this test's edit"
        text = text.replace(old, new)
    (dest / path).write_text(text)


def _changed(dest: Path) -> list[str]:
    """Files of the copy that differ from the checkout's package."""
    out = []
    for p in sorted((dest / "tpuplan").rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            rel = p.relative_to(dest)
            if (ROOT / rel).read_bytes() != p.read_bytes():
                out.append(str(rel))
    return out


def _run(dest: Path, term: str, width: int, host: dict[str, float]) -> dict[str, object]:
    csv = dest / "fc_single.csv"
    csv.write_text(
        "Hidden neurons,# MACs,On chip mem used,Off chip mem used,Inference time\n"
        "100,37400,0.050537109375,0.0,0.107\n150,78600,0.1044921875,0.0,0.132\n"
    )
    env = {**os.environ, "PYTHONPATH": str(dest)}
    done = subprocess.run(
        [sys.executable, "-c", CHECK, term, str(csv), json.dumps({"width": width, "host": host})],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=dest,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return out


@pytest.mark.slow
def test_adding_a_term_changes_two_files(tmp_path: Path) -> None:
    _copy_package(tmp_path)
    _edit(tmp_path, FORMULA, NEW_COEFFICIENT, NEW_TERM)
    preset = json.loads((tmp_path / PRESET).read_text())
    preset["link"]["per_invoke_us"] = 37.0
    (tmp_path / PRESET).write_text(json.dumps(preset, indent=2) + "\n")
    assert _changed(tmp_path) == [str(FORMULA), str(PRESET)]
    got = _run(tmp_path, "setup", 300, {})
    assert "setup" in got["terms"]  # type: ignore[operator]
    assert got["stage_terms"] == [37] * len(got["stage_terms"])  # type: ignore[arg-type]
    assert got["times_add_up"] and got["invoke_has_it"] and got["reread"] and got["table"]
    assert got["status"] == "OPTIMAL" and got["objective"] == got["brute"]
    assert got["fit_has_term"] and got["fit_matches_pricer"]


@pytest.mark.slow
def test_adding_a_period_bound_changes_one_file(tmp_path: Path) -> None:
    """A bound on the host CPU's runner work (one core runs every stage's runner), made to set the period:
    a 12 MB model that needs two TPUs, a runner of 400 us per stage and nothing serialized otherwise."""
    _copy_package(tmp_path)
    _edit(tmp_path, FORMULA, NEW_VALUE, NEW_VALUE_NAME, NEW_BOUND)
    assert _changed(tmp_path) == [str(FORMULA)]
    got = _run(tmp_path, "", 2000, {"stage_us": 400.0, "serialized": 0.0, "serialized_device": 0.0})
    assert "cpu" in got["bounds"] and got["bounds_in_plan"] == sorted(got["bounds"])  # type: ignore[arg-type]
    assert got["stages"] == 2 and got["period_bound"] == "cpu"
    assert got["status"] == "OPTIMAL" and got["objective"] == got["brute"] and got["reread"]
    assert got["fit_matches_pricer"]


def test_the_formula_declares_what_its_consumers_read() -> None:
    """Names the consumers rely on: the stage bound first (copies and stage caps read it), every term
    in one part or outside T, every quantity a term reads known to the pricer."""
    assert formula.PERIOD_BOUNDS[0].value == "time" and formula.PERIOD_BOUNDS[0].combine == "max"
    assert {b.value for b in formula.PERIOD_BOUNDS} <= set(formula.STAGE_VALUES)
    for term in formula.ALL_TERMS:
        assert all(q in formula.STAGE_QUANTITIES for _, q in term.products), term.name
        assert (term.part is None) == (term not in formula.TIME_TERMS)
    assert len(set(t.name for t in formula.ALL_TERMS)) == len(formula.ALL_TERMS)
