"""Property tests (hypothesis): no number crashes us and no edited document fools us (issue 13).

Every document tpuplan reads (profile, measured profile, device, host, plan with and without a curve,
manifest, verify report, comparison, calibration result) is taken from a real run on a small model,
then given extreme values (NaN, infinities, negatives, 1e18, 1e300, 2^63, a 5,001-digit integer, ...) in
any of its numbers, and edits that keep it looking valid (ops reversed, cuts edited apart from stages,
segments swapped, ...). Each goes through the reader and the command that uses it: the outcome must be
the project's one-line error naming the file (and the field, when one field is out of range) or a
correct result; an edit that changes what the document says must be refused. The number of cases tried
is printed (`pytest -s tests/cli/test_hostile_docs.py`).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.cli_helpers import Inputs, make_inputs, one_line_error, plan
from tests.hostile_docs import (
    COPY_EDITS,
    EXTREMES,
    MANIFEST_EDITS,
    PLAN_EDITS,
    PRICE_EDITS,
    PROFILE_EDITS,
    REPORT_EDITS,
    SWEEP,
    Edit,
    has,
    numeric_paths,
    put,
    strict_json,
    text_of,
)
from tpuplan.cli.show import measured_times
from tpuplan.planner.baselines import compare
from tpuplan.planner.comparison import Comparison
from tpuplan.planner.costs import Goal
from tpuplan.planner.matching import check_plan_matches
from tpuplan.planner.plan import load_plan
from tpuplan.planner.solve import solve_auto, solve_with_copies
from tpuplan.profiles.calibration.fit import calibrate
from tpuplan.profiles.calibration.measurements import MeasuredFile, RunSpec, read_measurements
from tpuplan.profiles.calibration.result import load_calibration
from tpuplan.profiles.docio import dump_json, load_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import load_profile
from tpuplan.profiles.pricing.device import device_json, preset
from tpuplan.profiles.pricing.host import host_json, host_preset
from tpuplan.profiles.tflite.reader import LoadedModel, load_model
from tpuplan.runtime.measure import measure_profile
from tpuplan.runtime.split.manifest import MANIFEST_NAME, load_split
from tpuplan.runtime.split.write import write_split
from tpuplan.runtime.verify.check import verify

Result = subprocess.CompletedProcess[str]
COUNTS: Counter[str] = Counter()
EXAMPLES = 80  # per document kind; the sweep below covers every field for sure


def applies(edit: Edit, doc: dict[str, Any]) -> bool:
    """Make the edit; False when this document has nothing to edit so (a one-stage plan has no stage 1)."""
    before = copy.deepcopy(doc)
    try:
        edit(doc)
    except (IndexError, KeyError):
        return False
    return doc != before


def library(call: Callable[[], object]) -> Result:
    """A library reader run like a command: its TpuplanError becomes the CLI's one line."""
    try:
        call()
    except TpuplanError as exc:
        return subprocess.CompletedProcess([], 1, "", f"plan: error: {exc}\n")
    return subprocess.CompletedProcess([], 0, "", "")


@dataclass
class Kind:
    """One document kind: its text from a real run, and how a command reads and uses a file of it."""

    text: str
    use: Callable[[Path], Result]
    where: Callable[[Path], Path] = lambda p: p  # the file an error must name
    home: Path | None = None  # a directory the document lives in (a manifest: its split), copied per test
    sweep_use: Callable[[Path], Result] | None = None  # a cheaper use for the sweep (default: `use`)

    def place(self, tmp: Path, text: str) -> Path:
        """Write a case's document where its reader looks for it."""
        if self.home is None:
            path = tmp / "doc.json"
        else:
            if not (tmp / self.home.name).exists():
                shutil.copytree(self.home, tmp / self.home.name)
            path = tmp / self.home.name / MANIFEST_NAME
        path.write_text(text)
        return path


