"""Tests of the format-independent pipeline runner: order, routing, backpressure, failures, shutdown."""

from __future__ import annotations

import _thread
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.shared_data import MODELS, needs
from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.pipeline.stage import FunctionStage
from tpuplan.runtime.pipeline.threads import THREAD_PREFIX, Pipeline, PipelineError, StageStats

MODEL = MODELS / "mobilenet_v1_0.25_128_quant.tflite"
Array = np.ndarray[Any, Any]


def live_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test must leave no pipeline thread behind (abandoned hung stages are released by the test)."""
    assert live_threads() == []
    yield
    deadline = time.monotonic() + 5
    while live_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live_threads() == []


def sleepy(name: str, src: str, dst: str, rng: random.Random, max_s: float = 0.004) -> FunctionStage:
    def fn(x: dict[str, Array]) -> Array:
        time.sleep(rng.uniform(0, max_s))
        return x[src] + 1

    return FunctionStage(name, [src], [dst], fn)


def value(i: int) -> dict[str, Array]:
    return {"x": np.array([i], dtype=np.int64)}


def test_order_is_kept_with_random_stage_durations() -> None:
    rng = random.Random(1)
    stages = [
        sleepy("s0", "x", "a", rng),
        sleepy("s1", "a", "b", rng),
        sleepy("s2", "b", "c", rng),
        sleepy("s3", "c", "y", rng),
    ]
    with Pipeline(stages, model_outputs=["y"], queue_size=2) as pipe:
        results = pipe.run_all(value(i) for i in range(60))
        stats = pipe.stats()
        latencies = pipe.latencies_us()
    assert [int(r["y"][0]) for r in results] == [i + 4 for i in range(60)]
    assert all(set(r) == {"y"} for r in results)
    assert [s.name for s in stats] == ["s0", "s1", "s2", "s3"]
    assert all(isinstance(s, StageStats) and s.items == 60 and s.mean_us > 0 for s in stats)
    assert all(s.median_us <= s.p90_us <= s.p99_us for s in stats)
    assert len(latencies) == 60 and all(v > 0 for v in latencies)


def test_push_and_pop_sequence_numbers() -> None:
    with Pipeline([FunctionStage("double", ["x"], ["y"], lambda d: d["x"] * 2)], model_outputs=["y"]) as pipe:
        seqs = [pipe.push(value(i)) for i in range(2)]
        popped = [pipe.pop(timeout=5) for _ in range(2)]
        with pytest.raises(PipelineError, match="no result within"):
            pipe.pop(timeout=0.1)
        pipe.close()
        with pytest.raises(PipelineError, match="end of stream"):
            pipe.pop(timeout=5)
        with pytest.raises(PipelineError, match="after close"):
            pipe.push(value(9))
        assert pipe.join(5)
    assert seqs == [0, 1]
    assert [(s, int(r["y"][0])) for s, r in popped] == [(0, 0), (1, 2)]


def test_backpressure_blocks_push() -> None:
    gate = threading.Event()

    def slow(d: dict[str, Array]) -> Array:
        gate.wait(10)
        return d["a"]

    stages = [
        FunctionStage("fast", ["x"], ["a"], lambda d: d["x"]),
        FunctionStage("slow", ["a"], ["y"], slow),
    ]
    pushed: list[int] = []
    with Pipeline(stages, model_outputs=["y"], queue_size=1) as pipe:
        pusher = threading.Thread(target=lambda: [pushed.append(pipe.push(value(i))) for i in range(10)])
        pusher.start()
        time.sleep(0.5)
        # slow holds 1, its queue 1, fast holds 1 blocked on put, the first queue 1: at most 4 accepted
        assert pusher.is_alive()
        assert 1 <= len(pushed) <= 4
        gate.set()
        pusher.join(10)
        assert not pusher.is_alive()
        assert [pipe.pop(timeout=5)[0] for _ in range(10)] == list(range(10))
    assert pushed == list(range(10))


def test_tensors_skip_stages_and_are_dropped_after_last_use() -> None:
    seen: dict[str, list[str]] = {}

    def record(name: str, fn: Any) -> Any:
        def wrapped(d: dict[str, Array]) -> Any:
            seen.setdefault(name, sorted(d))
            return fn(d)

        return wrapped

    stages = [
        FunctionStage("s0", ["x"], ["a", "b"], record("s0", lambda d: {"a": d["x"] + 1, "b": d["x"] * 10})),
        FunctionStage("s1", ["a"], ["c"], record("s1", lambda d: d["a"] * 2)),
        FunctionStage("s2", ["b", "c"], ["y"], record("s2", lambda d: d["b"] + d["c"])),
    ]
    with Pipeline(stages, model_outputs=["y", "x", "a"]) as pipe:
        results = pipe.run_all(dict(value(i), unused=np.zeros(1)) for i in range(20))
    assert seen == {"s0": ["x"], "s1": ["a"], "s2": ["b", "c"]}
    for i, r in enumerate(results):
        assert list(r) == ["y", "x", "a"]
        assert (int(r["y"][0]), int(r["x"][0]), int(r["a"][0])) == (10 * i + 2 * (i + 1), i, i + 1)
    # routing internals: 'unused' is never taken in; after s1, only what s2 or the outputs need survives
    assert pipe._external == ["x"]
    assert pipe._keep[1:] == [{"b", "c", "x", "a", "y"}, {"y", "x", "a"}]


def test_bad_wiring_and_missing_inputs_are_reported() -> None:
    ident = lambda d: d["x"]  # noqa: E731
    with pytest.raises(TpuplanError, match="later 's1'"):
        Pipeline(
            [FunctionStage("s0", ["z"], ["y"], ident), FunctionStage("s1", ["x"], ["z"], ident)],
            model_outputs=["y"],
        )
    with pytest.raises(PipelineError, match="unique"):
        Pipeline(
            [FunctionStage("s", ["x"], ["a"], ident), FunctionStage("s", ["a"], ["y"], ident)],
            model_outputs=["y"],
        )
    with Pipeline([FunctionStage("s0", ["x", "w"], ["y"], ident)], model_outputs=["y"]) as pipe:
        with pytest.raises(PipelineError, match="stage 's0' needs input tensor 'w'") as info:
            pipe.push(value(0))
        assert info.value.stage == "s0"
    with Pipeline([FunctionStage("liar", ["x"], ["y", "q"], lambda d: {"y": d["x"]})], model_outputs=["y"]) as pipe:
        pipe.push(value(0))
        with pytest.raises(PipelineError, match=r"stage 'liar' failed on input #0: .*'q' was not produced"):
            pipe.pop(timeout=5)


def test_stage_error_stops_everything() -> None:
    def boom(d: dict[str, Array]) -> Array:
        if int(d["a"][0]) == 7:
            raise ValueError("bad pixel")
        return d["a"]

    stages = [
        FunctionStage("first", ["x"], ["a"], lambda d: d["x"]),
        FunctionStage("picky", ["a"], ["b"], boom),
        FunctionStage("last", ["b"], ["y"], lambda d: d["b"]),
    ]
    pipe = Pipeline(stages, model_outputs=["y"], queue_size=2)
    with pytest.raises(PipelineError, match=r"stage 'picky' failed on input #7: ValueError: bad pixel") as info:
        pipe.run_all(value(i) for i in range(20))
    assert (info.value.stage, info.value.seq) == ("picky", 7)
    assert isinstance(info.value.__cause__, ValueError)
    assert live_threads() == []
    with pytest.raises(PipelineError, match="#7"):  # every later call fails the same way
        pipe.push(value(0))


def test_stage_error_wakes_blocked_push_and_pop() -> None:
    def boom(d: dict[str, Array]) -> Array:
        time.sleep(0.01)
        if int(d["x"][0]) == 7:
            raise RuntimeError("dead")
        return d["x"]

    pipe = Pipeline([FunctionStage("only", ["x"], ["y"], boom)], model_outputs=["y"], queue_size=1)
    errors: list[BaseException] = []

    def pusher() -> None:
        try:
            for i in range(1000):
                pipe.push(value(i))
        except PipelineError as exc:
            errors.append(exc)

    t = threading.Thread(target=pusher)
    t.start()
    popped = []
    with pytest.raises(PipelineError, match="'only' failed on input #7"):
        while True:
            popped.append(pipe.pop(timeout=10)[0])
    t.join(5)
    assert not t.is_alive() and len(errors) == 1 and "#7" in str(errors[0])
    assert popped == list(range(len(popped))) and len(popped) <= 7
    assert pipe.join(5)


@pytest.mark.parametrize("how", ["close", "context"])
def test_shutdown_with_items_in_flight(how: str) -> None:
    rng = random.Random(2)
    stages = [sleepy("a", "x", "p", rng, 0.05), sleepy("b", "p", "y", rng, 0.05)]
    start = time.monotonic()
    with Pipeline(stages, model_outputs=["y"], queue_size=2) as pipe:
        for i in range(4):
            pipe.push(value(i))
        if how == "close":
            pipe.close()
            assert [int(pipe.pop(timeout=5)[1]["y"][0]) for _ in range(4)] == [2, 3, 4, 5]
            assert pipe.join(5)
    assert time.monotonic() - start < 3
    assert pipe.join(0)
    with pytest.raises(PipelineError, match="stopped"):
        pipe.pop(timeout=1)


def test_hung_stage_times_out() -> None:
    release = threading.Event()
    closed = threading.Event()

    class Hung(FunctionStage):
        def close(self) -> None:
            closed.set()

    stages = [
        FunctionStage("ok", ["x"], ["a"], lambda d: d["x"]),
        Hung("stuck", ["a"], ["y"], lambda d: (release.wait(30), d["a"])[1]),
    ]
    pipe = Pipeline(stages, model_outputs=["y"], stage_timeout_s=0.5)
    start = time.monotonic()
    pipe.push(value(0))
    with pytest.raises(PipelineError, match=r"stage 'stuck' timed out after 0.5 s on input #0"):
        pipe.pop()
    assert time.monotonic() - start < 5
    with pytest.raises(PipelineError, match="timed out"):
        pipe.push(value(1))
    assert not pipe.join(1)  # the hung stage is abandoned, join does not wait for it forever
    assert live_threads() == [f"{THREAD_PREFIX}-stuck"]
    release.set()
    assert pipe.join(5) and closed.wait(5)


def test_keyboard_interrupt_stops_and_reraises() -> None:
    def interrupt(d: dict[str, Array]) -> Array:
        if int(d["x"][0]) == 3:
            _thread.interrupt_main()
        time.sleep(0.001)
        return d["x"]

    pipe = Pipeline([FunctionStage("ctrl-c", ["x"], ["y"], interrupt)], model_outputs=["y"])
    with pytest.raises(KeyboardInterrupt):
        pipe.run_all(value(i) for i in range(100_000))
    assert live_threads() == []


def test_ten_thousand_items_exactly_once_in_order() -> None:
    n = 10_000
    stages = [
        FunctionStage("inc", ["x"], ["a"], lambda d: d["x"] + 1),
        FunctionStage("dbl", ["a"], ["b"], lambda d: d["a"] * 2),
        FunctionStage("neg", ["b", "x"], ["y"], lambda d: d["x"] - d["b"]),
    ]
    with Pipeline(stages, model_outputs=["y"], queue_size=8) as pipe:
        results = pipe.run_all(value(i) for i in range(n))
    assert len(results) == n
    got = np.array([r["y"][0] for r in results])
    idx = np.arange(n)
    assert np.array_equal(got, idx - 2 * (idx + 1))
    assert [s.items for s in pipe.stats()] == [n, n, n]


@needs(MODEL)
def test_real_tflite_model_in_a_pipeline() -> None:
    from ai_edge_litert.interpreter import Interpreter

    def make() -> tuple[Any, str, int, int]:
        interp = Interpreter(model_path=str(MODEL))
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        return interp, inp["name"], inp["index"], out["index"]

    interp, in_name, in_idx, out_idx = make()

    def model(d: dict[str, Array]) -> Array:
        interp.set_tensor(in_idx, d[in_name])
        interp.invoke()
        return np.array(interp.get_tensor(out_idx))  # a copy: the interpreter reuses its buffer

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(1, 128, 128, 3), dtype=np.uint8) for _ in range(5)]
    stages = [
        FunctionStage("mobilenet", [in_name], ["logits"], model),
        FunctionStage("argmax", ["logits"], ["label"], lambda d: np.argmax(d["logits"], axis=-1)),
    ]
    with Pipeline(stages, model_outputs=["label", "logits"]) as pipe:
        results = pipe.run_all({in_name: img} for img in images)

    ref, _, ref_in, ref_out = make()
    for img, r in zip_strict(images, results):
        ref.set_tensor(ref_in, img)
        ref.invoke()
        expected = ref.get_tensor(ref_out)
        assert np.array_equal(r["logits"], expected)
        assert int(r["label"][0]) == int(np.argmax(expected))
