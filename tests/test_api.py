"""The public face: `import tpuplan` gives a build script its verbs and documents, lazily.

Each name in `tpuplan.__all__` is the very object its module defines; the type checkers' list (the
`if TYPE_CHECKING:` block) names the same; importing tpuplan loads none of the library until a name is
used; and the version is one constant, the one the installed metadata and `plan --version` show.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import tpuplan
from tests.cli_helpers import plan

ROOT = Path(__file__).resolve().parents[1]
VERBS = {"load_model", "build_profile", "measure_profile", "solve", "write_split", "run_split", "verify"}
DOCUMENTS = {"LoadedModel", "Profile", "Plan", "SegmentManifest", "RunResult", "VerifyReport", "Comparison"}


def test_every_exported_name_is_its_modules_own() -> None:
    exports = tpuplan._EXPORTS
    assert set(exports) >= VERBS | DOCUMENTS and set(tpuplan.__all__) == {"__version__", *exports}
    wrong = [
        name
        for name, module in exports.items()
        if getattr(tpuplan, name) is not getattr(importlib.import_module(module), name)
    ]
    assert wrong == []


def test_the_type_checkers_list_is_the_same() -> None:
    tree = ast.parse((ROOT / "tpuplan" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    typed = {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name  # `X as X`: re-exported for type checkers
    }
    assert typed == tpuplan._EXPORTS


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_verb"):
        tpuplan.no_such_verb  # type: ignore[attr-defined]  # noqa: B018


def test_import_tpuplan_loads_no_library() -> None:
    code = "import sys, tpuplan; print(sorted(m for m in ('numpy', 'pydantic', 'ortools') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_version_is_one_constant() -> None:
    res = plan("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"tpuplan {tpuplan.__version__}"
    assert importlib.metadata.version("tpuplan") == tpuplan.__version__
    assert 'attr = "tpuplan.__version__"' in (ROOT / "pyproject.toml").read_text()
