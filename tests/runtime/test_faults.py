"""A device that disappears mid-run, simulated at the backend boundary (the LiteRT module).

With no Edge TPU here, the stand-in module builds real CPU interpreters and wraps those that a test
marks as "on the device": after N good invokes the device is gone, and every later call either raises,
as libedgetpu does when a USB TPU is unplugged, or blocks forever, as a wedged transfer can.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tpuplan.runtime.backends.kinds as kinds
import tpuplan.runtime.backends.registry as backends
from tests.cli_helpers import one_line_error, plan
from tests.shared_data import MODELS, require
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.tflite.reader import load_model
from tpuplan.runtime.backends.registry import InterpreterStage, random_inputs
from tpuplan.runtime.pipeline.threads import THREAD_PREFIX, Pipeline, PipelineError
from tpuplan.runtime.split.manifest import load_split
from tpuplan.runtime.split.write import write_split

MODEL = MODELS / "mobilenet_v1_0.25_128_quant.tflite"
CUTS = [7, 15, 23]  # four stages


class _Gone:
    """Shared state of one simulated device: invokes left before it vanishes, and how it vanishes."""

    def __init__(self, good_invokes: int, mode: str) -> None:
        self.left, self.mode = good_invokes, mode
        self.release = threading.Event()  # lets a "hang" return at the end of the test

    def check(self) -> None:
        if self.left > 0:
            self.left -= 1
            return
        if self.mode == "hang":
            self.release.wait()
        raise RuntimeError("Edge TPU device disappeared (simulated)")


class _FlakyInterpreter:
    def __init__(self, real: Any, gone: _Gone) -> None:
        self._real, self._gone = real, gone

    def invoke(self) -> None:
        self._gone.check()
        self._real.invoke()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _StandInModule:
    """What `tflite_module()` returns: real interpreters, the chosen ones wrapped by `_FlakyInterpreter`."""

    def __init__(self, real: Any, doomed: Callable[[dict[str, Any]], bool], gone: _Gone) -> None:
        self._real, self._doomed, self._gone = real, doomed, gone

    def Interpreter(self, **kwargs: Any) -> Any:  # mirrors the LiteRT name
        doomed = self._doomed(kwargs)
        kwargs.pop("experimental_delegates", None)  # the "delegate" is only a label here
        interp = self._real.Interpreter(**kwargs)
        return _FlakyInterpreter(interp, self._gone) if doomed else interp


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(MODEL)
    out = tmp_path_factory.mktemp("faults") / "segments"
    write_split(load_model(MODEL), out, cuts=CUTS)
    return out


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]:
            return
        time.sleep(0.02)
    pytest.fail("pipeline threads still running")


def _simulate(monkeypatch: pytest.MonkeyPatch, gone: _Gone, doomed: Callable[[dict[str, Any]], bool]) -> None:
    real = backends.tflite_module()
    monkeypatch.setattr(backends, "tflite_module", lambda: _StandInModule(real, doomed, gone))
    monkeypatch.setattr(kinds, "load_edgetpu_delegate", lambda device: f"delegate for {device}")


@pytest.mark.parametrize("mode", ["raise", "hang"])
def test_device_lost_mid_run(
    split_dir: Path, monkeypatch: pytest.MonkeyPatch, no_leaked_threads: None, mode: str
) -> None:
    good = 13
    gone = _Gone(good, mode)
    _simulate(monkeypatch, gone, lambda kw: bool(kw.get("experimental_delegates")))
    split = load_split(split_dir)
    manifest = split.manifest
    devices = [None, None, "usb:1", None]  # stage 2 sits on the TPU that vanishes
    stages = [
        InterpreterStage(
            f"stage{s.index}",
            split.contents[s.index],
            device=devices[s.index],
            backend="cpu" if devices[s.index] is None else "edgetpu",
        )
        for s in manifest.segments
    ]
    whole = InterpreterStage("whole", MODEL.read_bytes())
    rng = np.random.default_rng(3)
    feeds = [random_inputs(whole.input_details(), rng) for _ in range(40)]
    reference = [whole.run(f) for f in feeds]
    whole.close()

    popped: list[tuple[int, dict[str, Any]]] = []
    start = time.monotonic()
    pipe = Pipeline(
        stages, model_outputs=manifest.model.outputs, queue_size=2, stage_timeout_s=1.0 if mode == "hang" else None
    )
    try:
        with pytest.raises(PipelineError) as info:
            for feed in feeds:
                pipe.push(feed)
                while pipe._queues[-1][0].qsize():  # pop what is ready, as a caller streaming results would
                    popped.append(pipe.pop(timeout=5))
            pipe.close()
            while True:
                popped.append(pipe.pop(timeout=5))
    finally:
        pipe.stop()
        pipe.join(timeout=5)
        gone.release.set()  # let an abandoned "hung" invoke return so its thread ends
    elapsed = time.monotonic() - start

    err = info.value
    assert err.stage == "stage2" and err.seq == good, str(err)
    expected = "timed out" if mode == "hang" else "failed on Edge TPU usb:1"
    assert expected in str(err) and f"input #{good}" in str(err)
    assert "\n" not in str(err)
    assert elapsed < 10
    # every result handed out is the right one, in order, once; none at or after the failing input
    seqs = [seq for seq, _ in popped]
    assert seqs == list(range(len(popped))) and len(popped) <= good
    for seq, out in popped:
        assert set(out) == set(reference[seq])
        assert all(np.array_equal(out[k], reference[seq][k]) for k in out)


def test_plan_run_names_the_stage_and_input(
    split_dir: Path, monkeypatch: pytest.MonkeyPatch, no_leaked_threads: None
) -> None:
    gone = _Gone(5, "raise")
    seg1 = load_split(split_dir).contents[1]
    _simulate(monkeypatch, gone, lambda kw: kw.get("model_content") == seg1)
    res = plan("run", split_dir, "--inputs", "30")
    one_line_error(res, "stage 'stage1' failed on input #5")
    assert "disappeared" in res.stderr and res.stdout == ""


def test_a_vanished_device_keeps_failing(split_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = _Gone(1, "raise")
    _simulate(monkeypatch, gone, lambda kw: True)
    stage = InterpreterStage("s", load_split(split_dir).contents[0], backend="edgetpu", device="pci:0")
    feed = random_inputs(stage.input_details(), np.random.default_rng(0))
    assert set(stage.run(feed)) == set(stage.output_names)
    for _ in range(2):
        with pytest.raises(TpuplanError, match=r"stage s: invoke failed on Edge TPU pci:0 \(unplugged"):
            stage.run(feed)
    stage.close()
