"""Issue 19.5: `--robust` takes the plan whose longest period over the calibration's scenarios is least,
proven. Checked against every cut list of small models priced in every scenario, with a scenario whose
serialized sum sets the worst case (so that bounds are added in rounds), and at the command line."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tests.cli_helpers import one_line_error, plan
from tpuplan.planner.devices import DeviceSet
from tpuplan.planner.plan import parse_plan
from tpuplan.planner.robust import solve_robust
from tpuplan.planner.uncertainty import scenario_values
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing import pipeline_formula
from tpuplan.profiles.pricing.device import DeviceSpec, Scenario, preset
from tpuplan.profiles.pricing.host import HostSpec, host_preset
from tpuplan.profiles.pricing.plancost import stage_pairs
from tpuplan.profiles.pricing.scenarios import scenario_names
from tpuplan.profiles.pricing.tables import stage_table
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite.reader import parse_model


def _profile(model: bytes, name: str) -> Profile:
    return build_profile(parse_model(model, Path(name)), preset("edgetpu-usb"), host_preset("pycoral"))


def _locked_host() -> HostSpec:
    """pycoral's host with one more scenario in which most device time is serialized: its sum over the
    stages, not the slowest stage, sets that scenario's period."""
    host = host_preset("pycoral")
    assert host.calibration is not None
    locked = Scenario(name="locked", values={"serialized_device": 1.0})
    cal = host.calibration.model_copy(update={"scenarios": [*host.calibration.scenarios, locked]})
    return host.model_copy(update={"calibration": cal})


def _worst_by_brute_force(profile: Profile, device: DeviceSpec, host: HostSpec, k: int) -> int:
    """The least longest period over the scenarios of every plan of at most k stages, each holding an op
    the Edge TPU runs (of those whose stages all keep their parameters on chip, when one does: the
    planner's rule without --allow-spill)."""
    n = len(profile.ops)
    names = scenario_names(device, host)
    table = stage_table(profile, device, host)
    every = [c for stages in range(1, k + 1) for c in itertools.combinations(range(n - 1), stages - 1)]
    plans = [c for c in every if all(table.is_valid(a, b) for a, b in stage_pairs(c, n))]  # a TPU op each
    onchip = [c for c in plans if all(table.fits_on_chip(a, b) for a, b in stage_pairs(c, n))]
    devices = [device] * k
    return min(
        max(
            int(pipeline_formula.pipeline(scenario_values(profile, devices[: len(c) + 1], host, c, s)).period)
            for s in names
        )
        for c in onchip or plans
    )


@pytest.mark.parametrize(
    ("model", "k", "locked"),
    [
        (lambda: synth_conv(96), 3, False),
        (lambda: synth_conv(160), 4, True),
        (lambda: synth_fc(2048, 4), 4, True),
        (lambda: synth_fc(3072, 3), 4, False),
    ],
)
def test_robust_is_the_least_worst_case_of_every_plan(model, k: int, locked: bool) -> None:  # type: ignore[no-untyped-def]
    profile = _profile(model(), "m.tflite")
    usb = preset("edgetpu-usb")
    host = _locked_host() if locked else host_preset("pycoral")
    plan = solve_robust(profile, DeviceSet((usb,)), k, host=host)
    r = plan.robust
    assert r is not None and plan.solver.proven_optimal
    assert r.worst_period_us == _worst_by_brute_force(profile, usb, host, k)
    assert plan.predicted_range is not None and plan.predicted_range.period_us.high == r.worst_period_us
    assert [s.scenario for s in r.scenarios] == scenario_names(usb, host)
    for s in r.scenarios:  # no plan beats a scenario's own optimum, not even ours
        assert s.best_proven and s.best_period_us <= min(s.period_us, s.nominal_plan_period_us)
    assert r.worst_period_us <= r.nominal_worst_period_us  # never worse in its worst case than the nominal plan


def test_a_scenario_sum_is_added_when_it_sets_the_worst_case() -> None:
    profile = _profile(synth_fc(2048, 4), "fc.tflite")
    plan = solve_robust(profile, DeviceSet((preset("edgetpu-usb"),)), 4, host=_locked_host())
    r = plan.robust
    assert r is not None and r.rounds >= 2 and plan.solver.proven_optimal
    locked = next(s for s in r.scenarios if s.scenario == "locked")
    assert locked.period_us == r.worst_period_us  # the locked scenario is the worst, and it was bounded
    assert r.worst_period_us < locked.nominal_plan_period_us  # where the nominal plan does worse


def test_robust_refuses_what_it_does_not_plan() -> None:
    profile = _profile(synth_conv(96), "conv.tflite")
    with pytest.raises(TpuplanError, match="drop --replicate"):
        solve_robust(profile, DeviceSet((preset("edgetpu-usb"),), copies=True), 2)
    with pytest.raises(TpuplanError, match="needs the scenarios of a calibration"):
        solve_robust(profile, DeviceSet((preset("cpu"),)), 2, host=host_preset("tpuplan"))


def test_solve_robust_at_the_command_line(tmp_path: Path) -> None:
    model = tmp_path / "conv.tflite"
    model.write_bytes(synth_conv(128))
    got = plan("solve", model, "--tpus", "3", "--robust")
    assert got.returncode == 0, got.stderr
    assert "robust: longest period" in got.stdout and "own best ms" in got.stdout
    doc = json.loads(plan("solve", model, "--tpus", "3", "--robust", "--json").stdout)
    rows = doc["robust"]["scenarios"]
    assert doc["robust"]["worst_period_us"] == max(r["period_us"] for r in rows) > 0
    for flags in (["--tpus", "auto"], ["--tpus", "3", "--replicate"], ["--tpus", "3", "--objective", "latency"]):
        one_line_error(plan("solve", model, "--robust", *flags), "--robust takes --tpus K", 2)


def test_an_edited_worst_case_is_refused() -> None:
    profile = _profile(synth_conv(96), "conv.tflite")
    doc = json.loads(solve_robust(profile, DeviceSet((preset("edgetpu-usb"),)), 2).model_dump_json())
    assert parse_plan(json.dumps(doc).encode(), "p.json").robust is not None  # as written, it reads back
    doc["robust"]["worst_period_us"] -= 1
    with pytest.raises(TpuplanError, match="worst_period_us is not the longest period"):
        parse_plan(json.dumps(doc).encode(), "p.json")
