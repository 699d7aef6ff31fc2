"""The package's shape: one installed name, layers that only import downward, no cycles.

profiles (model -> profile, cost models) <- planner (profile -> plan) <- runtime (plan -> run) <- cli.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"profiles": 0, "planner": 1, "runtime": 2, "cli": 3}
FOLDERS = {"profiles": ROOT / "profiles", "planner": ROOT / "planner", "runtime": ROOT / "runtime",
           "cli": ROOT / "tpuplan" / "cli"}


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level) of every import in a file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, id(node) in top))
    return out


def _modules() -> list[tuple[str, Path]]:
    return [(layer, p) for layer, folder in FOLDERS.items() for p in sorted(folder.rglob("*.py"))]


def test_every_import_names_the_tpuplan_package() -> None:
    bare = [f"{p.relative_to(ROOT)}:{line}: {mod}" for _, p in _modules() for line, mod, _ in _imports(p)
            if mod.split(".")[0] in ("profiles", "planner", "runtime", "cli")]
    assert len(_modules()) > 40
    assert bare == []


def test_layers_import_only_downward() -> None:
    upward = []
    for layer, path in _modules():
        for line, mod, _ in _imports(path):
            parts = mod.split(".")
            if parts[0] == "tpuplan" and len(parts) > 1 and parts[1] in LAYERS and LAYERS[parts[1]] > LAYERS[layer]:
                upward.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {mod}")
    assert upward == []


def test_no_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for layer, path in _modules():
        name = "tpuplan." + (str(path.relative_to(ROOT / "tpuplan")) if layer == "cli" else
                             str(path.relative_to(ROOT))).removesuffix(".py").replace(os.sep, ".")
        name = name.removesuffix(".__init__")
        graph[name] = {mod for _, mod, top in _imports(path) if mod.startswith("tpuplan.") and top}
    graph = {k: {m for m in v if m in graph and m != k} for k, v in graph.items()}
    seen: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        seen[node] = 1
        for nxt in sorted(graph[node]):
            if seen.get(nxt) == 1 and not (node.startswith(nxt + ".") or nxt == "tpuplan.cli"):
                return [*stack, node, nxt]
            if nxt not in seen and (cycle := visit(nxt, [*stack, node])):
                return cycle
        seen[node] = 2
        return None

    cycles = [c for n in sorted(graph) if n not in seen and (c := visit(n, []))]
    assert cycles == []


def test_function_local_imports_only_for_optional_dependencies() -> None:
    optional = {"matplotlib", "matplotlib.pyplot", "ai_edge_litert", "tflite_runtime", "pycoral"}
    local = [f"{p.relative_to(ROOT)}:{line}: {mod}" for _, p in _modules() for line, mod, top in _imports(p)
             if not top and mod not in optional and not mod.startswith("pycoral")]
    assert local == []


@pytest.mark.slow
def test_installed_package_is_only_tpuplan(tmp_path: Path) -> None:
    """`pip install .` puts `tpuplan` (and its dist-info) at the top of site-packages, nothing else."""
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("tpuplan", "profiles", "planner", "runtime"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(src)],
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0 and "No matching distribution" in done.stderr:
        pytest.skip("no package index to fetch the build backend from")
    assert done.returncode == 0, done.stderr
    (wheel,) = wheels.glob("tpuplan-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"tpuplan"}
    assert "tpuplan/profiles/presets/devices/edgetpu-usb.json" in names and "tpuplan/py.typed" in names
    assert "tpuplan/profiles/presets/hosts/pycoral.json" in names
    assert "tpuplan/runtime/probe_child.py" in names
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    top = sorted(p.name for p in target.iterdir() if p.name != "bin")
    assert [t for t in top if not t.endswith(".dist-info")] == ["tpuplan"]
    probe = ("import tpuplan.planner.solve, tpuplan.runtime.backends as b, tpuplan.profiles.device as d; "
             "print(tpuplan.__file__); print(d.preset('edgetpu-usb').name)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=env, check=False)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert Path(first).is_relative_to(target) and second == "edgetpu-usb"
