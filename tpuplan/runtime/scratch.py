"""Temporary files of the runtime (the interpreter probe's models, verify's segments), with the failure
named: a full or read-only TMPDIR is "cannot write temporary files in /tmp", not an error that could be
mistaken for one of the command's outputs (or for standard output)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tpuplan.profiles.errors import TpuplanError


def _failed(what: str, exc: OSError) -> TpuplanError:
    return TpuplanError(
        f"cannot write temporary files for {what} in {tempfile.gettempdir()} ({exc.strerror or exc}); "
        "free some space there or point TMPDIR at a directory with room"
    )


@contextlib.contextmanager
def temporary_directory(prefix: str, what: str) -> Iterator[str]:
    """`tempfile.TemporaryDirectory`, its creation failing as one line naming TMPDIR; removed afterwards."""
    try:
        holder = tempfile.TemporaryDirectory(prefix=prefix)
    except OSError as exc:
        raise _failed(what, exc) from None
    with holder as path:
        yield path


def write_temporary(path: Path, data: bytes, what: str) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise _failed(what, exc) from None
