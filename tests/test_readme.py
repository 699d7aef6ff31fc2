"""The README's quick start must keep working: run its first command's tpuplan steps for real."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh", 1)[1].split("```", 1)[0]
    lines = [line.strip() for line in block.strip().splitlines()]
    assert len(lines) == 2, "the README starts with exactly two commands"
    assert lines[1] == "bash .ci/run"
    return [part.strip() for part in lines[0].split("&&")]


def test_readme_quick_start_runs(tmp_path: Path) -> None:
    steps = quick_start()
    assert steps[0].startswith("python3 -m venv") and "pip install" in steps[1]
    bindir = Path(sys.executable).parent
    ran = 0
    for step in steps[2:]:  # the set-up steps are what CI itself just did
        argv = shlex.split(step)
        if argv[0].startswith(".venv/bin/"):
            argv[0] = str(bindir / argv[0].removeprefix(".venv/bin/"))
        res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"{step}: {res.stderr}"
        ran += 1
    assert ran >= 2
    assert "OPTIMAL" in res.stdout and "period" in res.stdout


def test_readme_python_example_runs(tmp_path: Path) -> None:
    """The README's library example, run as written on a generated model."""
    from tpuplan.profiles.synth import synth_fc

    text = (ROOT / "README.md").read_text()
    code = text.split("```python", 1)[1].split("```", 1)[0]
    (tmp_path / "model.tflite").write_bytes(synth_fc(600, weights="zeros"))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    cuts, period, status = res.stdout.rsplit(" ", 2)
    assert status.strip() == "OPTIMAL" and int(period) > 0 and 1 <= len(int_list(cuts)) + 1 <= 4


def int_list(text: str) -> list[int]:
    """'[1, 4, 6]' -> [1, 4, 6]."""
    return [int(x) for x in text.strip().strip("[]").split(",") if x.strip()]


def test_readme_pictures_are_the_ones_in_docs() -> None:
    """Every picture the README shows is in docs/, and docs/ holds no picture the README has dropped
    (benchmarks/pictures.py draws them again from the current model)."""
    text = (ROOT / "README.md").read_text()
    shown = set(re.findall(r"\]\((docs/[^)]+\.png)\)", text))
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.png")}
    assert len(shown) >= 2 and shown == on_disk
