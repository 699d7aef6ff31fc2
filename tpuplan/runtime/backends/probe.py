"""Run a model once in a child process before this process's interpreter ever sees it.

The native interpreter trusts the file: some corrupt models that pass every structural check of
`profiles.tflite.reader` still crash it (a segfault or a heap abort, seen in tests/profiles/test_fuzz_readers.py), and
a crash cannot be caught. So every model is first allocated and invoked on zeros in a throw-away child
process; if the child dies or hangs, the model is refused with a one-line error. Python exceptions in
the child (an unresolved custom op, a bad shape) are not crashes: they are returned, by model, for the
caller to judge (`plan split` refuses to write a segment that cannot run). Every model probed is
remembered by sha256 with its outcome, so each is probed once per process.

The child is `probe_child.py`, run by file with `python -I`: no tpuplan import, nothing from the working
directory or the environment's PYTHON* variables.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.backends.litert import tflite_module
from tpuplan.runtime.scratch import temporary_directory, write_temporary

_SAFE: dict[str, str | None] = {}  # sha256 of models that did not crash a child -> their Python error, if any
_LOCK = threading.Lock()
BASE_TIMEOUT_S, PER_MODEL_TIMEOUT_S = 60.0, 20.0
CHILD = Path(__file__).with_name("probe_child.py")


def _how(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def probe_models(models: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    """Refuse the first model (label, content) that crashes or hangs the interpreter in a child process;
    return, by label, the first line of the Python-level error of each model that could not run."""
    with _LOCK:
        todo: dict[str, tuple[str, bytes]] = {}
        for label, data in models:
            digest = hashlib.sha256(data).hexdigest()
            if digest not in _SAFE:
                todo.setdefault(digest, (label, data))
    if todo:
        _probe(list(todo.items()))
    with _LOCK:
        outcome = {label: _SAFE.get(hashlib.sha256(data).hexdigest()) for label, data in models}
    return {label: why for label, why in outcome.items() if why is not None}


def _probe(items: list[tuple[str, tuple[str, bytes]]]) -> None:
    module = tflite_module().__name__  # imported before any directory exists: nothing to clean if it fails
    with temporary_directory("tpuplan-probe-", "the models to probe") as tmp:
        for k, (_, (_, data)) in enumerate(items):
            write_temporary(Path(tmp) / f"{k:06d}.tflite", data, "the models to probe")
        timeout = BASE_TIMEOUT_S + PER_MODEL_TIMEOUT_S * len(items)
        argv = [sys.executable, "-I", str(CHILD), tmp, module]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            started = [ln for ln in _lines(exc.stdout) if ln.startswith("start ")]
            label = items[int(started[-1].split()[1])][1][0] if started else "a model"
            raise TpuplanError(
                f"{label}: the TFLite interpreter did not finish within {timeout:g} s on this model; refused"
            ) from None
    finished: dict[int, str | None] = {}
    current: int | None = None
    for line in _lines(done.stdout):
        word, _, rest = line.partition(" ")
        index, _, why = rest.partition(" ")
        if word == "start":
            current = int(index)
        elif word in ("ok", "error"):
            finished[int(index)] = (why or "error") if word == "error" else None
    if done.returncode != 0:
        if current is not None and current not in finished:
            raise TpuplanError(
                f"{items[current][1][0]}: the TFLite interpreter crashed on this model ({_how(done.returncode)} "
                "in a probe process); tpuplan refuses to load it"
            )
        tail = (done.stderr.strip().splitlines() or [""])[-1]
        raise TpuplanError(f"the interpreter probe process failed ({_how(done.returncode)}): {tail}")
    with _LOCK:
        _SAFE.update((digest, finished[k]) for k, (digest, _) in enumerate(items) if k in finished)


def require_probed(label: str, data: bytes) -> None:
    """Probe one model unless it already was in this process (its Python-level errors come later)."""
    probe_models([(label, data)])


def _lines(text: str | bytes | None) -> list[str]:
    if text is None:
        return []
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text.splitlines()
