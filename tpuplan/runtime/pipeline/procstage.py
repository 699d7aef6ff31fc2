"""One stage of a process pipeline, in its own process: build the interpreter, then loop over the ring.

Started by `runtime.pipeline.processes` with the spawn method. The process reports the tensors its interpreter
reads and makes, receives the ring layouts, then per input: wait for a filled slot, set the inputs
straight from shared memory, invoke, wait for a free slot downstream, copy the outputs (and the tensors
it only carries) into it, and signal. Messages to the parent are JSON over a pipe (never pickles): ready,
error (with the input number), and the stage's statistics at exit. SIGINT and SIGHUP are ignored here:
Ctrl-C and a closed terminal are the parent's to handle, and it stops the stages through the shared stop
flag; SIGTERM sent to a stage kills it (the parent reports the stage dead).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.backends.registry import InterpreterStage
from tpuplan.runtime.pipeline.shmring import Ring, RingLayout, attach_block, close_block
from tpuplan.runtime.pipeline.stage import Array

IDLE_CHECK_S = 1.0  # an idle stage looks this often whether its parent still exists


def ctrl_len(k: int) -> int:
    """int64 words of the control block: stop flag, end count per boundary, busy input and start per stage."""
    return 1 + (k + 1) + 2 * k


def end_at(b: int) -> int:
    return 1 + b


def busy_at(k: int, i: int) -> tuple[int, int]:
    return 1 + (k + 1) + i, 1 + (k + 1) + k + i


def send(conn: Any, **msg: Any) -> None:
    conn.send_bytes(json.dumps(msg).encode())


@dataclass(frozen=True)
class StageArgs:
    """What the parent passes to a stage process at spawn (plain values, semaphores and one pipe end)."""

    index: int
    stages: int
    name: str
    content: bytes = field(repr=False)
    where: str
    backend: str
    device: str | None
    ctrl_name: str
    parent_pid: int


def _details(stage: InterpreterStage) -> dict[str, Any]:
    def pack(details: list[dict[str, Any]]) -> list[list[Any]]:
        return [[str(d["name"]), [int(x) for x in d["shape"]], np.dtype(d["dtype"]).name] for d in details]

    return {"inputs": pack(stage.input_details()), "outputs": pack(stage.output_details())}


def stage_process(args: StageArgs, conn: Any, filled: list[Any], free: list[Any]) -> None:
    """Entry point of a stage process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a closed terminal: the parent stops us and cleans up
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked while we were started
    ctrl_block = attach_block(args.ctrl_name)
    ctrl: Array = np.ndarray((ctrl_len(args.stages),), dtype=np.int64, buffer=ctrl_block.buf)
    try:
        try:
            stage = InterpreterStage(
                args.name, args.content, where=args.where, backend=args.backend, device=args.device, probe=False
            )  # the parent probed these bytes
        except Exception as exc:
            send(conn, kind="error", seq=None, message=_what(exc))
            return
        send(conn, kind="ready", **_details(stage))
        go = json.loads(conn.recv_bytes())
        if go.get("kind") != "go":
            stage.close()
            return
        worker = _Loop(args, stage, ctrl, go, filled, free)
        cpu0 = time.process_time_ns()  # the run's CPU time, not the start-up's
        try:
            worker.run(conn)
        finally:
            send(
                conn,
                kind="stats",
                items=worker.items,
                invoke_ns=worker.invoke_ns,
                wait_ns=worker.wait_ns,
                blocked_ns=worker.blocked_ns,
                cpu_ns=time.process_time_ns() - cpu0,
            )
            worker.close()
    except (EOFError, OSError):
        pass  # the parent went away: nothing left to report to
    finally:
        del ctrl
        close_block(ctrl_block, unlink=False)


def _what(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, TpuplanError) else f"{type(exc).__name__}: {exc}"


