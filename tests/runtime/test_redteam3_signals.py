"""Red-team pass 3 (issue 22), signals and resources: SIGHUP ends like SIGTERM, a closed standard output
ends a command quietly, stage processes print nothing when their start is cut short, /dev/shm is
checked before the rings are made, and a progress bar never swallows an error. Each test names its finding.
"""

from __future__ import annotations

import io
import multiprocessing.context
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite.reader import parse_model
from tpuplan.runtime.pipeline import shmring
from tpuplan.runtime.pipeline.processes import ProcessPipeline
from tpuplan.runtime.pipeline.stage import StageSource
from tpuplan.runtime.progress import TerminalBar, progress_bar
from tpuplan.runtime.split.write import write_split

PLAN_BIN = Path(sys.executable).parent / "plan"
EXE = [str(PLAN_BIN)] if PLAN_BIN.is_file() else [sys.executable, "-m", "tpuplan"]


@pytest.fixture(scope="module")
def segs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("r3signals")
    model = root / "fc.tflite"
    model.write_bytes(synth_fc(256, depth=4))
    write_split(parse_model(model.read_bytes(), model), root / "segs", cuts=[2, 5])
    return root / "segs"


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith((".tpuplan-", "tpuplan-")))


def _wait_for(condition: Any, child: subprocess.Popen[str], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition(), f"{what} never happened"


def test_r32_sighup_cleans_up_like_sigterm(segs: Path, tmp_path: Path) -> None:
    """R32: SIGHUP (a closed terminal) left `run`'s staging directory and verify's temporary segments."""
    out = tmp_path / "g.npz"
    child = subprocess.Popen(
        [*EXE, "run", str(segs), "-n", "200000", "-q", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: _hidden(tmp_path), child, "the staging directory")
    child.send_signal(signal.SIGHUP)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGHUP and err.strip() == "plan: terminated", err
    assert _hidden(tmp_path) == [] and not out.exists()


def test_a_closed_standard_output_ends_the_command_quietly(segs: Path) -> None:
    """SIGPIPE was ignored: `plan run ... | head` ran to the end. Now the run stops when its reader goes
    away and ends with 141 and nothing on stderr, as a Unix tool killed by SIGPIPE would."""
    read, write = os.pipe()
    started = time.monotonic()
    child = subprocess.Popen(
        [*EXE, "run", str(segs), "-n", "1000000", "-q"], stdout=write, stderr=subprocess.PIPE, text=True
    )
    os.close(write)
    time.sleep(1.0)
    os.close(read)  # the reader exits
    _, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGPIPE and err == "", err
    assert time.monotonic() - started < 50  # a million inputs take far longer: it stopped early


def test_r14_signals_wait_until_stage_processes_are_started(segs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """R14: SIGTERM while stage processes started cut their start data short: a child printed
    `UnpicklingError: pickle data was truncated`. The signal is now held until every start is done."""
    seen: list[str] = []
    before = signal.signal(signal.SIGTERM, lambda s, f: seen.append("handled"))
    real_start = multiprocessing.context.SpawnProcess.start

    def start(self: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of starting
        time.sleep(0.05)  # time enough for a handler to run, were it allowed to
        seen.append("start")
        real_start(self)

    monkeypatch.setattr(multiprocessing.context.SpawnProcess, "start", start)
    data = [(p.name, p.read_bytes()) for p in sorted(segs.glob("*.tflite"))]
    sources = [StageSource(f"stage{i}", content, name, "cpu", None) for i, (name, content) in enumerate(data)]
    try:
        pipe = ProcessPipeline(sources, model_outputs=["x"], queue_size=2)
    except Exception:
        pass
    else:
        pipe.stop()
        pipe.join(30)
    finally:
        signal.signal(signal.SIGTERM, before)
    assert seen == ["start", "start", "start", "handled"], seen  # held until all started, then handled once


def test_r16_not_enough_shared_memory_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """R16: with /dev/shm smaller than the rings the main process died of SIGBUS, with no message."""
    monkeypatch.setattr(shmring, "shm_free_bytes", lambda: 1 << 20)
    with pytest.raises(
        TpuplanError, match=r"not enough shared memory in /dev/shm .*\(4\.0 MiB needed, 1\.0 MiB free\)"
    ):
        shmring.create_block(4 << 20)


def test_r16_a_small_dev_shm_for_real(segs: Path) -> None:
    """The same with a 1 MiB /dev/shm (a private mount namespace; skipped where that is not allowed)."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("cannot make a private mount namespace here")
    cmd = " ".join([*EXE, "run", str(segs), "--workers", "processes", "-n", "50", "--queue-size", "1024"])
    res = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs /dev/shm && {cmd}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1 and res.stderr.startswith("plan: error: not enough shared memory"), res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_r35_an_error_mid_run_starts_on_its_own_line_after_the_latest_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """R35: an error was glued to the open bar line, which showed a stale count (0/31 after 30 images)."""
    monkeypatch.delenv("TERM", raising=False)
    stream = _Tty()
    with pytest.raises(TpuplanError), progress_bar(False, stream) as bar:
        assert isinstance(bar, TerminalBar)
        bar("running", 0, 31)
        for done in range(1, 31):
            bar("running", done, 31)  # faster than the bar redraws
        raise TpuplanError("image 31 is broken")
    text = stream.getvalue()
    assert text.endswith("\n") and "30/31" in text.rsplit("\r", 1)[-1], repr(text)


def test_r35_no_bar_on_a_dumb_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    with progress_bar(False, _Tty()) as bar:
        assert bar is None


def test_a_reader_gone_before_the_table_is_printed_is_quiet_too(tmp_path: Path) -> None:
    """SIGPIPE: click turned the EPIPE of the last print into a silent exit 1; now 141, as for the rest."""
    profile = tmp_path / "p.json"
    model = tmp_path / "m.tflite"
    model.write_bytes(synth_fc(32, depth=2))
    made = subprocess.run([*EXE, "profile", str(model), "-o", str(profile)], capture_output=True, timeout=120)
    assert made.returncode == 0, made.stderr
    read, write = os.pipe()
    os.close(read)  # nobody will ever read the table
    child = subprocess.run(
        [*EXE, "solve", str(profile), "--tpus", "2"],
        stdout=write,
        capture_output=False,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    os.close(write)
    assert child.returncode == 128 + signal.SIGPIPE and "Traceback" not in child.stderr, child.stderr
    assert not [ln for ln in child.stderr.splitlines() if ln.startswith("plan: error")], child.stderr
