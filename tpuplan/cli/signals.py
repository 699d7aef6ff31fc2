"""How `plan` ends when a signal ends it, the same at any moment of any command.

SIGTERM and SIGHUP (a closed terminal, a dropped ssh session) are raised into whatever runs as
`Terminated`, a KeyboardInterrupt like Ctrl-C, so every `finally` and context manager cleans up
(temporary, staging and probe directories, atomic writes, stage processes, shared memory); the command
then ends with `plan: terminated` and 128 + the signal's number. When the reader of our standard output
goes away (`plan run ... | head` after head exited), the command is stopped the same way and ends
quietly with 141, as a Unix tool killed by SIGPIPE would; a write to the closed pipe at the end is as
quiet. No SIGPIPE handler is installed: a pipe to a stage process that died must stay an error of its
own, not a quiet exit. Only the standard library here: this runs before any heavy import.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import NoReturn

ENDING = (signal.SIGTERM, signal.SIGHUP)
WATCH_S = 0.25  # how often the standard-output watcher looks whether its reader is still there


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C into whatever runs (see the module docstring)."""


_received: list[int] = []  # the signal that ends this command, whatever the interrupted code made of it


def received() -> int | None:
    return _received[0] if _received else None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if not _received:
        _received.append(signum)
    raise Terminated


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """SIGTERM and SIGHUP handled as above, and standard output watched, for the length of a command
    run in the main thread (elsewhere signals cannot be handled: nothing changes)."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in ENDING}
    stop = threading.Event()
    if _is_pipe(sys.stdout):
        threading.Thread(target=_watch_stdout, args=(stop,), name="tpuplan-stdout-watch", daemon=True).start()
    try:
        yield
    finally:
        stop.set()
        for s, handler in previous.items():
            signal.signal(s, handler)


def _fileno(stream: object) -> int | None:
    try:
        fileno = getattr(stream, "fileno", None)
        return int(fileno()) if callable(fileno) else None
    except (OSError, ValueError):
        return None


def _is_pipe(stream: object) -> bool:
    fd = _fileno(stream)
    try:
        return fd is not None and (stat.S_ISFIFO(os.fstat(fd).st_mode) or stat.S_ISSOCK(os.fstat(fd).st_mode))
    except OSError:
        return False


def reader_gone(stream: object = None) -> bool:
    """Whether `stream` (standard output) is a pipe or socket nobody reads any more."""
    fd = _fileno(sys.stdout if stream is None else stream)
    if fd is None or not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR (a pipe without readers) and POLLHUP are always reported
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))


def broken_stdout(exc: BaseException) -> bool:
    """Whether `exc` came of writing to a standard output nobody reads any more."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, BrokenPipeError):
            return reader_gone()
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _watch_stdout(stop: threading.Event) -> None:
    main = threading.main_thread().ident
    while not stop.wait(WATCH_S):
        if reader_gone() and not stop.is_set():
            if not _received:
                _received.append(signal.SIGPIPE)
            if main is not None:
                signal.pthread_kill(main, signal.SIGINT)  # stops the main thread as Ctrl-C does
            return


def end(signum: int) -> NoReturn:
    """Leave after the clean-up a signal started: one line and 128 + n; for SIGPIPE, nothing to say."""
    if signum == signal.SIGPIPE:
        quiet_broken_pipe()
    print("plan: terminated", file=sys.stderr)
    sys.exit(128 + signum)


def quiet_broken_pipe() -> NoReturn:
    """Standard output's reader is gone: exit 141 without a word (and without Python's own complaint
    when it flushes standard output on the way out)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        fd = _fileno(sys.stdout)
        if fd is not None:
            os.dup2(devnull, fd)
    sys.exit(128 + signal.SIGPIPE)
