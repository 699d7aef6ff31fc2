"""Plan pictures: a real PNG when matplotlib is there, a clear error when it is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import solver
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite.reader import load_model, parse_model

solve = solver().solve  # skips the module where the solver cannot run (a device-side install)


def test_plan_show_png(shared_models: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    movenet = load_model(shared_models / "movenet_single_pose_lightning_ptq.tflite")
    plan = solve(build_profile(movenet, preset("edgetpu-usb")), 3)
    plan_path = tmp_path / "plan.json"
    write_doc(plan_path, plan)
    png = tmp_path / "plan.png"
    res = subprocess.run(
        [sys.executable, "-m", "tpuplan", "show", str(plan_path), "--png", str(png)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def _png_height(data: bytes) -> int:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[20:24], "big")  # the IHDR chunk: width, then height


def test_a_cpu_plan_is_drawn_without_the_on_chip_memory_panel() -> None:
    """A CPU has no on-chip memory: its plan's picture has the times and the cuts only (shorter)."""
    pytest.importorskip("matplotlib")
    from tpuplan.runtime.verify.plots import plan_figure

    model = parse_model(synth_fc(64, depth=3), Path("fc.tflite"))
    on_tpus, on_cpu = (solve(build_profile(model, preset(name)), 2) for name in ("edgetpu-usb", "cpu"))
    assert {d.backend for d in on_cpu.devices} == {"cpu"}
    assert _png_height(plan_figure(on_cpu)) < 0.75 * _png_height(plan_figure(on_tpus))


def test_missing_matplotlib_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tpuplan.runtime.verify import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(TpuplanError, match=r"pip install 'tpuplan\[plot\]'"):
        plots._pyplot()