def _kinds(root: Path) -> dict[str, Kind]:
    i = make_inputs(root / "in")
    loaded = load_model(i.model)
    prof = load_profile(i.profile)
    the_plan = load_plan(i.plan)
    auto = solve_auto(prof, None, 3, goal=Goal("throughput", 100))
    copied = solve_with_copies(prof, 4)
    measured = measure_profile(loaded, repeats=3)
    segs = root / "segs"
    write_split(loaded, segs, plan=the_plan)
    report = verify(the_plan, loaded, inputs=2, repeats=2)
    fit = calibrate([MeasuredFile(read_measurements(i.csv), RunSpec())], {"edgetpu-usb": preset("edgetpu-usb")})
    out = root / "out.json"

    def solve_writes(*args: str | Path) -> Callable[[Path], Result]:
        return lambda p: _strict_output(plan(*[p if a == "DOC" else a for a in args], "-o", out, "--force"), out)

    return {
        "profile": Kind(i.profile.read_text(), solve_writes("solve", "DOC", "--tpus", "2")),
        "measured profile": Kind(dump_json(measured), solve_writes("solve", "DOC", "--tpus", "2", "-d", "edgetpu-usb")),
        "device": Kind(device_json(preset("edgetpu-usb")), solve_writes("solve", i.model, "-d", "DOC", "--tpus", "2")),
        "host": Kind(host_json(host_preset("pycoral")), solve_writes("solve", i.profile, "--host", "DOC", "-k", "2")),
        "plan": Kind(i.plan.read_text(), lambda p: show_then_check(p, loaded), sweep_use=show),
        "auto plan": Kind(dump_json(auto), lambda p: show_then_check(p, loaded), sweep_use=show),
        "plan with copies": Kind(dump_json(copied), lambda p: show_then_check(p, loaded), sweep_use=show),
        "manifest": Kind(
            (segs / MANIFEST_NAME).read_text(),
            lambda p: library(lambda: load_split(p.parent)),
            lambda p: p.parent,
            segs,
        ),
        "report": Kind(dump_json(report), lambda p: library(lambda: measured_times(p, the_plan))),
        "comparison": Kind(
            dump_json(compare(prof, 2)),
            lambda p: library(lambda: load_doc(p, Comparison, kind="tpuplan.comparison", version=2)),
        ),
        "calibration": Kind(dump_json(fit), lambda p: library(lambda: load_calibration(p))),
    }


def report_counts() -> None:
    total = sum(v for k, v in COUNTS.items() if k.endswith(" cases"))
    print(f"\nhostile documents: {total:,} cases tried; " + ", ".join(f"{k} {v:,}" for k, v in sorted(COUNTS.items())))


def show(path: Path) -> Result:
    return _strict_output(plan("show", path, "--json"), None)


def show_then_check(path: Path, loaded: LoadedModel) -> Result:
    """`plan show` reads the plan; what `plan split` and `plan verify` check against the model comes next."""
    res = show(path)
    if res.returncode != 0:
        return res
    checked = library(lambda: check_plan_matches(load_plan(path), loaded))
    return (
        subprocess.CompletedProcess([], 1, "", checked.stderr.replace("error: ", f"error: {path}: ", 1))
        if checked.returncode
        else checked
    )


def _strict_output(res: Result, out: Path | None) -> Result:
    """What a command printed or wrote must be JSON: no NaN or Infinity written back."""
    if res.returncode == 0:
        strict_json(out.read_text() if out is not None else res.stdout)
    return res


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, Kind]:
    root = tmp_path_factory.mktemp("hostile")
    made = _kinds(root)
    request.addfinalizer(report_counts)
    return made


def judge(
    kinds: dict[str, Kind],
    name: str,
    tmp: Path,
    doc: dict[str, Any],
    numeric: list[tuple[Any, Any]],
    edits: list[str],
    *,
    sweep: bool = False,
) -> Result:
    """Run one case; a refusal must be one line naming the file, and the field when one is out of range."""
    kind = kinds[name]
    path = kind.place(tmp, text_of(doc))
    res = (kind.sweep_use or kind.use)(path) if sweep else kind.use(path)
    COUNTS[f"{name} cases"] += 1
    if res.returncode == 0:
        COUNTS[f"{name} accepted"] += 1
        assert not edits, f"{name}: edited ({', '.join(edits)}) yet accepted"
        return res
    line = one_line_error(res)
    assert str(kind.where(path)) in line, line
    if " document at " in line and " at <root>" not in line and not edits:
        loc = line.split(" document at ", 1)[1].split(":", 1)[0]
        assert any(loc.startswith(".".join(map(str, p))) for p, _ in numeric), (loc, numeric, line)
    return res


