"""The package's shape: one installed name of real folders, layers that only import downward, no cycles.

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
PACKAGE = ROOT / "tpuplan"
FOLDERS = {layer: PACKAGE / layer for layer in LAYERS}
BASE = [PACKAGE / "compat.py"]  # below every layer: it imports none of them


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level) of every import run in a file: those under `if
    TYPE_CHECKING:` are for the type checker only and are left out."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    typing_only = {
        id(inner)
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, id(node) in top))
    return out


def _modules() -> list[tuple[str, Path]]:
    return [("base", p) for p in BASE] + [
        (layer, p) for layer, folder in FOLDERS.items() for p in sorted(folder.rglob("*.py"))
    ]


def test_every_import_names_the_tpuplan_package() -> None:
    bare = [
        f"{p.relative_to(ROOT)}:{line}: {mod}"
        for _, p in _modules()
        for line, mod, _ in _imports(p)
        if mod.split(".")[0] in ("profiles", "planner", "runtime", "cli")
    ]
    assert len(_modules()) > 40
    assert bare == []


def test_layers_import_only_downward() -> None:
    upward = []
    for layer, path in _modules():
        for line, mod, _ in _imports(path):
            parts = mod.split(".")
            if (
                parts[0] == "tpuplan"
                and len(parts) > 1
                and parts[1] in LAYERS
                and LAYERS[parts[1]] > LAYERS.get(layer, -1)
            ):
                upward.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {mod}")
    assert upward == []


def test_no_cycles_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for _, path in _modules():
        name = str(path.relative_to(ROOT)).removesuffix(".py").replace(os.sep, ".")
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


# The solver's modules import OR-Tools (the [planner] extra, Python >= 3.10): the commands that need them
# import them when they run, so that a device-side install (no OR-Tools) still has every other command.
SOLVER = {"tpuplan.planner.solve", "tpuplan.planner.search.cpsat", "tpuplan.planner.search.replicate"}


def test_function_local_imports_only_for_optional_dependencies() -> None:
    """In the library layers an import sits at the top, where a reader (and the cycle check) sees it;
    only an optional dependency (matplotlib, LiteRT, pycoral) is imported where it is used.

    tpuplan/cli is exempt: each command imports the library it needs in its body, so that `plan --help`,
    `inspect`, `show`, `devices`, `schema` and `--version` start without OR-Tools, matplotlib or the
    document models they do not use (issue 18, benchmarks/startup.py), and so that a signal arriving
    while they load reaches `main`'s handlers. What the CLI may import at its top is checked below."""
    optional = {"matplotlib", "matplotlib.pyplot", "ai_edge_litert", "tflite_runtime", "pycoral", "eval_type_backport"}
    optional |= SOLVER
    local = [
        f"{p.relative_to(ROOT)}:{line}: {mod}"
        for layer, p in _modules()
        if layer != "cli"
        for line, mod, top in _imports(p)
        if not top and mod not in optional and not mod.startswith("pycoral")
    ]
    assert local == []


# What tpuplan/cli may import at module level from the library: modules that import neither numpy,
# pydantic nor OR-Tools (each is small and says so), so that building the command tree costs nothing.
CLI_LIGHT = {
    "tpuplan.profiles.errors",
    "tpuplan.planner.defaults",
    "tpuplan.runtime.progress",
    "tpuplan.runtime.backends.kinds",
    "tpuplan.runtime.verify.tolerance",
    "tpuplan.runtime.split.flags",
    "tpuplan.compat",
}


def test_the_cli_imports_the_library_where_it_is_used() -> None:
    """The command modules import only typer, the standard library, each other and CLI_LIGHT at their top."""
    heavy = [
        f"{p.relative_to(ROOT)}:{line}: {mod}"
        for layer, p in _modules()
        if layer == "cli"
        for line, mod, top in _imports(p)
        if top and mod.startswith("tpuplan.") and not mod.startswith("tpuplan.cli") and mod not in CLI_LIGHT
    ]
    third_party = [
        f"{p.relative_to(ROOT)}:{line}: {mod}"
        for layer, p in _modules()
        if layer == "cli"
        for line, mod, top in _imports(p)
        if top and mod.split(".")[0] not in sys.stdlib_module_names and mod.split(".")[0] not in ("typer", "tpuplan")
    ]
    assert heavy == [] and third_party == []


def _tracked() -> list[tuple[str, str]]:
    """(mode, path) of every file git tracks here, or () outside a git checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return []
    done = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return [(line.split()[0], line.split("\t", 1)[1]) for line in done.splitlines()]


def test_no_symbolic_links() -> None:
    """Links break Windows checkouts (core.symlinks=false), debuggers and grep: none is tracked or on disk."""
    tracked = _tracked()
    links = [path for mode, path in tracked if mode == "120000"]
    on_disk = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*") if p.is_symlink()]
    assert links == [] and on_disk == []


def _checkout_without_links(dest: Path) -> None:
    """The tracked files as a clone with core.symlinks=false would hold them: a link becomes a plain file
    holding its target's name (outside git, the tree as it is)."""
    tracked = _tracked()
    if not tracked:
        for name in ("pyproject.toml", "README.md", "tpuplan"):
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, dest / name)
        return
    for mode, rel in tracked:
        src, out = ROOT / rel, dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if mode == "120000":
            out.write_text(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, out)


@pytest.mark.slow
def test_installed_package_is_only_tpuplan(tmp_path: Path) -> None:
    """A clone with core.symlinks=false builds a complete wheel: every module and preset of tpuplan/, and
    `pip install` puts `tpuplan` (and its dist-info) at the top of site-packages, nothing else."""
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    src.mkdir()
    _checkout_without_links(src)
    wheels = tmp_path / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0 and "No matching distribution" in done.stderr:
        pytest.skip("no package index to fetch the build backend from")
    assert done.returncode == 0, done.stderr
    (wheel,) = wheels.glob("tpuplan-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"tpuplan"}
    wanted = {
        str(p.relative_to(src))
        for p in (src / "tpuplan").rglob("*")
        if p.suffix in (".py", ".json") or p.name == "py.typed"
    }
    assert len(wanted) > 90 and sorted(wanted - names) == []
    assert "tpuplan/profiles/pricing/presets/devices/edgetpu-usb.json" in names
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    top = sorted(p.name for p in target.iterdir() if p.name != "bin")
    assert [t for t in top if not t.endswith(".dist-info")] == ["tpuplan"]
    probe = (
        "import tpuplan.cli, tpuplan.planner.solve, tpuplan.profiles.pricing.device as d; "
        "print(tpuplan.__file__); print(d.preset('edgetpu-usb').name)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert Path(first).is_relative_to(target) and second == "edgetpu-usb"
