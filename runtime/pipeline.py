"""Run model segments as a pipeline: one thread per stage, bounded queues, tensors routed by name.

Independent of any model format: a stage is anything with `run(dict) -> dict` (see `StageRunner`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.stage import Array, StageRunner, Tensors

THREAD_PREFIX = "tpuplan-pipeline"  # every thread the pipeline starts is named so, leaks are easy to spot
_POLL_S = 0.05  # how long a blocked put/get sleeps before looking at the stop flag again


class PipelineError(TpuplanError):
    """A stage failed or timed out, or the pipeline was stopped; `stage` and `seq` say where, when known."""

    def __init__(self, message: str, *, stage: str | None = None, seq: int | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.seq = seq


@dataclass(frozen=True)
class StageStats:
    """Timing of one stage, to see which segment bounds the throughput and where items wait."""

    name: str
    items: int
    mean_us: float  # invoke time statistics
    median_us: float
    p90_us: float
    p99_us: float
    wait_in_us: float  # total time waiting for the next input (stage starved)
    blocked_out_us: float  # total time waiting for room downstream (stage blocked)


@dataclass(slots=True)
class _Item:
    seq: int
    tensors: Tensors
    t_push_ns: int


class _EndOfStream:
    """Sentinel type that `close()` sends through the stages."""


_Slot = _Item | _EndOfStream


@dataclass
class _Counters:
    items: int = 0
    invoke_ns: list[int] = field(default_factory=list)
    wait_ns: int = 0
    blocked_ns: int = 0


def _plan_routing(stages: Sequence[StageRunner], outputs: list[str]) -> tuple[list[str], list[set[str]]]:
    """Names the caller must push, and for each stage the names still needed after it (drop the rest)."""
    producer: dict[str, int] = {}
    for i, stage in enumerate(stages):
        for n in stage.output_names:
            if n in producer:
                other = stages[producer[n]].name
                raise PipelineError(f"tensor {n!r} is produced by both stage {other!r} and {stage.name!r}")
            producer[n] = i
    external: list[str] = []
    for i, stage in enumerate(stages):
        for n in stage.input_names:
            p = producer.get(n, -1)
            if p >= i:
                msg = f"stage {stage.name!r} needs tensor {n!r}, made only by the later {stages[p].name!r}"
                raise PipelineError(msg, stage=stage.name)
            if p < 0 and n not in external:
                external.append(n)
    external += [n for n in outputs if n not in producer and n not in external]
    keep: list[set[str]] = []
    needed = set(outputs)
    for stage in reversed(stages):
        keep.insert(0, set(needed))
        needed |= set(stage.input_names)
    return external, keep


class Pipeline:
    """Push inputs, pop results in push order; stage i+1 works on item n while stage i works on item n+1.

    The pipeline owns its stages once built and closes each from its own worker thread. Results wait in
    an unbounded queue, so `close()` + `join()` never deadlocks; the bounded queues in front of the stages
    give the backpressure on `push`. With `stage_timeout_s` the workers are daemon threads: a hung stage
    cannot be killed, so it is abandoned (its thread ends whenever run() returns) and must not keep the
    process alive.
    """

    def __init__(
        self,
        stages: Sequence[StageRunner],
        *,
        model_outputs: Sequence[str],
        queue_size: int = 2,
        stage_timeout_s: float | None = None,
    ) -> None:
        names, outs = [s.name for s in stages], list(model_outputs)
        for bad, msg in [
            (not stages, "a pipeline needs at least one stage"),
            (len(set(names)) != len(names), f"stage names must be unique, got {names}"),
            (not outs or len(set(outs)) != len(outs), f"model_outputs must be distinct names, not {outs}"),
            (queue_size < 1, f"queue_size must be at least 1, got {queue_size}"),
            (stage_timeout_s is not None and stage_timeout_s <= 0, f"bad stage_timeout_s {stage_timeout_s}"),
        ]:
            if bad:
                raise PipelineError(msg)
        self._stages, self._outputs = list(stages), outs
        self._external, self._keep = _plan_routing(self._stages, self._outputs)
        self._timeout_s = stage_timeout_s
        self._queues: list[queue.Queue[_Slot]] = [queue.Queue(maxsize=queue_size) for _ in stages]
        self._queues.append(queue.Queue())  # results
        self._stop = threading.Event()
        self._error_lock, self._push_lock, self._pop_lock = (threading.Lock() for _ in range(3))
        self._error: PipelineError | None = None
        self._closed = False
        self._next_seq = self._next_pop = 0
        self._busy: list[tuple[int, int] | None] = [None] * len(stages)  # (seq, start ns) during run()
        self._counters = [_Counters() for _ in stages]
        self._latencies_ns: list[int] = []
        self._abandoned: set[threading.Thread] = set()
        daemon = stage_timeout_s is not None
        self._workers = [
            threading.Thread(target=self._work, args=(i,), name=f"{THREAD_PREFIX}-{s.name}", daemon=daemon)
            for i, s in enumerate(self._stages)
        ]
        self._threads = list(self._workers)
        if stage_timeout_s is not None:
            self._threads.append(threading.Thread(target=self._watch, name=f"{THREAD_PREFIX}-watchdog"))
        for t in self._threads:
            t.start()

    def push(self, inputs: Mapping[str, Array]) -> int:
        """Queue one input (arrays are referenced, not copied); blocks while the first queue is full."""
        with self._on_interrupt():
            return self._push(inputs)

    def pop(self, timeout: float | None = None) -> tuple[int, dict[str, Array]]:
        """Next result in push order, with only `model_outputs`; PipelineError if a stage failed, on
        `timeout` (seconds) without a result, or at end of stream (after close(), all results popped)."""
        with self._on_interrupt():
            item = self._pop(timeout)
        if item is None:
            raise PipelineError(f"end of stream: all {self._next_pop} results were popped")
        return item.seq, item.tensors

    def close(self) -> None:
        """End of stream: no more pushes; workers finish the queued items and exit."""
        with self._push_lock:
            if not self._closed:
                self._closed = True
                self._put(self._queues[0], _EndOfStream())

    def stop(self) -> None:
        """Stop now: items in flight are dropped, workers exit, further push/pop raise PipelineError."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads (after close() or stop()); True when none is left. A stage abandoned
        after a timeout is waited for only up to `timeout`, not at all when None: it may never return."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            if t is threading.current_thread() or (deadline is None and t in self._abandoned):
                continue
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def run_all(self, inputs: Iterable[Mapping[str, Array]]) -> list[dict[str, Array]]:
        """Feed every input from a helper thread (so backpressure cannot deadlock), return all results."""

        def feed() -> None:
            try:
                for x in inputs:
                    self._push(x)
                self.close()
            except PipelineError as exc:
                self._fail(exc)  # a bad input; a no-op when the pipeline had already failed
            except BaseException as exc:
                self._fail(PipelineError(f"reading the inputs failed: {type(exc).__name__}: {exc}"), exc)

        feeder = threading.Thread(target=feed, name=f"{THREAD_PREFIX}-feeder")
        self._threads.append(feeder)
        feeder.start()
        results: list[dict[str, Array]] = []
        try:
            while (item := self._pop(None)) is not None:
                results.append(item.tensors)
        except BaseException:
            self.stop()
            raise
        finally:
            self.join()
        return results

    def stats(self) -> list[StageStats]:
        """Per-stage timing so far: invoke percentiles, starved and blocked totals, in microseconds."""
        out = []
        for stage, c in zip(self._stages, self._counters, strict=True):
            us = np.asarray(list(c.invoke_ns), dtype=np.float64) / 1e3
            q = [float(us.mean()), *map(float, np.percentile(us, [50, 90, 99]))] if us.size else [0.0] * 4
            wait_us, blocked_us = c.wait_ns / 1e3, c.blocked_ns / 1e3
            out.append(StageStats(stage.name, c.items, q[0], q[1], q[2], q[3], wait_us, blocked_us))
        return out

    def latencies_us(self) -> list[float]:
        """End-to-end latency per item in push order: from the push() call to its result being ready."""
        return [ns / 1e3 for ns in list(self._latencies_ns)]

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.join()

    @contextmanager
    def _on_interrupt(self) -> Iterator[None]:
        """Ctrl-C in a blocked push/pop: stop and join the workers before the interrupt goes on."""
        try:
            yield
        except KeyboardInterrupt:
            self.stop()
            self.join()
            raise

    def _push(self, inputs: Mapping[str, Array]) -> int:
        missing = [n for n in self._external if n not in inputs]
        if missing:
            who = next((s.name for s in self._stages if missing[0] in s.input_names), "model outputs")
            raise PipelineError(f"stage {who!r} needs input tensor {missing[0]!r}, not pushed", stage=who)
        with self._push_lock:
            self._check()
            if self._closed:
                raise PipelineError("push() after close()")
            item = _Item(self._next_seq, {n: inputs[n] for n in self._external}, time.perf_counter_ns())
            if not self._put(self._queues[0], item):
                self._check()  # stopped while blocked: raises
            self._next_seq += 1
            return item.seq

    def _pop(self, timeout: float | None) -> _Item | None:
        """Next result, or None at end of stream; checks that no sequence number is lost or repeated."""
        deadline = None if timeout is None else time.monotonic() + timeout
        results = self._queues[-1]
        while True:
            self._check()
            wait = _POLL_S if deadline is None else max(0.0, min(_POLL_S, deadline - time.monotonic()))
            with self._pop_lock:
                try:
                    item = results.get(timeout=wait)
                except queue.Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise PipelineError(f"no result within {timeout:g} s") from None
                    continue
                if isinstance(item, _EndOfStream):
                    results.put(item)  # later pops see the end too
                    if self._next_pop != self._next_seq:
                        raise PipelineError(f"lost results: {self._next_seq} pushed, {self._next_pop} popped")
                    return None
                if item.seq != self._next_pop:
                    raise PipelineError(f"result #{item.seq} arrived when #{self._next_pop} was due")
                self._next_pop += 1
                return item

    def _check(self) -> None:
        """Raise a fresh copy of the failure, if any, so that each caller gets its own traceback."""
        err = self._error
        if err is not None:
            raise PipelineError(str(err), stage=err.stage, seq=err.seq) from err.__cause__
        if self._stop.is_set():
            raise PipelineError("the pipeline was stopped")

    def _fail(self, err: PipelineError, cause: BaseException | None = None) -> None:
        """Record the first failure and stop everything; failures after a stop are only its echoes."""
        err.__cause__ = cause
        with self._error_lock:
            if self._error is None and not self._stop.is_set():
                self._error = err
        self._stop.set()

    def _get(self, q: queue.Queue[_Slot]) -> _Slot | None:
        while not self._stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                pass
        return None

    def _put(self, q: queue.Queue[_Slot], item: _Slot) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def _work(self, i: int) -> None:
        stage, c, keep, last = self._stages[i], self._counters[i], self._keep[i], i == len(self._stages) - 1
        q_in, q_out = self._queues[i], self._queues[i + 1]
        seq: int | None = None
        try:
            while True:
                t0 = time.perf_counter_ns()
                item = self._get(q_in)
                c.wait_ns += time.perf_counter_ns() - t0
                if item is None or isinstance(item, _EndOfStream):
                    if item is not None:
                        self._put(q_out, item)
                    return
                seq = item.seq
                feed = {n: item.tensors[n] for n in stage.input_names}
                t1 = time.perf_counter_ns()
                self._busy[i] = (seq, t1)
                try:
                    out = stage.run(feed)
                finally:
                    self._busy[i] = None
                c.invoke_ns.append(time.perf_counter_ns() - t1)
                c.items += 1
                missing = [n for n in stage.output_names if n not in out]
                if missing:
                    raise ValueError(f"output {missing[0]!r} was not produced")
                tensors = {k: v for k, v in item.tensors.items() if k in keep}
                tensors.update({n: out[n] for n in stage.output_names if n in keep})
                if last:
                    tensors = {n: tensors[n] for n in self._outputs}
                t2 = time.perf_counter_ns()
                if last:  # the results queue is unbounded: ready now, and counted before anyone pops it
                    self._latencies_ns.append(t2 - item.t_push_ns)
                if not self._put(q_out, _Item(seq, tensors, item.t_push_ns)):
                    return
                c.blocked_ns += time.perf_counter_ns() - t2
        except BaseException as exc:
            where = "" if seq is None else f" on input #{seq}"
            what = str(exc) if isinstance(exc, TpuplanError) else f"{type(exc).__name__}: {exc}"
            msg = f"stage {stage.name!r} failed{where}: {what}"
            self._fail(PipelineError(msg, stage=stage.name, seq=seq), exc)
        finally:
            try:
                stage.close()
            except Exception as exc:
                msg = f"stage {stage.name!r} failed to close: {type(exc).__name__}: {exc}"
                self._fail(PipelineError(msg, stage=stage.name), exc)

    def _watch(self) -> None:
        """Watchdog: fail the pipeline when one run() call exceeds the stage timeout."""
        assert self._timeout_s is not None
        limit_ns = int(self._timeout_s * 1e9)
        while not self._stop.wait(min(_POLL_S, self._timeout_s / 4)):
            now = time.perf_counter_ns()
            for i, busy in enumerate(list(self._busy)):
                if busy is not None and now - busy[1] > limit_ns:
                    self._abandoned.add(self._workers[i])
                    name = self._stages[i].name
                    msg = f"stage {name!r} timed out after {self._timeout_s:g} s on input #{busy[0]}"
                    self._fail(PipelineError(msg, stage=name, seq=busy[0]))
                    return
            if not any(w.is_alive() for w in self._workers):
                return
