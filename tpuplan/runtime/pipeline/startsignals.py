"""Starting stage processes without a signal cutting their start data short.

A stage process is started by pickling its start data down a pipe; a handler that raised in the middle
of that (Ctrl-C, a terminal closing) would leave the child an unpickling traceback to print. Apart from
the process pipeline (`runtime.pipeline.processes`) because it is the one place that touches signal
handlers and masks, and it must run in the main thread to change them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from multiprocessing import resource_tracker
from typing import Any

_STARTING_BLOCKED = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP while stage processes are started: a handler that raised here would
    cut the start data short in the middle of writing it (the child would print an unpickling traceback).
    Python runs its handlers in the main thread whichever thread the signal reached, so the handlers are
    replaced by a recorder for that moment (and the first signal recorded is raised again afterwards);
    the signals are also blocked in this thread, and the children keep that mask, so a signal to the whole
    group during their imports prints nothing there either."""
    pending: list[int] = []
    deferred = _defer_handlers(pending)
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is not None:
        resource_tracker.ensure_running()  # started later, it would unblock SIGINT for us on its way
    old = mask(signal.SIG_BLOCK, _STARTING_BLOCKED) if mask is not None else None
    try:
        yield
    finally:
        if mask is not None and old is not None:
            mask(signal.SIG_SETMASK, old)
        for signum, handler in deferred.items():
            signal.signal(signum, handler)
        if pending:
            signal.raise_signal(pending[0])


def _defer_handlers(pending: list[int]) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}  # only the main thread may change handlers; the mask still holds this thread's signals
    deferred: dict[int, Any] = {}
    for signum in _STARTING_BLOCKED:
        handler = signal.getsignal(signum)
        if handler is not None and handler not in (signal.SIG_IGN, signal.SIG_DFL):
            deferred[signum] = handler
            signal.signal(signum, lambda n, frame: pending.append(n))
    return deferred
