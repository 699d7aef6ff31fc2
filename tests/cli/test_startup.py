"""Issue 18, "fast start": what each command loads, and a signal during the loading.

A command that only reads or prints (help, version, inspect, show, devices, schema) must not import
OR-Tools (with pandas, a third of a second before any work); `--help` and `--version` need neither
numpy nor the document models. Each command runs in its own interpreter, exactly as from the shell,
and reports the modules it ended with. How long each takes is benchmarks/startup.py's business.

A Ctrl-C or SIGTERM while the libraries load must end like one later on: one line, exit 130 or 143, no
traceback through import frames (finding R15 of redteam-3). The signal is sent by the process to
itself from inside the import of a given module, so the test does not depend on timing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import Inputs, make_inputs

# Run `plan ARGS` through the console script's entry point, then write the modules loaded to a file.
PROBE = """
import json, sys
from tpuplan.cli import main
code = 0
try:
    main(sys.argv[2:])
except SystemExit as exc:
    code = exc.code
with open(sys.argv[1], "w") as fh:
    json.dump({"code": code, "modules": sorted({name.split(".")[0] for name in sys.modules})}, fh)
"""

# Send a signal to this process while `module` is first imported, then run `plan ARGS`.
INTERRUPT = """
import builtins, os, signal, sys
module, sig, argv = sys.argv[1], getattr(signal, sys.argv[2]), sys.argv[3:]
real_import = builtins.__import__

def hook(name, *args, **kwargs):
    if name.split(".")[0] == module:
        builtins.__import__ = real_import
        os.kill(os.getpid(), sig)
    return real_import(name, *args, **kwargs)

builtins.__import__ = hook
from tpuplan.cli import main
main(argv)
"""

HEAVY = {"ortools", "pandas", "matplotlib", "PIL"}
DOCUMENTS = ["profile", "device", "host", "plan", "comparison", "manifest", "run", "report"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("startup"))


def loaded(tmp_path: Path, *args: str | Path) -> set[str]:
    """The top-level packages `plan ARGS` had imported by the time it ended (it must end with 0)."""
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *map(str, args)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and out.is_file(), done.stderr
    result = json.loads(out.read_text())
    assert result["code"] in (0, None), (args, done.stderr)
    return set(result["modules"])


def light_commands(inputs: Inputs) -> dict[str, list[str | Path]]:
    return {
        "help": ["--help"],
        "version": ["--version"],
        "inspect": ["inspect", inputs.model],
        "inspect profile": ["inspect", inputs.profile],
        "show": ["show", inputs.plan],
        "show json": ["show", inputs.plan, "--json"],
        "devices": ["devices"],
        **{f"schema {doc}": ["schema", doc] for doc in DOCUMENTS},
    }


def test_light_commands_do_not_import_ortools(inputs: Inputs, tmp_path: Path) -> None:
    heavy = {name: sorted(loaded(tmp_path, *args) & HEAVY) for name, args in light_commands(inputs).items()}
    assert heavy == {name: [] for name in heavy}


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_no_library(tmp_path: Path, flag: str) -> None:
    assert loaded(tmp_path, flag) & {"numpy", "pydantic", *HEAVY} == set()


def test_solve_does_import_ortools(inputs: Inputs, tmp_path: Path) -> None:
    """The probe sees what a command imports: the command that needs OR-Tools has it."""
    assert "ortools" in loaded(tmp_path, "solve", inputs.profile, "--tpus", "2")


def test_importing_the_cli_loads_only_the_standard_library() -> None:
    """Everything else loads inside `main`, after its handlers are in place: the console script's own
    imports leave no window in which a signal prints a traceback."""
    code = (
        "import sys; before = set(sys.modules); import tpuplan.cli; "
        "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "['tpuplan']"


@pytest.mark.parametrize(
    ("module", "sig", "command"),
    [
        ("typer", "SIGINT", ["devices"]),
        ("numpy", "SIGINT", ["inspect", "MODEL"]),
        ("pydantic", "SIGTERM", ["show", "PLAN"]),
        ("ortools", "SIGINT", ["solve", "PROFILE", "--tpus", "2"]),
        ("ortools", "SIGTERM", ["solve", "PROFILE", "--tpus", "2"]),
    ],
)
def test_a_signal_during_the_imports_is_one_line(
    inputs: Inputs, tmp_path: Path, module: str, sig: str, command: list[str]
) -> None:
    files = {"MODEL": inputs.model, "PLAN": inputs.plan, "PROFILE": inputs.profile}
    args = [str(files.get(a, a)) for a in command]
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPT, module, sig, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if sig == "SIGINT":  # CPython may end a run interrupted inside an extension by SIGINT itself
        expected, codes = "plan: interrupted", (130, -signal.SIGINT)
    else:
        expected, codes = "plan: terminated", (128 + signal.SIGTERM,)
    assert done.returncode in codes and done.stderr.strip() == expected, (done.returncode, done.stderr[-2000:])
