"""LiteRT's C++ logging, tamed: no INFO banner on every run, no multi-line errors, no lost real errors.

LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." straight to file descriptor 2
whenever an interpreter allocates its tensors, and Python's `sys.stderr` never sees it. So the calls that
print it (interpreter creation and `allocate_tensors`, not `invoke`: that is the hot path) run with fd 2
pointed at a temporary file; afterwards the known INFO lines are dropped and everything else is written to
the real stderr, in order. When the call raises, the captured lines travel with the exception instead
(`one_line` folds them into the one-line message), so the CLI still prints exactly one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

_NOISE = re.compile(
    rb"^INFO: (Created TensorFlow Lite (XNNPACK )?delegate for CPU"
    rb"|Initialized TensorFlow Lite runtime)"
)
_URL_HINT = re.compile(r"See instructions: \S+\s*")
_LOCK = threading.RLock()
_ATTR = "tpuplan_native_log"  # captured lines attached to an exception raised inside `quiet_native_logs`
_depth = 0


def _keep(raw: bytes) -> list[bytes]:
    return [line for line in raw.splitlines(keepends=True) if line.strip() and not _NOISE.match(line)]


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Run the body with fd 2 captured; drop LiteRT's INFO banners, pass every other line on.

    Re-entrant (an inner use is a no-op) and serialised across threads: fd 2 is one per process. A thread
    that writes to stderr meanwhile is captured too and replayed afterwards, so nothing is lost.
    """
    global _depth
    with _LOCK:
        if _depth:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no fd 2 (a closed stderr): nothing to filter
            yield
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            _depth = 1
            try:
                yield
            except Exception as exc:
                _restore(saved)
                tmp.seek(0)
                lines = [ln.decode("utf-8", "replace").strip() for ln in _keep(tmp.read())]
                with contextlib.suppress(AttributeError):
                    setattr(exc, _ATTR, lines)  # one_line(exc) reads them: the error stays one line
                raise
            except BaseException:
                _restore(saved)
                _replay(tmp)
                raise
            else:
                _restore(saved)
                _replay(tmp)
            finally:
                _depth = 0


def _restore(saved: int) -> None:
    if saved >= 0:
        os.dup2(saved, 2)
        os.close(saved)


def _replay(tmp: IO[bytes]) -> None:
    tmp.seek(0)
    kept = _keep(tmp.read())
    if kept:
        with contextlib.suppress(OSError):
            os.write(2, b"".join(kept))


def one_line(exc: BaseException) -> str:
    """An interpreter error as one line: every line of its message (and of what it printed natively while
    failing), trimmed, without LiteRT's "See instructions: URL" boilerplate, joined with '; '."""
    parts: list[str] = []
    for text in [str(exc), *getattr(exc, _ATTR, [])]:
        for line in _URL_HINT.sub("", text).splitlines():
            line = " ".join(line.split()).removeprefix("ERROR: ")
            if line and line not in parts:
                parts.append(line)
    return "; ".join(parts) if parts else type(exc).__name__
