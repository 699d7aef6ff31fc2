"""Run model segments as a pipeline: one thread per stage, C-level queues, tensors routed by position.

Independent of any model format: a stage is anything with `run(dict) -> dict` (see `StageRunner`), or
faster, `run_arrays(list) -> list`. The hot path of a stage, per input, is: take the item from a
`queue.SimpleQueue` (a C lock, no Python-level condition variable), give a credit back to the stage in
front, pick its inputs by precomputed position, run, assemble the next list by position, take a credit
from the stage behind, hand the item on. Backpressure is `queue_size` credits per stage input. Nothing on
that path sleeps or polls: a stop puts a STOP marker into every queue, which wakes every blocked wait at
once; only a caller blocked in push/pop wakes every 0.1 s, to see Ctrl-C.

Copies: a stage given as several runners (one per device) has one worker thread and one input queue
per copy, and input #n goes to copy n mod r (in turn). Copies finish in any order, so items can pass
each other; the results are handed out in push order by a small reorder buffer at the end, and the
end of the stream leaves a replicated stage only when its last copy has finished.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from typing import Union

from tpuplan.compat import zip_strict
from tpuplan.runtime.pipeline.base import (
    EMPTY,
    END,
    THREAD_PREFIX,
    WAKE_S,
    Counters,
    PipelineBase,
    Result,
    StageStats,
    _Marker,
)
from tpuplan.runtime.pipeline.routing import PipelineError, check_copies, check_stages, plan_routing, routes
from tpuplan.runtime.pipeline.stage import Array, StageRunner, array_runner

__all__ = ["THREAD_PREFIX", "Pipeline", "PipelineError", "StageStats"]

_POLL_S = 0.05  # the watchdog's look at the running stages (its own thread, not the stages' path)
_STOP = _Marker("stop")
_EOS = _Marker("end of stream")


class _Item:
    """One input on its way; the same object travels through every stage (one owner at a time). Slots by
    hand: `dataclass(slots=True)` needs Python 3.10, and the runtime runs on 3.9."""

    __slots__ = ("seq", "t_push_ns", "values")

    def __init__(self, seq: int, values: list[Array], t_push_ns: int) -> None:
        self.seq = seq
        self.values = values
        self.t_push_ns = t_push_ns


Slot = Union[_Item, _Marker]  # a value, evaluated on Python 3.9 too: no `|`


class Pipeline(PipelineBase):
    """Push inputs, pop results in push order; stage i+1 works on item n while stage i works on item n+1.

    A stage is one runner, or a list of runners that are copies of one segment (same names, one device
    each). The pipeline owns its stages once built and closes each from its own worker thread. With
    `stage_timeout_s` the workers are daemon threads: a hung stage cannot be killed, so it is abandoned
    (its thread ends whenever run() returns) and must not keep the process alive.
    """

    def __init__(
        self,
        stages: Sequence[StageRunner | Sequence[StageRunner]],
        *,
        model_outputs: Sequence[str],
        queue_size: int = 2,
        stage_timeout_s: float | None = None,
    ) -> None:
        self._copies = [list(s) if isinstance(s, Sequence) else [s] for s in stages]
        check_copies(self._copies)
        self._stages = [c[0] for c in self._copies]
        names, outs = [s.name for s in self._stages], list(model_outputs)
        check_stages(names, outs, queue_size, stage_timeout_s)
        external, self._keep = plan_routing(self._stages, outs)
        self._routes = routes(self._stages, external, self._keep, outs)
        super().__init__(
            names,
            [s.input_names for s in self._stages],
            external,
            model_outputs=outs,
            queue_size=queue_size,
            stage_timeout_s=stage_timeout_s,
        )
        k = len(self._stages)
        self._capacity = sum(queue_size + len(c) for c in self._copies)
        self._queues: list[list[queue.SimpleQueue[Slot]]] = [[queue.SimpleQueue() for _ in c] for c in self._copies]
        self._queues.append([queue.SimpleQueue()])  # the results
        self._credits: list[queue.SimpleQueue[_Marker | None]] = [queue.SimpleQueue() for _ in range(k)]
        for credits in self._credits:
            for _ in range(queue_size):
                credits.put(None)
        self._left = [len(c) for c in self._copies]  # copies still running, per stage (guarded by _end_lock)
        self._end_lock = threading.Lock()
        self._ahead: dict[int, _Item] = {}  # results that arrived before their turn (copies finish in any order)
        self._lanes = [(i, j) for i, c in enumerate(self._copies) for j in range(len(c))]
        self._copy_counters = [[Counters() for _ in c] for c in self._copies]
        self._busy: list[tuple[int, int] | None] = [None] * len(self._lanes)  # (seq, start ns) during run()
        daemon = stage_timeout_s is not None
        self._workers = [
            threading.Thread(
                target=self._work,
                args=(lane,),
                daemon=daemon,
                name=f"{THREAD_PREFIX}-{self._stages[i].name}" + (f".{j}" if len(self._copies[i]) > 1 else ""),
            )
            for lane, (i, j) in enumerate(self._lanes)
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
        lanes = self._queues[0]
        lanes[seq % len(lanes)].put(_Item(seq, values, t_push_ns))
        return True

    def _take(self, timeout: float) -> Result | _Marker:
        """The next result in push order (called under the pop lock, so `_next_pop` is the one due)."""
        results, due = self._queues[-1][0], self._next_pop
        deadline = time.monotonic() + timeout
        while due not in self._ahead:
            try:
                item = results.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return EMPTY
            if isinstance(item, _Item):
                self._ahead[item.seq] = item
                continue
            results.put(item)  # the end (or a stop) stays visible to later pops
            if item is not _EOS:
                return EMPTY  # stopped: the caller's check raises
            if not self._ahead:
                return END
            got = self._ahead.pop(min(self._ahead))  # the end came with a gap: the base class names it
            return got.seq, got.values
        got = self._ahead.pop(due)
        return got.seq, got.values

    def _end(self) -> None:
        for lane in self._queues[0]:
            lane.put(_EOS)

    def _has_room(self) -> bool:
        return self._credits[0].qsize() > 0

    def _wake(self) -> None:
        for lanes in self._queues:
            for q in lanes:
                q.put(_STOP)
        for credits in self._credits:
            credits.put(_STOP)

    def stats(self) -> list[StageStats]:
        """Per stage (copies merged): invoke percentiles, starved and blocked totals, in microseconds."""
        return [
            Counters(
                sum(c.items for c in cs),
                [t for c in cs for t in c.invoke_ns],
                sum(c.wait_ns for c in cs),
                sum(c.blocked_ns for c in cs),
            ).stats(name)
            for name, cs in zip_strict(self._names, self._copy_counters)
        ]

    def _pass_end(self, i: int) -> None:
        """A copy of stage i saw the end; the last one to see it sends it on to every copy of stage i+1."""
        with self._end_lock:
            self._left[i] -= 1
            last = self._left[i] == 0
        if last:
            for lane in self._queues[i + 1]:
                lane.put(_EOS)

    def _work(self, lane: int) -> None:
        """One copy's loop; see the module docstring for what happens per input, and nothing else."""
        i, j = self._lanes[lane]
        stage, route, c = self._copies[i][j], self._routes[i], self._copy_counters[i][j]
        run, pick, assemble = array_runner(stage), route.pick, route.assemble
        q_in, outs, give_back = self._queues[i][j], self._queues[i + 1], self._credits[i].put
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
                    if item is _EOS:
                        self._pass_end(i)
                    else:
                        q_in.put(item)  # keep a stop visible
                    return
                give_back(None)
                t1 = clock()
                c.wait_ns += t1 - t0
                seq = item.seq
                if watched:
                    busy[lane] = (seq, t1)
                values = item.values
                outputs = run(pick(values))
                t2 = clock()
                busy[lane] = None
                c.invoke_ns.append(t2 - t1)
                c.items += 1
                item.values = assemble(values, outputs)
                if latencies is not None:  # the results queue is unbounded: ready now, counted before any pop
                    latencies.append(t2 - item.t_push_ns)
                elif credits_out is not None and credits_out.get() is _STOP:
                    credits_out.put(_STOP)
                    return
                outs[seq % len(outs)].put(item)
                c.blocked_ns += clock() - t2
        except BaseException as exc:
            busy[lane] = None
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
            for lane, busy in enumerate(list(self._busy)):
                if busy is not None and now - busy[1] > limit_ns:
                    self._abandoned.add(self._workers[lane])
                    self._timed_out(self._lanes[lane][0], busy[0])
                    return
            if not any(w.is_alive() for w in self._workers):
                return
