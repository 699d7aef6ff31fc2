"""What every pipeline runner shares: push/pop in order, end of stream, failure, stop, Ctrl-C, statistics.

A runner (threads, processes, pycoral) only says how one input enters the first stage (`_submit`), how a
result leaves the last (`_take`), how the end of the stream is sent (`_end`) and how every blocked wait
is woken when the pipeline stops (`_wake`). Sequence numbers, the "no loss, no repeat, in order" check,
the first-failure-wins rule and the feeder thread of `run_all`/`stream` are written once, here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.pipeline.routing import PipelineError, check_stages
from tpuplan.runtime.pipeline.stage import Array

THREAD_PREFIX = "tpuplan-pipeline"  # every thread a pipeline starts is named so, leaks are easy to spot
WAKE_S = 0.1  # a caller blocked in push/pop looks at the stop flag this often (Ctrl-C, pop timeouts)


class _Marker:
    """A sentinel value in a queue; compared by identity."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


EMPTY: Final = _Marker("nothing yet")  # _take timed out
END: Final = _Marker("end of stream")  # _take: every result was handed out


@dataclass(frozen=True)
class StageStats:
    """Timing of one stage, to see which segment bounds the throughput and where items wait.

    `timed` is False for a runner that does not expose per-stage times (pycoral's C++ runner): only
    `items` is then meaningful.
    """

    name: str
    items: int
    mean_us: float  # invoke time statistics
    median_us: float
    p90_us: float
    p99_us: float
    wait_in_us: float  # total time waiting for the next input (stage starved)
    blocked_out_us: float  # total time waiting for room downstream (stage blocked)
    timed: bool = True


@dataclass
class Counters:
    """What one stage's worker counts as it goes (its own thread or process writes, stats() reads)."""

    items: int = 0
    invoke_ns: list[int] = field(default_factory=list)
    wait_ns: int = 0
    blocked_ns: int = 0

    def stats(self, name: str, *, timed: bool = True) -> StageStats:
        us = np.asarray(list(self.invoke_ns), dtype=np.float64) / 1e3
        q = [float(us.mean()), *map(float, np.percentile(us, [50, 90, 99]))] if us.size else [0.0] * 4
        return StageStats(name, self.items, q[0], q[1], q[2], q[3], self.wait_ns / 1e3, self.blocked_ns / 1e3, timed)


Result = tuple[int, list[Array]]


