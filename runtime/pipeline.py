"""Run model segments as a pipeline: one thread per stage, C-level queues, tensors routed by position.

Independent of any model format: a stage is anything with `run(dict) -> dict` (see `StageRunner`), or
faster, `run_arrays(list) -> list`. The hot path of a stage, per input, is: take the item from a
`queue.SimpleQueue` (a C lock, no Python-level condition variable), give a credit back to the stage in
front, pick its inputs by precomputed position, run, assemble the next list by position, take a credit
from the stage behind, hand the item on. Backpressure is `queue_size` credits per stage input. Nothing on
that path sleeps or polls: a stop puts a STOP marker into every queue, which wakes every blocked wait at
once; only a caller blocked in push/pop wakes every 0.1 s, to see Ctrl-C.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tpuplan.runtime.pipebase import (
    EMPTY,
    END,
    THREAD_PREFIX,
    WAKE_S,
    PipelineBase,
    Result,
    StageStats,
    _Marker,
)
from tpuplan.runtime.routing import PipelineError, check_stages, plan_routing, routes
from tpuplan.runtime.stage import Array, StageRunner, array_runner

__all__ = ["THREAD_PREFIX", "Pipeline", "PipelineError", "StageStats"]

_POLL_S = 0.05  # the watchdog's look at the running stages (its own thread, not the stages' path)
_STOP = _Marker("stop")
_EOS = _Marker("end of stream")


@dataclass(slots=True)
class _Item:
    """One input on its way; the same object travels through every stage (one owner at a time)."""

    seq: int
    values: list[Array]
    t_push_ns: int


Slot = _Item | _Marker


class Pipeline(PipelineBase):
    """Push inputs, pop results in push order; stage i+1 works on item n while stage i works on item n+1.

    The pipeline owns its stages once built and closes each from its own worker thread. With
    `stage_timeout_s` the workers are daemon threads: a hung stage cannot be killed, so it is abandoned
    (its thread ends whenever run() returns) and must not keep the process alive.
    """

    def __init__(self, stages: Sequence[StageRunner], *, model_outputs: Sequence[str], queue_size: int = 2,
                 stage_timeout_s: float | None = None) -> None:
        names, outs = [s.name for s in stages], list(model_outputs)
        check_stages(names, outs, queue_size, stage_timeout_s)
        self._stages = list(stages)
        external, self._keep = plan_routing(self._stages, outs)
        self._routes = routes(self._stages, external, self._keep, outs)
        super().__init__(names, [s.input_names for s in stages], external, model_outputs=outs,
                         queue_size=queue_size, stage_timeout_s=stage_timeout_s)
        k = len(stages)
        self._queues: list[queue.SimpleQueue[Slot]] = [queue.SimpleQueue() for _ in range(k + 1)]  # last: results
        self._credits: list[queue.SimpleQueue[_Marker | None]] = [queue.SimpleQueue() for _ in range(k)]
        for credits in self._credits:
            for _ in range(queue_size):
                credits.put(None)
        self._busy: list[tuple[int, int] | None] = [None] * k  # (seq, start ns) during run()
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

    def _submit(self, seq: int, values: list[Array], t_push_ns: int) -> bool:
        credits = self._credits[0]
        while True:  # the caller's thread: wake now and then, for Ctrl-C
            try:
                token = credits.get(timeout=WAKE_S)
                break
            except queue.Empty:
                if self._stop.is_set():
                    return False
        if token is _STOP:
            credits.put(_STOP)  # sticky: every later wait sees it too
            return False
        self._queues[0].put(_Item(seq, values, t_push_ns))
        return True

    def _take(self, timeout: float) -> Result | _Marker:
        results = self._queues[-1]
        try:
            item = results.get(timeout=timeout)
        except queue.Empty:
            return EMPTY
        if isinstance(item, _Item):
            return item.seq, item.values
        results.put(item)  # the end (or a stop) stays visible to later pops
        return END if item is _EOS else EMPTY

    def _end(self) -> None:
        self._queues[0].put(_EOS)

    def _has_room(self) -> bool:
        return self._credits[0].qsize() > 0

    def _wake(self) -> None:
        for q in self._queues:
            q.put(_STOP)
        for credits in self._credits:
            credits.put(_STOP)

    def _work(self, i: int) -> None:
        """One stage's loop; see the module docstring for what happens per input, and nothing else."""
        stage, route, c = self._stages[i], self._routes[i], self._counters[i]
        run, pick, assemble = array_runner(stage), route.pick, route.assemble
        q_in, q_out, give_back = self._queues[i], self._queues[i + 1], self._credits[i].put
        credits_out = self._credits[i + 1] if i + 1 < len(self._stages) else None
        busy, watched, clock, latencies = self._busy, self._timeout_s is not None, time.perf_counter_ns, None
        if credits_out is None:
            latencies = self._latencies_ns
        seq: int | None = None
        try:
            while True:
                t0 = clock()
                item = q_in.get()
                if not isinstance(item, _Item):
                    (q_out if item is _EOS else q_in).put(item)  # pass the end on; keep a stop visible
                    return
                give_back(None)
                t1 = clock()
                c.wait_ns += t1 - t0
                seq = item.seq
                if watched:
                    busy[i] = (seq, t1)
                values = item.values
                outputs = run(pick(values))
                t2 = clock()
                busy[i] = None
                c.invoke_ns.append(t2 - t1)
                c.items += 1
                item.values = assemble(values, outputs)
                if latencies is not None:  # the results queue is unbounded: ready now, counted before any pop
                    latencies.append(t2 - item.t_push_ns)
                elif credits_out is not None and credits_out.get() is _STOP:
                    credits_out.put(_STOP)
                    return
                q_out.put(item)
                c.blocked_ns += clock() - t2
        except BaseException as exc:
            busy[i] = None
            self._stage_failed(i, seq, exc)
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
                    self._timed_out(i, busy[0])
                    return
            if not any(w.is_alive() for w in self._workers):
                return
