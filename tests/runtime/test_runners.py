"""The other runners: one process per stage (order, outputs, a stage dying, Ctrl-C, nothing left behind)
and pycoral's PipelinedModelRunner, wired through a stand-in module (Google's pycoral is not installed here).
"""

from __future__ import annotations

import _thread
import os
import queue
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite.reader import parse_model
from tpuplan.runtime.backends.litert import tflite_module
from tpuplan.runtime.backends.probe import probe_models
from tpuplan.runtime.backends.registry import InterpreterStage
from tpuplan.runtime.pipeline.base import THREAD_PREFIX
from tpuplan.runtime.pipeline.processes import ProcessPipeline
from tpuplan.runtime.pipeline.procstage import busy_at
from tpuplan.runtime.pipeline.pycoral import PycoralPipeline, load_pycoral
from tpuplan.runtime.pipeline.routing import PipelineError
from tpuplan.runtime.pipeline.runners import open_pipeline
from tpuplan.runtime.pipeline.stage import StageSource
from tpuplan.runtime.split.cut import split_model

Array = np.ndarray[Any, Any]


class Tiny:
    """A small synthetic int8 FC model, cut in three (and in two: `pair`, to start fewer processes), and
    its unsplit outputs for some inputs."""

    def __init__(self, n: int = 60) -> None:
        data = synth_fc(16, depth=4, in_features=16, out_features=4, seed=3)
        loaded = parse_model(data, Path("tiny.tflite"))
        segments, halves = split_model(loaded, [2, 6]), split_model(loaded, [5])
        probe_models([(f"tiny {s.index}", s.data) for s in segments + halves])
        self.sources = [StageSource(f"s{s.index}", s.data, f"tiny segment {s.index}") for s in segments]
        self.pair = [StageSource(f"s{s.index}", s.data, f"tiny half {s.index}") for s in halves]
        whole = InterpreterStage("whole", data)
        self.input, self.output = whole.input_names[0], whole.output_names[0]
        rng = np.random.default_rng(0)
        self.feeds = [{self.input: rng.uniform(-1, 1, (1, 16)).astype(np.float32)} for _ in range(n)]
        self.expected = [whole.run(f)[self.output] for f in self.feeds]
        whole.close()

    def check(self, results: list[dict[str, Array]]) -> None:
        assert len(results) == len(self.expected)
        for got, want in zip_strict(results, self.expected):
            assert list(got) == [self.output] and np.array_equal(got[self.output], want)


@pytest.fixture(scope="module")
def tiny() -> Tiny:
    return Tiny()


@pytest.fixture
def nothing_left() -> Iterator[None]:
    """No pipeline thread or stage process outlives a test."""
    yield
    import multiprocessing

    assert [p for p in multiprocessing.active_children() if p.name.startswith(THREAD_PREFIX)] == []
    assert [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)] == []


def test_processes_keep_order_and_match_the_unsplit_model(tiny: Tiny, nothing_left: None) -> None:
    pipe = ProcessPipeline(tiny.sources, model_outputs=[tiny.output], queue_size=3)
    with pipe:
        results = pipe.run_all(tiny.feeds)
        assert pipe.join(30)
    tiny.check(results)
    assert [s.items for s in pipe.stats()] == [len(tiny.feeds)] * 3
    assert len(pipe.latencies_us()) == len(tiny.feeds) and pipe.stage_cpu_s() > 0
    with pytest.raises(PipelineError, match="stopped"):
        pipe.push(tiny.feeds[0])


def test_a_stage_process_that_dies_is_named_with_its_input(tiny: Tiny, nothing_left: None) -> None:
    pipe = ProcessPipeline(tiny.pair, model_outputs=[tiny.output], queue_size=2)

    def feeds() -> Iterator[dict[str, Array]]:
        for i, feed in enumerate(tiny.feeds * 1000):
            if i == 20:
                os.kill(pipe._procs[1].pid or 0, 9)
            yield feed

    died = r"stage 's1' failed( on input #\d+)?: its process died \(killed by SIGKILL"
    with pytest.raises(PipelineError, match=died):
        pipe.run_all(feeds())
    assert pipe.join(30)


def test_processes_stop_on_ctrl_c(tiny: Tiny, nothing_left: None) -> None:
    pipe = ProcessPipeline(tiny.pair, model_outputs=[tiny.output])

    def feeds() -> Iterator[dict[str, Array]]:
        for i in range(1_000_000):
            if i == 50:
                _thread.interrupt_main()
            yield tiny.feeds[i % len(tiny.feeds)]

    with pytest.raises(KeyboardInterrupt):
        pipe.run_all(feeds())
    assert pipe.join(30)


