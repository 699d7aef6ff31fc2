"""From verify reports to a refitted device and to a new plan: `plan calibrate --verify` and `plan solve
--measured` on reports of the simulated Edge TPU (the loop without hardware). Measured stages keep their
times, the refit is the calibration's own and names what it could not identify, a report given twice
changes nothing (R19), bad reports are refused by name, every document written reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_helpers import one_line_error, plan, solver
from tpuplan.planner.plan import Plan, load_plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import load_device, preset
from tpuplan.profiles.pricing.host import load_host, resolve_host
from tpuplan.profiles.synth import synth_conv
from tpuplan.profiles.tflite.reader import LoadedModel, parse_model
from tpuplan.runtime.verify.check import VerifyReport, verify
from tpuplan.runtime.verify.refit import Reported, with_measurements

solver()  # refitting and planning again are the planner's side: skipped on a device-side install
DEVICE, HOST = preset("edgetpu-usb"), resolve_host(None)
CUTS = ([2], [1, 3])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conv model, two plans of it and their reports from the simulated Edge TPU, as files."""
    root = tmp_path_factory.mktemp("refit")
    (root / "m.tflite").write_bytes(synth_conv(96, size=48))
    loaded = parse_model((root / "m.tflite").read_bytes(), root / "m.tflite")
    profile = build_profile(loaded, DEVICE, HOST)
    for i, cuts in enumerate(CUTS):
        p = evaluate(profile, None, cuts, HOST)
        write_doc(root / f"p{i}.json", p)
        write_doc(root / f"r{i}.json", verify(p, loaded, backend="edgetpu-sim", inputs=1, repeats=1))
    return root


def _loaded(work: Path) -> tuple[LoadedModel, Profile]:
    loaded = parse_model((work / "m.tflite").read_bytes(), work / "m.tflite")
    return loaded, build_profile(loaded, DEVICE, HOST)


def _reports(work: Path, *names: str) -> list[Reported]:
    return [Reported(VerifyReport.model_validate_json((work / n).read_text()), n) for n in names]


def test_measured_stages_keep_their_times_and_the_rest_are_refitted(work: Path) -> None:
    _, profile = _loaded(work)
    got = with_measurements(profile, [DEVICE], HOST, _reports(work, "r0.json", "r1.json"))
    assert len(got.profile.measured_stages) == 5  # 2 + 3 distinct stages
    assert got.fit is not None and got.fit.simulated and got.fit.median_error_after < got.fit.median_error_before
    assert got.devices[0].link.in_us_per_kib != DEVICE.link.in_us_per_kib or got.fit.points
    replanned = evaluate(got.profile, got.devices, CUTS[1], got.host)
    rep = VerifyReport.model_validate_json((work / "r1.json").read_text())
    assert [s.measured_invoke_us for s in replanned.stages] == [round(c.measured_us + 0.4999) for c in rep.stages]
    assert any(n.startswith("refit") for n in got.notes) and any("SIMULATED" in n for n in got.notes)


def test_one_report_twice_is_one_report(work: Path) -> None:
    """R19: the same evidence twice gives the same refit and the same plan."""
    _, profile = _loaded(work)
    once = with_measurements(profile, [DEVICE], HOST, _reports(work, "r1.json"))
    twice = with_measurements(profile, [DEVICE], HOST, _reports(work, "r1.json", "r1.json"))
    assert once.fit is not None and twice.fit is not None
    assert once.devices == twice.devices and once.host == twice.host
    assert once.fit.params == twice.fit.params
    assert [(s.first_op, s.last_op, s.invoke_us) for s in once.profile.measured_stages] == [
        (s.first_op, s.last_op, s.invoke_us) for s in twice.profile.measured_stages
    ]


def test_too_few_points_plan_with_the_times_but_do_not_refit(work: Path) -> None:
    loaded, profile = _loaded(work)
    one = evaluate(profile, None, [], HOST)
    rep = verify(one, loaded, backend="edgetpu-sim", inputs=1, repeats=1)
    got = with_measurements(profile, [DEVICE], HOST, [Reported(rep, "one.json")])
    assert got.fit is None and got.devices == [DEVICE]
    assert any("no refit: 1 distinct stage time" in n for n in got.notes)
    assert len(got.profile.measured_stages) == 1


@pytest.mark.parametrize(
    ("edit", "text"),
    [
        ({"model_sha256": "0" * 64}, "a report of model sha256 000000000000"),
        ({"comparable": False}, "which its plan does not predict"),
        ({"host": "pycoral"}, "ran on host 'pycoral'"),
    ],
)
def test_reports_that_do_not_fit_are_refused_by_name(work: Path, edit: dict[str, object], text: str) -> None:
    _, profile = _loaded(work)
    rep = VerifyReport.model_validate_json((work / "r0.json").read_text()).model_copy(update=edit)
    with pytest.raises(TpuplanError, match=text):
        with_measurements(profile, [DEVICE], HOST, [Reported(rep, "bad.json")])


