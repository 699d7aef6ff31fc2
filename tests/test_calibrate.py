"""Calibration against the REAL single-TPU sweeps: the goal metrics, determinism, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tpuplan.profiles.build import build_profile
from tpuplan.profiles.calibrate import CalibrationResult, calibrate, read_measurements, sweep_profile
from tpuplan.profiles.device import preset
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.stagecost import stage_table
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite import parse_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "edgetpu-measurements"
CSVS = [DATA / "fc_single_tpu.csv", DATA / "conv_single_tpu.csv"]


@pytest.fixture(scope="module")
def result() -> CalibrationResult:
    if not all(p.is_file() for p in CSVS):
        pytest.skip(f"{DATA} is absent: the real Edge TPU measurements are needed")
    return calibrate([read_measurements(p) for p in CSVS], preset("edgetpu-usb"))


@pytest.mark.parametrize("sweep", ["fc", "conv"])
def test_goal_metrics_per_sweep(result: CalibrationResult, sweep: str) -> None:
    cal = result.device.calibration
    assert cal is not None
    assert cal.median_rel_error[sweep] <= 0.15
    assert cal.memory_within_0_3_mib[sweep] >= 0.9
    pts = [p for p in result.points if p.sweep == sweep]
    assert len(pts) == {"fc": 59, "conv": 72}[sweep]
    # the summary is what the points say
    ok = sum(p.memory_ok for p in pts) / len(pts)
    assert cal.memory_within_0_3_mib[sweep] == pytest.approx(ok, abs=1e-4)


def test_points_are_the_planners_own_one_stage_predictions(result: CalibrationResult) -> None:
    dev = result.device
    for p in result.points[::17]:
        table = stage_table(sweep_profile(p.sweep, p.x), dev)
        parts = table.stage_parts(0, table.n - 1)
        assert p.predicted_ms == pytest.approx(parts["total_us"] / 1000)
        assert p.predicted_onchip_mib == pytest.approx(parts["onchip_bytes"] / 2**20, abs=1e-4)
        assert p.predicted_offchip_mib == pytest.approx(parts["offchip_bytes"] / 2**20, abs=1e-4)


def test_caching_rule_reproduces_the_compilers_drops(result: CalibrationResult) -> None:
    """On-chip use drops where the compiler starts streaming whole layers."""
    by = {(p.sweep, p.x): p for p in result.points}
    for sweep, before, after in (("fc", 1600, 1650), ("fc", 2000, 2050), ("fc", 2650, 2700),
                                 ("conv", 442, 452), ("conv", 512, 522), ("conv", 632, 642)):
        assert by[(sweep, before)].predicted_onchip_mib > by[(sweep, after)].predicted_onchip_mib
        assert by[(sweep, after)].predicted_offchip_mib > by[(sweep, before)].predicted_offchip_mib
    assert by[("fc", 1600)].predicted_offchip_mib == 0 and by[("conv", 442)].predicted_offchip_mib == 0


def test_calibration_is_deterministic_and_fills_the_source(result: CalibrationResult) -> None:
    again = calibrate([read_measurements(p) for p in CSVS], preset("edgetpu-usb"))
    assert again.model_dump() == result.model_dump()
    cal = result.device.calibration
    assert cal is not None and cal.points == 131
    assert "fc_single_tpu.csv" in cal.source and "conv_single_tpu.csv" in cal.source and "sha256" in cal.source


def test_the_presets_are_this_fit(result: CalibrationResult) -> None:
    usb, pci = preset("edgetpu-usb"), preset("edgetpu-pci")
    assert usb == result.device, "cost model changed: run benchmarks/calibration.py --write-presets"
    assert pci.link_bytes_per_us != usb.link_bytes_per_us
    assert pci.model_dump(exclude={"name", "link_bytes_per_us", "calibration"}) == usb.model_dump(
        exclude={"name", "link_bytes_per_us", "calibration"})
    assert pci.calibration is not None and "PCIe" in pci.calibration.source


def test_csv_macs_column_matches_the_profiles() -> None:
    if not CSVS[0].is_file():
        pytest.skip(f"{DATA} is absent")
    for m in read_measurements(CSVS[0]).rows[::7] + read_measurements(CSVS[1]).rows[::9]:
        prof = sweep_profile(m.sweep, m.x)
        assert sum(op.macs for op in prof.ops if op.op_class == m.sweep) == m.macs


def test_layout_matches_the_compilers_exact_small_reports() -> None:
    """Below 1 MiB the compiler reports KiB with 2 decimals: the padded layout must match exactly."""
    dev = preset("edgetpu-usb")
    for n, reported in ((100, 52992), (150, 109568), (250, 226048), (300, 327680), (550, 1026048)):
        prof = build_profile(parse_model(synth_fc(n, weights="zeros"), Path("m.tflite")), dev)
        assert sum(op.cached_bytes for op in prof.ops) == reported


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Hidden neurons,MACs,On,Off,Time\n100,1,0,0,0.1\n", ":1: unknown header"),
        ("Width,# MACs,On chip mem used,Off chip mem used,Inference time\n", ":1: unknown header"),
        ("Num filters,# MACs,On chip mem used,Off chip mem used,Inference time\n32,1,0.1,0.0\n", ":2: expected 5"),
        ("Num filters,# MACs,On chip mem used,Off chip mem used,Inference time\n32,1,0.1,0.0,abc\n", ":2: a field"),
        ("Hidden neurons,# MACs,On chip mem used,Off chip mem used,Inference time\n100,1,0,0,0.1\n0,1,0,0,1\n",
         ":3: values out of range"),
        ("Hidden neurons,# MACs,On chip mem used,Off chip mem used,Inference time\n", "no measurement rows"),
        ("", ":1: unknown header"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TpuplanError, match=match) as info:
        calibrate([read_measurements(path)], preset("edgetpu-usb"))
    assert str(path) in str(info.value)


def test_bad_inputs_to_calibrate(tmp_path: Path) -> None:
    with pytest.raises(TpuplanError, match="no such file"):
        calibrate([read_measurements(tmp_path / "missing.csv")], preset("edgetpu-usb"))
    good = tmp_path / "good.csv"
    good.write_text("Hidden neurons,# MACs,On chip mem used,Off chip mem used,Inference time\n100,1,0.05,0,0.1\n")
    with pytest.raises(TpuplanError, match="Edge TPU base"):
        calibrate([read_measurements(good)], preset("cpu"))
    (tmp_path / "b.csv").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TpuplanError, match="not a measurement CSV"):
        calibrate([read_measurements(tmp_path / "b.csv")], preset("edgetpu-usb"))


def test_cli_calibrate_writes_device_json(tmp_path: Path, result: CalibrationResult) -> None:
    from typer.testing import CliRunner

    from tpuplan.cli import app
    from tpuplan.profiles.device import load_device

    out = tmp_path / "device.json"
    res = CliRunner().invoke(app, ["calibrate", *map(str, CSVS), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "median error" in res.output and "conv     742" in res.output
    assert load_device(out) == result.device
    res = CliRunner().invoke(app, ["calibrate", *map(str, CSVS), "-o", str(out), "--json", "--force"])
    assert res.exit_code == 0 and len(json.loads(res.output)["points"]) == 131