def test_bad_input_bad_segment_and_a_hung_stage(tiny: Tiny, nothing_left: None) -> None:
    wrong = r"input tensor 'input' is \(1, 8\) float32, the stages expect \(1, 16\)"
    with ProcessPipeline(tiny.pair, model_outputs=[tiny.output], queue_size=1, stage_timeout_s=0.5) as pipe:
        with pytest.raises(PipelineError, match=wrong):
            pipe.push({tiny.input: np.zeros((1, 8), np.float32)})
        # stage s1 reports being busy on input #7 since a second ago: the monitor kills it, a process can die
        seq_at, t_at = busy_at(2, 1)
        pipe._ctrl[seq_at], pipe._ctrl[t_at] = 7, time.perf_counter_ns() - 10**9
        with pytest.raises(PipelineError, match=r"^stage 's1' timed out after 0.5 s on input #7$"):
            pipe.pop(timeout=10)
    assert pipe.join(10) and pipe._procs[1].exitcode == -9
    broken = StageSource("broken", b"TFL3 not a model", "broken.tflite")
    with pytest.raises(TpuplanError, match=r"^cannot create an interpreter for broken\.tflite: ") as info:
        ProcessPipeline([broken], model_outputs=["y"])
    assert "\n" not in str(info.value)


# --- pycoral, through a stand-in of its two API generations -----------------------------------------
class _FakeRunner:
    """What pycoral's PipelinedModelRunner does, in Python: segments in turn, tensors passed by name."""

    api = 2

    def __init__(self, interpreters: list[Any]) -> None:
        self._interpreters = interpreters
        first = interpreters[0].get_input_details()
        self._input_types: Any = (
            {d["name"]: d["dtype"] for d in first} if self.api == 2 else [d["dtype"] for d in first]
        )
        self._names = [d["name"] for d in first]
        self._in: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._out: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._loop, daemon=True).start()

    def set_input_queue_size(self, size: int) -> None:
        assert size >= 1

    def push(self, tensors: Any) -> bool:
        self._in.put(tensors)
        return True

    def pop(self) -> Any:
        return self._out.get()

    def _loop(self) -> None:
        while req := self._in.get():
            tensors = dict(req) if isinstance(req, dict) else dict(zip_strict(self._names, req))
            for it in self._interpreters:
                for d in it.get_input_details():
                    it.set_tensor(d["index"], tensors[d["name"]])
                it.invoke()
                tensors.update({d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()})
            last = self._interpreters[-1].get_output_details()
            out = {d["name"]: tensors[d["name"]] for d in last}
            self._out.put(out if self.api == 2 else [out[d["name"]] for d in last])
        self._out.put(None)


def _stand_in(monkeypatch: pytest.MonkeyPatch, api: int) -> list[str | None]:
    Interpreter = tflite_module().Interpreter  # the build the expected outputs came from
    made: list[str | None] = []

    def make_interpreter(content: bytes, device: str | None = None) -> Any:
        made.append(device)
        return Interpreter(model_content=content)

    runner = type("PipelinedModelRunner", (_FakeRunner,), {"api": api})
    modules = {
        "pycoral": types.ModuleType("pycoral"),
        "pycoral.pipeline": types.ModuleType("pycoral.pipeline"),
        "pycoral.pipeline.pipelined_model_runner": types.ModuleType("pycoral.pipeline.pipelined_model_runner"),
        "pycoral.utils": types.ModuleType("pycoral.utils"),
        "pycoral.utils.edgetpu": types.ModuleType("pycoral.utils.edgetpu"),
        "tflite_runtime": types.ModuleType("tflite_runtime"),
        "tflite_runtime.interpreter": types.ModuleType("tflite_runtime.interpreter"),
    }
    modules["pycoral.pipeline.pipelined_model_runner"].PipelinedModelRunner = runner  # type: ignore[attr-defined]
    modules["pycoral.utils.edgetpu"].make_interpreter = make_interpreter  # type: ignore[attr-defined]
    modules["tflite_runtime.interpreter"].Interpreter = Interpreter  # type: ignore[attr-defined]
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return made


@pytest.mark.parametrize("api", [1, 2])
def test_pycoral_runner_wiring(tiny: Tiny, monkeypatch: pytest.MonkeyPatch, nothing_left: None, api: int) -> None:
    made = _stand_in(monkeypatch, api)
    on_tpus = [StageSource(s.name, s.content, s.where, "edgetpu", f"usb:{i}") for i, s in enumerate(tiny.sources)]
    with PycoralPipeline(on_tpus, model_outputs=[tiny.output], queue_size=4) as pipe:
        tiny.check(pipe.run_all(tiny.feeds))
        stats = pipe.stats()
    assert made == ["usb:0", "usb:1", "usb:2"]
    assert [s.items for s in stats] == [len(tiny.feeds)] * 3 and not any(s.timed for s in stats)
    with open_pipeline(
        "pycoral", tiny.sources, model_outputs=[tiny.output], queue_size=2, stage_timeout_s=None
    ) as pipe:  # cpu stages: tflite_runtime interpreters
        tiny.check(pipe.run_all(tiny.feeds))


def test_pycoral_absent_or_the_wrong_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycoral", None)
    with pytest.raises(TpuplanError, match="needs Google's pycoral") as info:
        load_pycoral()
    assert "\n" not in str(info.value)
    unrelated = types.ModuleType("pycoral")
    unrelated.__path__ = []  # a package without the pipeline module: PyPI's unrelated project
    monkeypatch.setitem(sys.modules, "pycoral", unrelated)
    monkeypatch.delitem(sys.modules, "pycoral.pipeline", raising=False)
    with pytest.raises(TpuplanError, match="PyPI package named pycoral is a different project"):
        load_pycoral()
