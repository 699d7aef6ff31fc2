"""No shell, no pickle, no eval anywhere in the project's code: plans and models come from other people.

The check walks the syntax tree of every module, so a comment or a string that mentions these names is
not a finding, while an aliased import or a `shell=True` keyword is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tpuplan", "benchmarks")

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}
UNSAFE_ATTRS = {
    ("os", "system"),
    ("os", "popen"),
    ("os", "execl"),
    ("os", "execlp"),
    ("os", "execv"),
    ("os", "execvp"),
    ("os", "spawnl"),
    ("os", "spawnv"),
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
}


def findings(source: str, where: str = "<snippet>") -> list[str]:
    """Every unsafe construct in `source`, as 'where:line: what'."""
    out: list[str] = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            out += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
            out.append(f"{line}: from {node.module} import")
        elif isinstance(node, ast.Call):
            fn = node.func
            if isinstance(fn, ast.Name) and fn.id in UNSAFE_BUILTINS:
                out.append(f"{line}: {fn.id}()")
            owner = fn.value.id if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) else ""
            if isinstance(fn, ast.Attribute) and (owner, fn.attr) in UNSAFE_ATTRS:
                out.append(f"{line}: {owner}.{fn.attr}()")
            for kw in node.keywords:
                truthy = not (isinstance(kw.value, ast.Constant) and kw.value.value in (False, None))
                if kw.arg in ("shell", "allow_pickle") and truthy:
                    out.append(f"{line}: {kw.arg}=...")
    return out


def project_modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle",
        "import cloudpickle as cp",
        "from marshal import loads",
        "eval('1')",
        "exec(code)",
        "subprocess.run(cmd, shell=True)",
        "subprocess.Popen('ls', shell=flag)",
        "os.system('ls')",
        "np.load(path, allow_pickle=True)",
        "yaml.load(text)",
    ],
)
def test_checker_catches(snippet: str) -> None:
    assert len(findings(snippet)) == 1


@pytest.mark.parametrize(
    "snippet",
    [
        "subprocess.run(['edgetpu_compiler', path], shell=False)",
        "np.load(path, allow_pickle=False)",
        "x = 'eval(pickle)'",
        "model.evaluate(x)",
        "import json",
    ],
)
def test_checker_allows(snippet: str) -> None:
    assert findings(snippet) == []


def test_project_has_no_shell_pickle_or_eval() -> None:
    modules = project_modules()
    assert len(modules) > 30  # the walk really found the packages
    bad = [f for path in modules for f in findings(path.read_text(), str(path.relative_to(ROOT)))]
    assert bad == []
