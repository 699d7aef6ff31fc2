"""Shared-memory rings between stage processes: fixed slots of fixed tensors, laid out once.

Every boundary of a process pipeline carries the same ordered tensors for every input (see
`runtime.pipeline.routing`), so its ring is `slots` equal slots, each a small header (sequence number, push time,
result time) and then each tensor at a 64-byte aligned offset. Producer and consumer of a boundary are
single processes that each keep their own slot counter; two semaphores per boundary (filled, free) say
whose turn a slot is. Nothing is pickled per input: tensors are copied straight into and out of the
mapped memory.
"""

from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.pipeline.stage import Array

HEADER = 3  # int64 per slot: sequence number, push time (ns), result-ready time (ns)
_ALIGN = 64


@dataclass(frozen=True)
class TensorLayout:
    """One tensor of a slot: where it starts in the slot, and what it is."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class RingLayout:
    """A boundary's ring: `slots` slots of `slot_bytes`, starting at `base` in the shared block."""

    base: int
    slots: int
    slot_bytes: int
    tensors: tuple[TensorLayout, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "slots": self.slots,
            "slot_bytes": self.slot_bytes,
            "tensors": [[t.name, list(t.shape), t.dtype, t.offset] for t in self.tensors],
        }

    @staticmethod
    def from_json(doc: dict[str, Any]) -> RingLayout:
        tensors = tuple(TensorLayout(str(n), tuple(int(x) for x in s), str(d), int(o)) for n, s, d, o in doc["tensors"])
        return RingLayout(int(doc["base"]), int(doc["slots"]), int(doc["slot_bytes"]), tensors)


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def plan_rings(boundaries: list[list[tuple[str, tuple[int, ...], str]]], slots: int) -> tuple[list[RingLayout], int]:
    """Layouts of one ring per boundary (each a list of (name, shape, dtype)) in one block; its size."""
    rings, base = [], 0
    for tensors in boundaries:
        offset, laid = _aligned(HEADER * 8), []
        for name, shape, dtype in tensors:
            t = TensorLayout(name, tuple(shape), dtype, offset)
            laid.append(t)
            offset = _aligned(offset + max(t.nbytes, 1))
        rings.append(RingLayout(base, slots, offset, tuple(laid)))
        base += offset * slots
    return rings, max(base, _ALIGN)


class Ring:
    """Views of one ring's slots in a mapped block: `header(k)` and `tensors(k)` of slot k (no copies)."""

    def __init__(self, buf: Any, layout: RingLayout) -> None:
        self.layout = layout
        self._headers: list[Array] = []
        self._tensors: list[list[Array]] = []
        for k in range(layout.slots):
            start = layout.base + k * layout.slot_bytes
            self._headers.append(np.ndarray((HEADER,), dtype=np.int64, buffer=buf, offset=start))
            self._tensors.append(
                [
                    np.ndarray(t.shape, dtype=np.dtype(t.dtype), buffer=buf, offset=start + t.offset)
                    for t in layout.tensors
                ]
            )

    def header(self, k: int) -> Array:
        return self._headers[k % self.layout.slots]

    def tensors(self, k: int) -> list[Array]:
        return self._tensors[k % self.layout.slots]

    def release(self) -> None:
        """Drop the views so the block can be unmapped."""
        self._headers, self._tensors = [], []


SHM_DIR = Path("/dev/shm")  # where POSIX shared memory lives on Linux (a tmpfs; 64 MB in a default Docker)


def create_block(size: int, *, what: str = "the stages' rings") -> shared_memory.SharedMemory:
    """A shared block of `size` bytes with every page reserved now: tmpfs hands out pages only when they
    are first written, and a write that finds /dev/shm full kills the writer with SIGBUS (no message, no
    clean-up). Too little room is a one-line error here instead, before any stage runs."""
    free = shm_free_bytes()
    if free is not None and size > free:
        raise TpuplanError(_no_room(size, free, what))
    block = shared_memory.SharedMemory(create=True, size=size)
    fd = getattr(block, "_fd", -1)
    if fd >= 0 and hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            close_block(block, unlink=True)
            if exc.errno in (errno.ENOSPC, errno.ENOMEM):
                raise TpuplanError(_no_room(size, shm_free_bytes(), what)) from None
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
    return block


def shm_free_bytes() -> int | None:
    """Bytes free in /dev/shm (None where there is none to ask)."""
    try:
        info = os.statvfs(SHM_DIR)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def _no_room(size: int, free: int | None, what: str) -> str:
    room = "" if free is None else f", {free / 2**20:.1f} MiB free"
    return (
        f"not enough shared memory in {SHM_DIR} for {what} ({size / 2**20:.1f} MiB needed{room}): use a smaller "
        "--queue-size, --workers threads, or give the container more (docker run --shm-size)"
    )


def attach_block(name: str) -> shared_memory.SharedMemory:
    """Map a block the parent created. A spawned child shares the parent's resource tracker, whose
    registry is a set, so attaching registers nothing new; the parent's unlink unregisters it."""
    return shared_memory.SharedMemory(name=name)


def close_block(block: shared_memory.SharedMemory, *, unlink: bool) -> None:
    with contextlib.suppress(Exception):
        block.close()
    if unlink:
        with contextlib.suppress(FileNotFoundError):
            block.unlink()