class PipelineBase:
    """Push inputs, pop results in push order; see the runner classes for how stages run.

    Results never block the last stage (their queue is unbounded), so `close()` + `join()` cannot
    deadlock; the bounded hand-offs in front of the stages give the backpressure on `push`.
    """

    def __init__(
        self,
        names: Sequence[str],
        stage_inputs: Sequence[Sequence[str]],
        external: list[str],
        *,
        model_outputs: Sequence[str],
        queue_size: int,
        stage_timeout_s: float | None,
    ) -> None:
        self._names, self._outputs = list(names), list(model_outputs)
        check_stages(self._names, self._outputs, queue_size, stage_timeout_s)
        self._stage_inputs = [list(x) for x in stage_inputs]
        self._external = external
        self._timeout_s = stage_timeout_s
        self._stop = threading.Event()
        self._error_lock, self._push_lock, self._pop_lock = (threading.Lock() for _ in range(3))
        self._error: PipelineError | None = None
        self._closed = False
        self._next_seq = self._next_pop = 0
        self._latencies_ns: list[int] = []
        self._counters = [Counters() for _ in self._names]
        self._capacity = len(self._names) * (queue_size + 1)  # inputs in flight while streaming
        self._threads: list[threading.Thread] = []
        self._abandoned: set[threading.Thread] = set()

    # --- what a runner provides -------------------------------------------------------------------
    def _submit(self, seq: int, values: list[Array], t_push_ns: int) -> bool:
        """Hand one input to the first stage; False when the pipeline stopped while this waited."""
        raise NotImplementedError

    def _take(self, timeout: float) -> Result | _Marker:
        """The next result, EMPTY after `timeout` seconds without one, END at the end of the stream."""
        raise NotImplementedError

    def _end(self) -> None:
        """Send the end of the stream after the last input (never blocks)."""
        raise NotImplementedError

    def _has_room(self) -> bool:
        """Whether the first stage would take an input now without waiting (a hint: one pusher at a time)."""
        raise NotImplementedError

    def _wake(self) -> None:
        """Wake every wait of every stage and caller: the pipeline has stopped."""
        raise NotImplementedError

    def _stats_timed(self) -> bool:
        return True

    # --- the public interface -----------------------------------------------------------------------
    def push(self, inputs: Mapping[str, Array]) -> int:
        """Queue one input (arrays are referenced, not copied); blocks while the first stage is full."""
        with self._on_interrupt():
            return self._push(inputs)

    def pop(self, timeout: float | None = None) -> tuple[int, dict[str, Array]]:
        """Next result in push order, with only `model_outputs`; PipelineError if a stage failed, on
        `timeout` (seconds) without a result, or at end of stream (after close(), all results popped)."""
        with self._on_interrupt():
            item = self._pop(timeout)
        if item is None:
            raise PipelineError(f"end of stream: all {self._next_pop} results were popped")
        return item[0], dict(zip_strict(self._outputs, item[1]))

    def close(self) -> None:
        """End of stream: no more pushes; the stages finish the queued inputs and exit."""
        with self._push_lock:
            if not self._closed:
                self._closed = True
                self._end()

    def stop(self) -> None:
        """Stop now: inputs in flight are dropped, stages exit, further push/pop raise PipelineError."""
        self._stop.set()
        self._wake()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads (after close() or stop()); True when none is left. A stage abandoned
        after a timeout is waited for only up to `timeout`, not at all when None: it may never return."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in list(self._threads):
            if t is threading.current_thread() or (deadline is None and t in self._abandoned):
                continue
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def stream(self, inputs: Iterable[Mapping[str, Array]]) -> Iterator[dict[str, Array]]:
        """Push every input and yield each result in input order as soon as it is ready; nothing is kept,
        so any number of inputs streams through. One thread drives both ends: it pushes while the first
        stage has room and at most `_capacity` inputs are in flight (so results cannot pile up either),
        else waits for the next result: no feeder thread to hand off to, and no deadlock, since results
        never wait for room."""
        source = iter(inputs)
        try:
            pending = self._next_input(source)
            while True:
                while pending is not None and self._next_seq - self._next_pop < self._capacity and self._has_room():
                    self._push(pending)
                    pending = self._next_input(source)
                if pending is None:
                    self.close()
                item = self._pop(None)
                if item is None:
                    return
                yield dict(zip_strict(self._outputs, item[1]))
        except BaseException:
            self.stop()
            raise
        finally:
            self.join()

    def _next_input(self, source: Iterator[Mapping[str, Array]]) -> Mapping[str, Array] | None:
        """The next input, None at the end; an input that cannot be read fails the pipeline."""
        try:
            return next(source, None)
        except PipelineError as exc:
            self._fail(exc)
        except TpuplanError as exc:  # an input file that cannot be read: its message names the file
            self._fail(PipelineError(str(exc)), exc)
        except Exception as exc:
            self._fail(PipelineError(f"reading the inputs failed: {type(exc).__name__}: {exc}"), exc)
        self._check()
        raise AssertionError("unreachable: _fail always stops the pipeline")

    def run_all(self, inputs: Iterable[Mapping[str, Array]]) -> list[dict[str, Array]]:
        """Every result of `stream`, in input order, as a list."""
        return list(self.stream(inputs))

    def stats(self) -> list[StageStats]:
        """Per-stage timing so far: invoke percentiles, starved and blocked totals, in microseconds."""
        timed = self._stats_timed()
        return [c.stats(name, timed=timed) for name, c in zip_strict(self._names, self._counters)]

    def latencies_us(self) -> list[float]:
        """End-to-end latency per item in push order: from the push() call to its result being ready."""
        return [ns / 1e3 for ns in list(self._latencies_ns)]

    def __enter__(self) -> PipelineBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.join()

    # --- shared machinery ---------------------------------------------------------------------------
    @contextmanager
    def _on_interrupt(self) -> Iterator[None]:
        """Ctrl-C in a blocked push/pop: stop and join the stages before the interrupt goes on."""
        try:
            yield
        except KeyboardInterrupt:
            self.stop()
            self.join()
            raise

    def _push(self, inputs: Mapping[str, Array]) -> int:
        try:
            values = [inputs[n] for n in self._external]
        except KeyError:
            missing = next(n for n in self._external if n not in inputs)
            who = next(
                (name for name, ins in zip_strict(self._names, self._stage_inputs) if missing in ins),
                "model outputs",
            )
            raise PipelineError(f"stage {who!r} needs input tensor {missing!r}, not pushed", stage=who) from None
        with self._push_lock:
            self._check()
            if self._closed:
                raise PipelineError("push() after close()")
            seq = self._next_seq
            if not self._submit(seq, values, time.perf_counter_ns()):
                self._check()  # stopped while blocked: raises
            self._next_seq += 1
            return seq

    def _pop(self, timeout: float | None) -> Result | None:
        """Next result, or None at end of stream; checks that no sequence number is lost or repeated."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._check()
            wait = WAKE_S if deadline is None else max(0.0, min(WAKE_S, deadline - time.monotonic()))
            with self._pop_lock:
                got = self._take(wait)
                if got is EMPTY:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise PipelineError(f"no result within {timeout:g} s")
                    continue
                if got is END:
                    if self._next_pop != self._next_seq:
                        raise PipelineError(f"lost results: {self._next_seq} pushed, {self._next_pop} popped")
                    return None
                assert isinstance(got, tuple)
                if got[0] != self._next_pop:
                    raise PipelineError(f"result #{got[0]} arrived when #{self._next_pop} was due")
                self._next_pop += 1
                return got

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
        self.stop()

    def _stage_failed(self, i: int, seq: int | None, exc: BaseException) -> None:
        """A stage's exception as the pipeline's failure, naming the stage and the input."""
        where = "" if seq is None else f" on input #{seq}"
        what = str(exc) if isinstance(exc, TpuplanError) else f"{type(exc).__name__}: {exc}"
        name = self._names[i]
        self._fail(PipelineError(f"stage {name!r} failed{where}: {what}", stage=name, seq=seq), exc)

    def _timed_out(self, i: int, seq: int) -> None:
        name = self._names[i]
        msg = f"stage {name!r} timed out after {self._timeout_s:g} s on input #{seq}"
        self._fail(PipelineError(msg, stage=name, seq=seq))
