"""`plan run -o out.npz`: every output of every input, in input order, streamed to disk.

One array per model output, the inputs stacked on a new first axis, as `np.savez` would write it, so
`np.load("out.npz")[name][i]` is output `name` of input i. The rows are appended to raw files in a hidden
staging directory next to the destination while the pipeline runs (memory stays bounded however many
inputs), and `commit` writes the .npz beside it and renames it into place: the file appears whole or not
at all, never half-written. The caller checks the destination with `check_output` before the run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.pipeline.stage import Array


class NpzWriter:
    """Collects outputs row by row (`add`), then `commit` writes the .npz atomically; `abort` drops it."""

    def __init__(self, path: Path, names: list[str]) -> None:
        self.path, self.names, self.count = Path(path), list(names), 0
        parent = self.path.parent if str(self.path.parent) else Path(".")
        try:
            self._staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".rows", dir=parent))
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
        """Write the .npz next to the destination, then rename it into place."""
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
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
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise TpuplanError(f"{self.path}: cannot write ({exc.strerror or exc})") from None
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