class _Loop:
    """The per-input loop of one stage over its input and output rings."""

    def __init__(
        self,
        args: StageArgs,
        stage: InterpreterStage,
        ctrl: Array,
        go: dict[str, Any],
        filled: list[Any],
        free: list[Any],
    ) -> None:
        i, k = args.index, args.stages
        self.args, self.stage, self.ctrl = args, stage, ctrl
        self.block = attach_block(str(go["block"]))
        self.ring_in = Ring(self.block.buf, RingLayout.from_json(go["ring_in"]))
        self.ring_out = Ring(self.block.buf, RingLayout.from_json(go["ring_out"]))
        self.take = [int(x) for x in go["take"]]
        pairs = [(int(s), int(j)) for s, j in go["pairs"]]
        self.carry = [(j, k_in) for j, (s, k_in) in enumerate(pairs) if s == 0]
        self.dest_of = [
            next((j for j, (s, k2) in enumerate(pairs) if s == 1 and k2 == o), None)
            for o in range(len(stage.output_names))
        ]
        self.filled_in, self.free_in, self.filled_out, self.free_out = filled[i], free[i], filled[i + 1], free[i + 1]
        self.end_in, self.end_out = end_at(i), end_at(i + 1)
        self.busy_seq, self.busy_t = busy_at(k, i)
        self.last = i == k - 1
        self.items, self.wait_ns, self.blocked_ns = 0, 0, 0
        self.invoke_ns: list[int] = []

    def _acquire(self, sem: Any) -> bool:
        """Wait for a semaphore; False when the pipeline stopped or the parent is gone."""
        while not sem.acquire(timeout=IDLE_CHECK_S):
            if self.ctrl[0] or os.getppid() != self.args.parent_pid:
                return False
        return not self.ctrl[0]

    def run(self, conn: Any) -> None:
        ctrl, clock, r = self.ctrl, time.perf_counter_ns, 0
        seq: int | None = None
        try:
            while True:
                t0 = clock()
                if not self._acquire(self.filled_in):
                    return
                if r == ctrl[self.end_in]:  # the end of the stream: pass it on
                    ctrl[self.end_out] = r
                    self.filled_out.release()
                    return
                t1 = clock()
                seq, t_push, vin = self._read(r, t1)
                if not self.carry:
                    self.free_in.release()  # the inputs are in the interpreter now: the slot is free
                t2 = clock()
                ctrl[self.busy_t] = 0
                if not self._acquire(self.free_out):
                    return
                t3 = clock()
                self._write(r, seq, t_push, vin)
                if self.carry:
                    self.free_in.release()
                self.filled_out.release()
                r += 1
                self.items += 1
                self.wait_ns += t1 - t0
                self.blocked_ns += t3 - t2
                self.invoke_ns.append(t2 - t1 + clock() - t3)
        except Exception as exc:
            send(conn, kind="error", seq=seq, message=_what(exc))

    def _read(self, r: int, t1: int) -> tuple[int, int, list[Array]]:
        """Take input r into the interpreter and run it; the slot's sequence number and push time."""
        header = self.ring_in.header(r)
        seq, t_push = int(header[0]), int(header[1])
        self.ctrl[self.busy_seq], self.ctrl[self.busy_t] = seq, t1
        vin = self.ring_in.tensors(r)
        self.stage.feed([vin[k] for k in self.take])
        return seq, t_push, vin

    def _write(self, w: int, seq: int, t_push: int, vin: list[Array]) -> None:
        vout = self.ring_out.tensors(w)
        for j, k in self.carry:
            np.copyto(vout[j], vin[k])
        self.stage.read_into([None if j is None else vout[j] for j in self.dest_of])
        header = self.ring_out.header(w)
        header[0], header[1], header[2] = seq, t_push, time.perf_counter_ns() if self.last else 0

    def close(self) -> None:
        self.stage.close()
        self.ring_in.release()
        self.ring_out.release()
        close_block(self.block, unlink=False)
