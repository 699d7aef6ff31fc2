"""`plan run -o out.npz`: every output of every input, in input order, streamed to disk.

One array per model output, the inputs stacked on a new first axis, as `np.savez` would write it, so
`np.load("out.npz")[name][i]` is output `name` of input i. The rows are appended to raw files in a hidden
staging directory next to the destination while the pipeline runs (memory stays bounded however many
inputs), and `commit` writes the .npz beside it and moves it into place: the file appears whole or not
at all, never half-written, and without `overwrite` a file that appeared at the destination during the
run is kept (`profiles.docio.publish`). The destination `-` is standard output (the .npz is built in the
temporary directory, then copied there). The caller checks the destination with `check_output` before
the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from tpuplan.profiles.docio import publish, temporary_sibling
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.pipeline.stage import Array


class NpzWriter:
    """Collects outputs row by row (`add`), then `commit` writes the .npz atomically; `abort` drops it."""

    def __init__(self, path: Path, names: list[str], *, overwrite: bool = False) -> None:
        self.path, self.names, self.count, self.overwrite = Path(path), list(names), 0, overwrite
        self.to_stdout = str(path) == "-"
        try:
            if self.to_stdout:
                self._staging = Path(tempfile.mkdtemp(prefix="tpuplan-run-", suffix=".rows"))
            else:
                self._staging = temporary_sibling(self.path, "rows")  # short: any legal output name fits
                self._staging.mkdir()
        except OSError as exc:
            raise TpuplanError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        self._rows: dict[str, IO[bytes]] = {}
        self._kinds: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}

    def add(self, outputs: dict[str, Array]) -> None:
        """Append one input's outputs (every name, the same shape and dtype each time)."""
        try:
            for name in self.names:
                arr = np.ascontiguousarray(outputs[name])
                kind = (arr.shape, arr.dtype)
                if name not in self._rows:
                    self._kinds[name] = kind
                    self._rows[name] = open(self._staging / f"{len(self._rows)}.raw", "wb")  # noqa: SIM115
                elif kind != self._kinds[name]:
                    raise TpuplanError(f"{self.path}: output {name!r} changed shape or dtype at input #{self.count}")
                self._rows[name].write(arr.tobytes())
        except OSError as exc:
            self.abort()
            raise TpuplanError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
        self.count += 1

    def commit(self) -> None:
        """Write the .npz next to the destination, then move it into place (or copy it to stdout)."""
        tmp = self._staging / "out.npz" if self.to_stdout else temporary_sibling(self.path, "tmp")
        try:
            try:
                for fh in self._rows.values():
                    fh.close()
                if not self.count:
                    raise TpuplanError(f"{self.path}: no outputs to write")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # honours the umask
                with os.fdopen(fd, "wb") as raw:
                    with zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                        for k, name in enumerate(self.names):
                            self._member(zf, name, self._staging / f"{k}.raw")
                    raw.flush()
                    os.fsync(raw.fileno())
                if not self.to_stdout:
                    publish(tmp, self.path, overwrite=self.overwrite)
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                if isinstance(exc, OSError):
                    raise TpuplanError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
                raise
            if self.to_stdout:  # a closed pipe is the caller's to judge, not a file we failed to write
                with open(tmp, "rb") as src:
                    shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
                sys.stdout.buffer.flush()
        finally:
            self.abort()

    def _member(self, zf: zipfile.ZipFile, name: str, rows: Path) -> None:
        shape, dtype = self._kinds[name]
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (self.count, *shape)}
        with zf.open(f"{name}.npy", "w", force_zip64=True) as member, open(rows, "rb") as src:
            np.lib.format.write_array_header_2_0(member, header)
            shutil.copyfileobj(src, member, 1 << 20)

    def abort(self) -> None:
        """Remove the staging directory (a no-op after commit)."""
        for fh in self._rows.values():
            with contextlib.suppress(OSError):
                fh.close()
        self._rows = {}
        shutil.rmtree(self._staging, ignore_errors=True)