NAMES = [
    "profile",
    "measured profile",
    "device",
    "host",
    "plan",
    "auto plan",
    "plan with copies",
    "manifest",
    "report",
    "comparison",
    "calibration",
]
STRUCTURAL: dict[str, dict[str, Edit]] = {
    "plan": PLAN_EDITS,
    "auto plan": PLAN_EDITS,
    "manifest": MANIFEST_EDITS,
    "report": REPORT_EDITS,
    "plan with copies": {**PLAN_EDITS, **COPY_EDITS},
}


@pytest.mark.parametrize("name", NAMES)
def test_extreme_numbers_and_valid_looking_edits(name: str, kinds: dict[str, Kind], tmp_path: Path) -> None:
    """Hypothesis picks 1-3 numbers to set to extremes, and for documents with structure an edit too."""
    base = json.loads(kinds[name].text)
    paths = numeric_paths(base)
    edits = STRUCTURAL.get(name, {})
    numeric = st.lists(st.tuples(st.sampled_from(paths), st.sampled_from(EXTREMES)), min_size=1, max_size=3)
    structural = st.lists(st.sampled_from(sorted(edits)), max_size=1) if edits else st.just([])

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(numeric=numeric, chosen=structural)
    def case(numeric: list[tuple[Any, Any]], chosen: list[str]) -> None:
        doc = copy.deepcopy(base)
        for edit in chosen:
            assume(applies(edits[edit], doc))
        for path, value in numeric:
            assume(has(doc, path))  # the edit may have removed it
            put(doc, path, value)
        judge(kinds, name, tmp_path, doc, numeric, chosen)

    case()


@pytest.mark.parametrize("name", NAMES)
def test_every_numeric_field_at_every_extreme(name: str, kinds: dict[str, Kind], tmp_path: Path) -> None:
    """The sweep behind the property: each number of the document alone at each extreme value."""
    base = json.loads(kinds[name].text)
    for path in numeric_paths(base, ends=False):
        for value in SWEEP:
            doc = copy.deepcopy(base)
            put(doc, path, value)
            judge(kinds, name, tmp_path, doc, [(path, value)], [], sweep=True)


@pytest.mark.parametrize("name", ["plan", "auto plan", "plan with copies", "manifest", "report"])
def test_every_valid_looking_edit_is_refused(name: str, kinds: dict[str, Kind], tmp_path: Path) -> None:
    base = json.loads(kinds[name].text)
    tried = 0
    for edit_name, edit in STRUCTURAL[name].items():
        doc = copy.deepcopy(base)
        if applies(edit, doc):
            judge(kinds, name, tmp_path, doc, [], [edit_name])
            tried += 1
    assert tried >= len(STRUCTURAL[name]) // 2


@pytest.mark.parametrize("edit_name", list(PROFILE_EDITS))
def test_edited_profile_is_refused_against_its_model(edit_name: str, tmp_path: Path) -> None:
    """The sha256 matches, the ops do not: with the model given, an edited profile never plans. An edit of
    prices only (times are priced again from the facts, as the planner always does) gives the same plan."""
    inputs: Inputs = make_inputs(tmp_path / "in")
    doc = json.loads(inputs.profile.read_text())
    PROFILE_EDITS[edit_name](doc)
    path = tmp_path / "edited.json"
    path.write_text(text_of(doc))
    COUNTS["profile edits cases"] += 1
    res = plan("solve", path, "--tpus", "2", "--model", inputs.model, "--json")
    if res.returncode == 0:
        assert edit_name in PRICE_EDITS
        unedited = plan("solve", inputs.profile, "--tpus", "2", "--model", inputs.model, "--json")
        assert json.loads(res.stdout)["stages"] == json.loads(unedited.stdout)["stages"]
    else:
        assert edit_name not in PRICE_EDITS
        line = one_line_error(res)
        assert str(path) in line or str(inputs.model) in line, line
