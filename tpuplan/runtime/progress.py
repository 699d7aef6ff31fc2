"""Progress of long steps: the library reports through a callback, the CLI decides whether to draw.

A progress callback is any `callable(label, done, total)`; `total` is None when unknown. Library code
that takes one (`measure_profile`, `run_split`, `verify`, and any other long step) calls it as work
advances and never prints; modules below `runtime` can accept the same callable type without importing
this one. `cli_progress` gives the CLI a bar on stderr when stderr is a terminal and `--quiet` is not
given, and None otherwise, so that logs, pipes and build systems see nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Optional, TextIO

Progress = Callable[[str, int, Optional[int]], None]  # a value, evaluated on Python 3.9 too: no `int | None`
QUIET_HELP = "No progress bar (one is drawn on stderr only when it is a terminal)."
BAR_WIDTH = 28
MIN_INTERVAL_S = 0.1  # redraw at most this often (a bar must not cost the run it measures)


class TerminalBar:
    """A one-line bar redrawn in place: `label [#####.....] 123/400 1.2 s`.

    `close` ends the line showing the latest count, drawn or not (a redraw is skipped when the last was
    under MIN_INTERVAL_S ago), so that what follows, an error message above all, starts on its own line
    and the bar does not claim less progress than was made."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._label: str | None = None
        self._started = self._drawn = 0.0
        self._open = False
        self._pending: tuple[int, int | None] | None = None  # a count not drawn yet

    def __call__(self, label: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if label != self._label:
            self.close()
            self._label, self._started, self._drawn = label, now, 0.0
        finished = total is not None and done >= total
        if not finished and now - self._drawn < MIN_INTERVAL_S:
            self._pending = (done, total)
            return
        self._draw(done, total, now)
        if finished:
            self.close()

    def _draw(self, done: int, total: int | None, now: float) -> None:
        self._drawn, self._pending = now, None
        elapsed = f"{now - self._started:.1f} s"
        if total:
            filled = round(BAR_WIDTH * min(done, total) / total)
            text = f"{self._label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} {elapsed}"
        else:
            text = f"{self._label} {done} {elapsed}"
        self.stream.write("\r" + text + "\x1b[K")
        self._open = True
        self.stream.flush()

    def close(self) -> None:
        """End the current line, with the latest count on it (the next label starts on a fresh one)."""
        if self._pending is not None:
            self._draw(*self._pending, time.monotonic())
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def cli_progress(quiet: bool, stream: TextIO | None = None) -> Progress | None:
    """A bar on stderr (or `stream`) when it is a terminal that can redraw a line (not TERM=dumb) and
    not `quiet`; None draws nothing."""
    out = sys.stderr if stream is None else stream
    isatty = getattr(out, "isatty", None)
    if quiet or not (callable(isatty) and isatty()) or os.environ.get("TERM") == "dumb":
        return None
    return TerminalBar(out)


@contextlib.contextmanager
def progress_bar(quiet: bool, stream: TextIO | None = None) -> Iterator[Progress | None]:
    """`cli_progress` for the length of a command: its line is ended however the command ends, so an
    error is printed on a line of its own after the latest count."""
    bar = cli_progress(quiet, stream)
    try:
        yield bar
    finally:
        if isinstance(bar, TerminalBar):
            bar.close()


def ticker(progress: Progress | None, label: str, total: int | None) -> Callable[[int], None]:
    """A function taking the count done so far, reporting `label` to `progress` (a no-op when None)."""
    if progress is None:
        return lambda done: None
    report = progress
    report(label, 0, total)
    return lambda done: report(label, done, total)
