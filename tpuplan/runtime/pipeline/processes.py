"""Run model segments as a pipeline with one process per stage, handing tensors over in shared memory.

On a multi-core Coral host the host work of different stages then overlaps instead of taking turns under
Python's interpreter lock. Each stage process builds its own interpreter (and its own Edge TPU delegate)
from the segment's bytes, reports its tensors, and runs `runtime.pipeline.procstage`. The parent lays out one
shared-memory ring per boundary from what the stages reported (`runtime.pipeline.routing` decides which tensors
each boundary carries), writes inputs into the first ring and reads results from the last. A monitor
thread waits on the stages' pipes and process handles (no polling): it turns an error message or a dead
process into the pipeline's failure, kills a stage that exceeds the timeout (a process, unlike a thread,
can be killed), and collects each stage's statistics when it exits.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing import connection
from typing import Any

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.pipeline.base import EMPTY, END, THREAD_PREFIX, WAKE_S, Counters, PipelineBase, Result, _Marker
from tpuplan.runtime.pipeline.procstage import StageArgs, busy_at, ctrl_len, end_at, send, stage_process
from tpuplan.runtime.pipeline.routing import PipelineError, check_stages, plan_routing, routes
from tpuplan.runtime.pipeline.shmring import Ring, close_block, create_block, plan_rings
from tpuplan.runtime.pipeline.stage import Array, StageSource
from tpuplan.runtime.pipeline.startsignals import signals_blocked

START_TIMEOUT_S = 120.0  # for every stage process to build its interpreter
STOP_GRACE_S = 2.0  # after a stop, a stage still busy in invoke gets this long before it is killed


@dataclass(frozen=True)
class _Wiring:
    """A stage as the routing sees it, from the tensors its process reported."""

    name: str
    input_names: list[str]
    output_names: list[str]


def _how(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class ProcessPipeline(PipelineBase):
    """The `Pipeline` interface (push, pop, stream, close, stop, join, stats), one process per stage."""

    def __init__(
        self,
        sources: Sequence[StageSource],
        *,
        model_outputs: Sequence[str],
        queue_size: int = 2,
        stage_timeout_s: float | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        names, outs, k = [s.name for s in sources], list(model_outputs), len(sources)
        check_stages(names, outs, queue_size, stage_timeout_s)
        super().__init__(
            names, [[] for _ in sources], [], model_outputs=outs, queue_size=queue_size, stage_timeout_s=stage_timeout_s
        )
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that may run threads
        self._k, self._slots = k, queue_size
        self._ctrl_block = create_block(8 * ctrl_len(k))
        self._ctrl: Array = np.ndarray((ctrl_len(k),), dtype=np.int64, buffer=self._ctrl_block.buf)
        self._ctrl[:] = 0
        self._ctrl[end_at(0) : end_at(k) + 1] = -1
        self._filled = [ctx.Semaphore(0) for _ in range(k + 1)]
        self._free = [ctx.Semaphore(0) for _ in range(k + 1)]
        self._block: Any = None
        self._rings: list[Ring] = []
        self._held, self._w, self._r, self._released = False, 0, 0, False
        self._wake_r, self._wake_w = os.pipe()  # a stop wakes the monitor's wait at once
        self._child_cpu_ns = [0] * k
        pipes = [ctx.Pipe() for _ in sources]
        self._conns = [parent for parent, _ in pipes]
        self._procs = [
            ctx.Process(
                target=stage_process,
                name=f"{THREAD_PREFIX}-{src.name}",
                daemon=True,
                args=(
                    StageArgs(
                        i,
                        k,
                        src.name,
                        src.content,
                        src.where,
                        src.backend,
                        src.device,
                        self._ctrl_block.name,
                        os.getpid(),
                    ),
                    child,
                    self._filled,
                    self._free,
                ),
            )
            for i, (src, (_, child)) in enumerate(zip_strict(sources, pipes))
        ]
        try:
            with signals_blocked():  # the stages inherit them blocked: Ctrl-C is the parent's alone
                for p in self._procs:
                    p.start()
            for _, child in pipes:
                child.close()
            self._wire(outs, self._gather_ready(start_timeout_s))
        except BaseException:
            self._abort()
            raise
        monitor = threading.Thread(target=self._monitor, name=f"{THREAD_PREFIX}-monitor", daemon=True)
        self._threads.append(monitor)
        monitor.start()

    # --- start-up --------------------------------------------------------------------------------
    def _gather_ready(self, timeout_s: float) -> list[dict[str, Any]]:
        """Every stage's tensors, once its interpreter is built; its one-line error if it could not be."""
        deadline = time.monotonic() + timeout_s
        ready: list[dict[str, Any] | None] = [None] * self._k
        for i, conn in enumerate(self._conns):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TpuplanError(f"stage {self._names[i]!r}: its process did not start within {timeout_s:g} s")
            try:
                msg = json.loads(conn.recv_bytes())
            except (EOFError, OSError):
                self._procs[i].join(5)
                how = _how(self._procs[i].exitcode)
                raise TpuplanError(
                    f"stage {self._names[i]!r}: its process died while starting ({how}; a script that "
                    "starts process stages needs an `if __name__ == '__main__':` guard)"
                ) from None
            if msg.get("kind") == "error":
                raise TpuplanError(str(msg.get("message")))
            ready[i] = msg
        return [m for m in ready if m is not None]

    def _wire(self, outs: list[str], ready: list[dict[str, Any]]) -> None:
        """Routing from the reported tensors, one ring per boundary, and the go signal to every stage."""
        wiring = [
            _Wiring(n, [t[0] for t in m["inputs"]], [t[0] for t in m["outputs"]])
            for n, m in zip_strict(self._names, ready)
        ]
        external, keep = plan_routing(wiring, outs)
        rts = routes(wiring, external, keep, outs)
        self._external, self._stage_inputs = external, [w.input_names for w in wiring]
        specs = {str(t[0]): (tuple(int(x) for x in t[1]), str(t[2])) for m in ready for t in m["inputs"]}
        specs.update({str(t[0]): (tuple(int(x) for x in t[1]), str(t[2])) for m in ready for t in m["outputs"]})
        unknown = [n for n in external if n not in specs]
        if unknown:
            raise PipelineError(f"tensor {unknown[0]!r} is read by no stage: its shape is unknown to the processes")
        if any(np.dtype(d).hasobject for _, d in specs.values()):
            raise PipelineError("string tensors cannot cross processes; use --workers threads")
        carried = [rts[0].carried_in, *(r.carried_out for r in rts)]
        layouts, size = plan_rings([[(n, *specs[n]) for n in names] for names in carried], self._slots)
        self._block = create_block(size)
        self._rings = [Ring(self._block.buf, layouts[0]), Ring(self._block.buf, layouts[-1])]
        for i, conn in enumerate(self._conns):
            send(
                conn,
                kind="go",
                block=self._block.name,
                ring_in=layouts[i].to_json(),
                ring_out=layouts[i + 1].to_json(),
                take=rts[i].take,
                pairs=rts[i].pairs,
            )
        for sem in self._free:
            for _ in range(self._slots):
                sem.release()

    # --- the runner hooks --------------------------------------------------------------------------
    def _has_room(self) -> bool:
        if not self._held:
            self._held = bool(self._free[0].acquire(block=False))
        return self._held

    def _submit(self, seq: int, values: list[Array], t_push_ns: int) -> bool:
        if not self._held:
            while not self._free[0].acquire(timeout=WAKE_S):
                if self._stop.is_set():
                    return False
        self._held = False
        if self._stop.is_set():
            return False
        ring = self._rings[0]
        slot = ring.tensors(self._w)
        for name, dest, value in zip_strict(self._external, slot, values):
            if getattr(value, "shape", None) != dest.shape or getattr(value, "dtype", None) != dest.dtype:
                self._free[0].release()
                got = f"{getattr(value, 'shape', '?')} {getattr(value, 'dtype', type(value).__name__)}"
                raise PipelineError(f"input tensor {name!r} is {got}, the stages expect {dest.shape} {dest.dtype}")
            np.copyto(dest, value)
        header = ring.header(self._w)
        header[0], header[1], header[2] = seq, t_push_ns, 0
        self._w += 1
        self._filled[0].release()
        return True

    def _take(self, timeout: float) -> Result | _Marker:
        done = self._filled[self._k]
        if not done.acquire(timeout=timeout):
            return EMPTY
        if self._stop.is_set():
            return EMPTY  # the caller's next check raises the failure
        if self._r == self._ctrl[end_at(self._k)]:
            done.release()  # the end stays visible to later pops
            return END
        ring = self._rings[1]
        header = ring.header(self._r)
        seq = int(header[0])
        values = [np.array(v) for v in ring.tensors(self._r)]  # copies: the slot is reused
        self._latencies_ns.append(int(header[2] - header[1]))
        self._r += 1
        self._free[self._k].release()
        return seq, values

    def _end(self) -> None:
        self._ctrl[end_at(0)] = self._next_seq
        self._filled[0].release()

    def _wake(self) -> None:
        self._ctrl[0] = 1
        for sem in (*self._filled, *self._free):
            sem.release()
            sem.release()
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"!")

    # --- monitoring and teardown ----------------------------------------------------------------------
    def _monitor(self) -> None:
        """Until every stage process has exited: errors, deaths, timeouts and final statistics."""
        alive, stats_from = set(range(self._k)), set[int]()
        stopped_at: float | None = None
        by_conn = {id(c): i for i, c in enumerate(self._conns)}
        by_sentinel = {p.sentinel: i for i, p in enumerate(self._procs)}
        while alive:
            watch: list[Any] = [
                self._wake_r,
                *(self._conns[i] for i in alive),
                *(self._procs[i].sentinel for i in alive),
            ]
            for obj in connection.wait(watch, timeout=self._monitor_interval()):
                if obj == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 64)
                elif isinstance(obj, int) and obj in by_sentinel:
                    i = by_sentinel[obj]
                    self._drain(i, stats_from)
                    alive.discard(i)
                    if i not in stats_from and not self._stop.is_set():
                        self._died(i)
                else:
                    self._drain(by_conn[id(obj)], stats_from)
            self._check_timeouts(alive)
            if self._stop.is_set():
                stopped_at = stopped_at or time.monotonic()
                if time.monotonic() - stopped_at > STOP_GRACE_S:
                    for i in alive:
                        self._procs[i].kill()

    def _monitor_interval(self) -> float | None:
        if self._stop.is_set():
            return STOP_GRACE_S / 4
        return None if self._timeout_s is None else min(0.05, self._timeout_s / 4)

    def _drain(self, i: int, stats_from: set[int]) -> None:
        conn = self._conns[i]
        try:
            while conn.poll():
                msg = json.loads(conn.recv_bytes())
                if msg.get("kind") == "error":
                    seq = msg.get("seq")
                    self._stage_failed(i, seq if isinstance(seq, int) else None, TpuplanError(str(msg["message"])))
                elif msg.get("kind") == "stats":
                    stats_from.add(i)
                    self._counters[i] = Counters(
                        int(msg["items"]),
                        [int(x) for x in msg["invoke_ns"]],
                        int(msg["wait_ns"]),
                        int(msg["blocked_ns"]),
                    )
                    self._child_cpu_ns[i] = int(msg["cpu_ns"])
        except (EOFError, OSError, ValueError):
            return

    def _died(self, i: int) -> None:
        self._procs[i].join(1.0)  # its pipe closes a moment before the exit status can be read
        seq_at, t_at = busy_at(self._k, i)
        seq = int(self._ctrl[seq_at]) if self._ctrl[t_at] else None
        where = "" if seq is None else f" on input #{seq}"
        msg = f"stage {self._names[i]!r} failed{where}: its process died ({_how(self._procs[i].exitcode)})"
        self._fail(PipelineError(msg, stage=self._names[i], seq=seq))

    def _check_timeouts(self, alive: set[int]) -> None:
        if self._timeout_s is None or self._stop.is_set():
            return
        now = time.perf_counter_ns()
        for i in alive:
            seq_at, t_at = busy_at(self._k, i)
            started = int(self._ctrl[t_at])
            if started and now - started > self._timeout_s * 1e9:
                self._timed_out(i, int(self._ctrl[seq_at]))
                self._procs[i].kill()
                return

    def stage_cpu_s(self) -> float:
        """CPU time the stage processes used while running inputs (after start-up), reported at their exit."""
        return sum(self._child_cpu_ns) / 1e9

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stage processes and the monitor; unmap and remove the shared memory once all are gone."""
        done = super().join(timeout)  # the monitor ends only when every stage process has
        for p in self._procs:
            p.join(None if done else 0)
        gone = done and not any(p.is_alive() for p in self._procs)
        if gone:
            self._release()
        return gone

    def _abort(self) -> None:
        """Start-up failed or was interrupted: kill every stage process (none has run an input; one still
        starting up would only print a traceback when its parent's resources vanish) and free the rest."""
        self.stop()
        for p in self._procs:
            if p.pid is not None:
                p.kill()
                p.join()
        self._release()

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        for ring in self._rings:
            ring.release()
        self._rings = []
        for conn in self._conns:
            conn.close()
        if self._block is not None:
            close_block(self._block, unlink=True)
        del self._ctrl
        self._ctrl = np.zeros(ctrl_len(self._k), dtype=np.int64)  # later stop() calls write here, harmlessly
        close_block(self._ctrl_block, unlink=True)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1  # never write to a number the system may hand out again
