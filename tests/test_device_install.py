"""What a device-side install promises: the runtime without the planner's solver.

`pip install tpuplan[device]` on a Coral host (Python 3.9, tflite-runtime, numpy < 2) has no OR-Tools: every
command but `plan solve` and `plan compare` must work there, and those two must say in one line what to
install. CI runs this file in such an environment (Python 3.9, .ci/run) and on the newest Python, where
OR-Tools is hidden from a child process to play the device.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path
from typing import Optional, get_type_hints

from tpuplan.compat import pairwise, resolve_annotations, zip_strict
from tpuplan.profiles.synth import synth_fc

# A child that cannot import OR-Tools (as on a device install), running `plan` commands in turn and
# printing, for each, its exit code and last line on stderr.
NO_ORTOOLS = r"""
import contextlib, importlib.abc, io, json, sys

class NoOrTools(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ortools":
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: a device install)", name=name)
        return None

sys.meta_path.insert(0, NoOrTools())
from tpuplan.cli import main

out = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    lines = err.getvalue().strip().splitlines()
    out.append([code, lines[-1] if lines else "", "Traceback" in err.getvalue()])
out.append(sorted(m for m in sys.modules if m.split(".")[0] == "ortools"))
print(json.dumps(out))
"""


def _requirements() -> dict[str, list[str]]:
    """The installed package's requirements by extra ('' for the base), names lower-cased."""
    out: dict[str, list[str]] = {}
    for req in requires("tpuplan") or []:
        spec, _, marker = req.partition(";")
        extra = marker.split("extra ==")[1].strip().strip("'\"") if "extra ==" in marker else ""
        out.setdefault(extra, []).append(spec.strip().lower().replace("_", "-"))
    return out


def test_the_base_install_is_the_runtime_and_extras_add_the_rest() -> None:
    reqs = _requirements()
    base = " ".join(reqs[""])
    assert "ortools" not in base and "tflite-runtime" not in base
    assert "ai-edge-litert" in base and "numpy" in base  # the .tflite schema comes with ai-edge-litert
    assert any(r.startswith("ortools") for r in reqs["planner"])
    assert {r.split(">")[0].split("<")[0] for r in reqs["device"]} == {"tflite-runtime", "numpy"}
    assert "numpy<2" in reqs["device"]
    assert any(r.startswith("tpuplan[") and "planner" in r for r in reqs["dev"])


def test_every_command_but_the_solvers_works_without_or_tools(tmp_path: Path) -> None:
    model = tmp_path / "fc.tflite"
    model.write_bytes(synth_fc(64, depth=3))
    plan_json, segs = str(tmp_path / "plan.json"), str(tmp_path / "segs")
    commands = [
        ["--help"],
        ["solve", str(model), "--tpus", "2"],
        ["compare", str(model), "--tpus", "2"],
        ["solve", str(model), "--cuts", "2", "-o", str(tmp_path / "plan.json")],
        ["split", str(model), str(tmp_path / "plan.json"), "-o", str(tmp_path / "segs"), "-q"],
        ["run", str(tmp_path / "segs"), "-n", "5", "-q"],
        # an Edge TPU plan measured on the CPU: the outputs are what is judged
        ["verify", plan_json, "--segments", segs, "-n", "3", "-q", "-m", str(model), "--outputs-only"],
        ["schema", "comparison"],
        ["show", str(tmp_path / "plan.json")],
        ["devices"],
    ]
    done = subprocess.run(
        [sys.executable, "-c", NO_ORTOOLS, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    *results, imported = json.loads(done.stdout.splitlines()[-1])
    assert imported == []
    by_name = {" ".join(c[:1] + (["--cuts"] if "--cuts" in c else [])): r for c, r in zip_strict(commands, results)}
    assert not any(traceback for _, _, traceback in results)
    for name in ("solve", "compare"):
        code, line, _ = by_name[name]
        assert code == 1 and line.startswith(f"plan: error: plan {name} needs "), line
        assert "OR-Tools" in line and "pip install 'tpuplan[planner]'" in line
    others = [c for c in by_name if c not in ("solve", "compare")]
    assert [by_name[c][0] for c in others] == [0] * len(others), {c: by_name[c] for c in others}


def test_python_39_stand_ins_behave_like_the_standard_library() -> None:
    assert list(zip_strict([1, 2], "ab")) == [(1, "a"), (2, "b")]
    for short in (([1, 2], "a"), ([1], "ab")):
        try:
            list(zip_strict(*short))
        except ValueError:
            continue
        raise AssertionError(f"zip_strict{short} did not refuse iterables of different lengths")
    assert list(pairwise([1, 2, 3])) == [(1, 2), (2, 3)] and list(pairwise([1])) == []

    def command(x: int | None = None, names: list[str] | None = None) -> str | None:
        return None

    resolve_annotations(command)  # what `plan` does for typer; on 3.9 `int | None` cannot be evaluated
    assert get_type_hints(command) == {"x": Optional[int], "names": Optional[list[str]], "return": Optional[str]}


def test_no_python_310_only_calls_in_the_package() -> None:
    """zip(strict=True) and itertools.pairwise are Python 3.10: the device install runs on 3.9, so the
    package calls tpuplan.compat's stand-ins (a call found here once broke every pool plan there)."""
    root = Path(__file__).resolve().parents[1] / "tpuplan"
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "pairwise":
                found.append(f"{path.relative_to(root)}:{node.lineno}: .pairwise")
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            if node.func.id == "zip" and any(k.arg == "strict" for k in node.keywords):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
        if "from itertools import pairwise" in path.read_text():
            found.append(f"{path.relative_to(root)}: itertools.pairwise")
    assert found == []