def test_a_stage_on_a_device_not_given_is_refused(work: Path) -> None:
    _, profile = _loaded(work)
    with pytest.raises(TpuplanError, match="give --device edgetpu-usb"):
        with_measurements(profile, [preset("edgetpu-pci")], HOST, _reports(work, "r0.json"))


def test_solve_measured_keeps_the_measured_times_and_the_plan_reads_back(work: Path) -> None:
    solver()  # skips where OR-Tools is absent
    out = work / "p_measured.json"
    res = plan(
        "solve",
        work / "m.tflite",
        "--tpus",
        "3",
        "--measured",
        work / "r0.json",
        "--measured",
        work / "r1.json",
        "-o",
        out,
        "--force",
    )
    assert res.returncode == 0, res.stderr
    new = load_plan(out)  # the plan check accepts it
    assert "measured: 5 distinct stage time(s)" in res.stdout and "refit" in res.stdout
    measured = {(s.first_op, s.last_op): s.measured_invoke_us for s in new.stages if s.measured_invoke_us is not None}
    reports = [VerifyReport.model_validate_json((work / f"r{i}.json").read_text()) for i in range(2)]
    times = {(c.first_op, c.last_op): c.measured_us for r in reports for c in r.stages}
    assert all(abs(us - times[key]) < 1 for key, us in measured.items())
    assert any(s.device == DEVICE.name for s in new.stages) and new.devices[0].calibration is not None
    assert "refitted to" in new.devices[0].calibration.source
    doc = json.loads(out.read_text())
    doc["stages"][0]["measured_invoke_us"] = 1 + (doc["stages"][0]["measured_invoke_us"] or 0)
    (work / "edited.json").write_text(json.dumps(doc))
    one_line_error(plan("show", work / "edited.json"), "edited.json")


def test_calibrate_verify_writes_specs_that_read_back_and_a_duplicate_changes_nothing(work: Path) -> None:
    pairs = ["--verify", f"{work / 'p0.json'}:{work / 'r0.json'}", "--verify", f"{work / 'p1.json'}:{work / 'r1.json'}"]
    dev, host = work / "dev.json", work / "host.json"
    res = plan("calibrate", *pairs, "--model", work / "m.tflite", "-o", dev, "--host-out", host, "--force")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("SIMULATED") and "not identified" in res.stdout and "distinct stage time" in res.stdout
    first = load_device(dev)
    load_host(host)
    again = plan(
        "calibrate",
        *pairs,
        "--verify",
        f"{work / 'p1.json'}:{work / 'r1.json'}",
        "--model",
        work / "m.tflite",
        "-o",
        dev,
        "--force",
    )
    assert again.returncode == 0, again.stderr
    assert load_device(dev) == first


def test_calibrate_verify_needs_the_model_and_two_points(work: Path) -> None:
    pair = f"{work / 'p0.json'}:{work / 'r0.json'}"
    one_line_error(plan("calibrate", "--verify", pair, "-o", work / "x.json"), "--verify needs --model", 2)
    loaded, profile = _loaded(work)
    one = evaluate(profile, None, [], HOST)
    write_doc(work / "one.json", one)
    write_doc(work / "rone.json", verify(one, loaded, backend="edgetpu-sim", inputs=1, repeats=1))
    res = plan(
        "calibrate",
        "--verify",
        f"{work / 'one.json'}:{work / 'rone.json'}",
        "-m",
        work / "m.tflite",
        "-o",
        work / "y.json",
    )
    one_line_error(res, "1 distinct stage time")
    assert not (work / "y.json").exists()
    other = plan(
        "calibrate",
        "--verify",
        f"{work / 'p0.json'}:{work / 'r1.json'}",
        "-m",
        work / "m.tflite",
        "-o",
        work / "z.json",
    )
    one_line_error(other, "a report of another plan")


def test_plans_of_the_first_solve_stay_as_they_were(work: Path) -> None:
    """No report, no change: a plan solved without --measured has no measured stage."""
    p: Plan = load_plan(work / "p0.json")
    assert all(s.measured_invoke_us is None for s in p.stages)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--verify", "justone.json"], "PLAN.json:REPORT.json"),
        (["--verify", "a.json:b.json", "x.csv"], "separate run"),
        (["--host-out", "h.json", "x.csv"], "go with --verify"),
        (["--model", "m.tflite", "x.csv"], "go with --verify"),
    ],
)
def test_calibrate_verify_bad_arguments(args: list[str], text: str, tmp_path: Path) -> None:
    """Flags that cannot go together are usage errors: exit 2, one line."""
    res = plan("calibrate", *args, "-o", tmp_path / "out.json")
    assert res.returncode == 2 and text in res.stderr and len(res.stderr.strip().splitlines()) == 1
