"""Stages with copies in the threads pipeline: input #n goes to copy n mod r, copies finish in any order,
results come out in push order, a fault in one copy stops the run in bounded time naming the stage."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.runtime.test_pipeline import Array, live_threads, no_leaked_threads, sleepy, value
from tpuplan.runtime.pipeline.stage import FunctionStage
from tpuplan.runtime.pipeline.threads import THREAD_PREFIX, Pipeline, PipelineError

__all__ = ["no_leaked_threads"]  # the fixture, used here too


def copies(name: str, src: str, dst: str, r: int, seed: int, max_s: float = 0.004) -> list[FunctionStage]:
    rng = random.Random(seed)
    return [sleepy(name, src, dst, rng, max_s) for _ in range(r)]


@pytest.mark.parametrize("layout", [[3, 1, 1], [1, 4, 1], [1, 1, 2], [2, 3, 2], [1]])
def test_copies_keep_order_and_count(layout: list[int]) -> None:
    names = [f"s{i}" for i in range(len(layout))]
    tensors = ["x", *(f"t{i}" for i in range(len(layout) - 1)), "y"]
    stages = [copies(f"s{i}", tensors[i], tensors[i + 1], r, seed=i) for i, r in enumerate(layout)]
    with Pipeline(stages, model_outputs=["y"], queue_size=2) as pipe:
        results = pipe.run_all(value(i) for i in range(300))
        stats = pipe.stats()
    assert [int(r["y"][0]) for r in results] == [i + len(layout) for i in range(300)]
    assert [s.name for s in stats] == names and all(s.items == 300 for s in stats)


def test_copies_run_at_once_and_take_inputs_in_turn() -> None:
    """Four copies of a 20 ms stage: four inputs are in it at the same time, each copy takes every 4th."""
    seen: list[list[int]] = [[] for _ in range(4)]
    active, peak, lock = [0], [0], threading.Lock()

    def make(j: int) -> FunctionStage:
        def fn(d: dict[str, Array]) -> Array:
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            seen[j].append(int(d["x"][0]))
            time.sleep(0.02)
            with lock:
                active[0] -= 1
            return d["x"] * 2

        return FunctionStage("slow", ["x"], ["y"], fn)

    start = time.monotonic()
    with Pipeline([[make(j) for j in range(4)]], model_outputs=["y"], queue_size=4) as pipe:
        out = [int(r["y"][0]) for r in pipe.run_all(value(i) for i in range(40))]
    took = time.monotonic() - start
    assert out == [2 * i for i in range(40)]
    assert seen == [list(range(j, 40, 4)) for j in range(4)]
    assert peak[0] == 4 and took < 40 * 0.02 * 0.6  # one copy alone would need 0.8 s


def test_a_failing_copy_stops_the_run_naming_stage_and_input() -> None:
    def make(j: int) -> FunctionStage:
        def fn(d: dict[str, Array]) -> Array:
            if j == 1 and int(d["a"][0]) == 10:  # input #10 goes to copy 10 mod 3 = 1
                raise RuntimeError("device gone")
            return d["a"]

        return FunctionStage("mid", ["a"], ["b"], fn)

    stages = [
        FunctionStage("first", ["x"], ["a"], lambda d: d["x"]),
        [make(j) for j in range(3)],
        FunctionStage("last", ["b"], ["y"], lambda d: d["b"]),
    ]
    pipe = Pipeline(stages, model_outputs=["y"], queue_size=2)
    start = time.monotonic()
    got: list[int] = []
    with pytest.raises(PipelineError, match=r"stage 'mid' failed on input #10: RuntimeError: device gone"):
        for r in pipe.stream(value(i) for i in range(10_000)):
            got.append(int(r["y"][0]))
    assert time.monotonic() - start < 5 and live_threads() == []
    assert got == list(range(len(got))) and len(got) <= 10  # nothing lost or reordered before the fault


def test_a_hung_copy_times_out() -> None:
    release = threading.Event()

    def make(j: int) -> FunctionStage:
        return FunctionStage("maybe", ["x"], ["y"], lambda d: (release.wait(30) if j == 2 else None, d["x"])[1])

    pipe = Pipeline([[make(j) for j in range(3)]], model_outputs=["y"], stage_timeout_s=0.5)
    with pytest.raises(PipelineError, match=r"stage 'maybe' timed out after 0.5 s on input #2"):
        pipe.run_all(value(i) for i in range(10))
    assert f"{THREAD_PREFIX}-maybe.2" in live_threads()
    release.set()
    assert pipe.join(5)


def test_copies_must_be_alike() -> None:
    a = FunctionStage("s", ["x"], ["y"], lambda d: d["x"])
    with pytest.raises(PipelineError, match="copies of stage 's' differ"):
        Pipeline([[a, FunctionStage("s", ["x"], ["z"], lambda d: d["x"])]], model_outputs=["y"])
    with pytest.raises(PipelineError, match="at least one runner"):
        Pipeline([[]], model_outputs=["y"])


def test_close_with_items_in_copies() -> None:
    with Pipeline([copies("a", "x", "y", 3, seed=5, max_s=0.05)], model_outputs=["y"], queue_size=2) as pipe:
        for i in range(5):
            pipe.push(value(i))
        pipe.close()
        assert [int(pipe.pop(timeout=5)[1]["y"][0]) for _ in range(5)] == [1, 2, 3, 4, 5]
        with pytest.raises(PipelineError, match="end of stream"):
            pipe.pop(timeout=5)
        assert pipe.join(5)
