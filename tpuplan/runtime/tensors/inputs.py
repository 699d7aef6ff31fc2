"""Inputs for `plan run` and `plan verify`: random tensors, a .npy, a .npz, or a directory of images.

Every source is read lazily, one input at a time as the pipeline asks for it, so any number of inputs
streams through in bounded memory: .npy and .npz arrays are read item by item from the file (zip members
are decompressed as a stream), images are decoded one by one (`runtime.tensors.images`). Random inputs
are a pool of at most RANDOM_POOL distinct tensors used in turn: enough to measure, and never 30,000
tensors built up front.

Float data in a .npy/.npz is quantised with the input's own scale and zero point for a quantised integer
input; otherwise dtypes must match. Every bad input is a one-line error naming the file: what can be
known before the run (not a regular file, a header that does not fit, no inputs, fewer bytes than the
header promises, an encrypted or unsupported zip member, an image that is not 8-bit) is refused before
the pipeline starts; a value that cannot be fed (NaN, an infinity, a number the input's quantisation
cannot hold) is refused when its input is read, naming the input and the index.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.profiles.docio import path_text
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.pipeline.stage import Array
from tpuplan.runtime.tensors import images

RANDOM_POOL = 32
IMAGE_SUFFIXES = images.IMAGE_SUFFIXES
PILLOW_HINT = images.PILLOW_HINT
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, ValueError)


@dataclass(frozen=True)
class InputSpec:
    """One tensor the pipeline must be fed, as its interpreter describes it."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float | None = None  # per-tensor quantisation; None when float or not quantised
    zero_point: int | None = None

    @staticmethod
    def from_details(d: dict[str, Any]) -> InputSpec:
        scale, zero = d.get("quantization", (0.0, 0))
        quantised = bool(scale) and np.issubdtype(np.dtype(d["dtype"]), np.integer)
        return InputSpec(
            str(d["name"]),
            tuple(int(x) for x in d["shape"]),
            np.dtype(d["dtype"]),
            float(scale) if quantised else None,
            int(zero) if quantised else None,
        )

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def quantise(real: Array, spec: InputSpec, where: str) -> Array:
    """Real values as the input's dtype: quantised with its scale and zero point, or cast when float.
    NaN and infinities are refused, and so is a value more than one step outside what the quantised
    input can hold (1.0 for a [-1, 1) input is clipped to the top, as usual; 255.0 is a mistake)."""
    _finite(real, spec, where)
    if np.issubdtype(spec.dtype, np.floating):
        return real.astype(spec.dtype)
    if spec.scale is None or spec.zero_point is None:
        raise TpuplanError(
            f"{where}: input {spec.name!r} is {spec.dtype} without quantisation parameters: give {spec.dtype} data"
        )
    info = np.iinfo(spec.dtype)
    q = np.round(real.astype(np.float64) / spec.scale + spec.zero_point)
    outside = (q < info.min - 1) | (q > info.max + 1)
    if outside.any():
        at = tuple(int(i) for i in np.argwhere(outside)[0])
        low, high = (info.min - spec.zero_point) * spec.scale, (info.max - spec.zero_point) * spec.scale
        raise TpuplanError(
            f"{where}: value {float(real[at]):g} at index {list(at)} is outside what input {spec.name!r} can hold "
            f"(real values {low:.4g} to {high:.4g})"
        )
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def _finite(values: Array, spec: InputSpec, where: str) -> None:
    if not np.issubdtype(values.dtype, np.floating) and not np.issubdtype(values.dtype, np.complexfloating):
        return
    bad = ~np.isfinite(values)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        value = complex(values[at]).real if np.isfinite(complex(values[at]).imag) else complex(values[at]).imag
        word = "NaN" if np.isnan(value) else "an infinity" if value > 0 else "a negative infinity"
        raise TpuplanError(f"{where}: holds {word} at index {list(at)}, which input {spec.name!r} cannot take")


class InputSource:
    """Inputs one at a time (`iter`), `count` of them, and a line saying where they come from."""

    def __init__(self, count: int, description: str, items: Iterator[dict[str, Array]]) -> None:
        self.count, self.description, self._items = count, description, items

    def __iter__(self) -> Iterator[dict[str, Array]]:
        return self._items


def random_input(specs: Sequence[InputSpec], rng: np.random.Generator) -> dict[str, Array]:
    """Random tensors for `specs` (integer types over their full range, at most -128..255)."""
    out: dict[str, Array] = {}
    for s in specs:
        if s.dtype == np.bool_:
            out[s.name] = rng.integers(0, 2, size=s.shape).astype(np.bool_)
        elif np.issubdtype(s.dtype, np.integer):
            info = np.iinfo(s.dtype)
            out[s.name] = rng.integers(max(int(info.min), -128), min(int(info.max), 255) + 1, size=s.shape).astype(
                s.dtype
            )
        else:
            out[s.name] = rng.standard_normal(size=s.shape).astype(s.dtype)
    return out


def random_source(specs: Sequence[InputSpec], count: int, seed: int = 0) -> InputSource:
    def items() -> Iterator[dict[str, Array]]:
        rng = np.random.default_rng(seed)
        pool: list[dict[str, Array]] = []
        for i in range(count):
            if len(pool) < RANDOM_POOL:
                pool.append(random_input(specs, rng))
            yield pool[i % RANDOM_POOL]

    distinct = min(count, RANDOM_POOL)
    return InputSource(count, f"random (seed {seed}, {distinct} distinct tensors used in turn)", items())


def open_inputs(
    path: Path | None, specs: Sequence[InputSpec], *, count: int | None = None, seed: int = 0
) -> InputSource:
    """The inputs of a run: `path` (.npy, .npz or a directory of images), else `count` random ones.
    With a path, `count` takes the first that many (an error when the file holds fewer)."""
    if count is not None and count < 1:
        raise TpuplanError("inputs must be at least 1")
    if path is None:
        return random_source(specs, 100 if count is None else count, seed)
    path = Path(path)
    if path.is_dir():
        reader = _images(path, specs)
    elif path.suffix.lower() == ".npy":
        reader = _npy(path, specs)
    elif path.suffix.lower() == ".npz":
        reader = _npz(path, specs)
    elif not os.path.lexists(path):
        raise TpuplanError(f"{path}: no such file or directory")
    else:
        raise TpuplanError(f"{path}: expected a .npy, a .npz or a directory of PNG/JPEG images")
    if reader.count == 0 or (count is not None and count > reader.count):
        reader.close()
        held = "no inputs" if reader.count == 0 else f"{reader.count} inputs, but {count} were asked for"
        raise TpuplanError(f"{path}: holds {held}")
    n = reader.count if count is None else count
    return InputSource(n, path_text(path), _first(reader.items, n))


def _first(items: Iterator[dict[str, Array]], n: int) -> Iterator[dict[str, Array]]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item


class _Reader:
    """What a file source is before the run: how many inputs it holds, the items to read one by one, and
    how to let go of it when it is refused (or never read)."""

    def __init__(self, count: int, items: Iterator[dict[str, Array]], close: Callable[[], None]) -> None:
        self.count, self.items, self.close = count, items, close


# --- .npy and .npz, streamed ---------------------------------------------------------------------------
class _NpyStream:
    """Items of one array in a .npy stream, read one at a time after the header. `size` is the stream's
    length in bytes: a header promising more items than the bytes that follow is refused before the run."""

    def __init__(self, fh: IO[bytes], where: str, spec: InputSpec, size: int) -> None:
        self.fh, self.where, self.spec = fh, where, spec
        try:
            version = np.lib.format.read_magic(fh)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = read[version](fh)
            header_end = fh.tell()
        except _READ_ERRORS as exc:
            raise TpuplanError(f"{where}: not a readable .npy array ({_detail(exc)})") from None
        if any(not isinstance(d, int) or d < 0 for d in shape):
            raise TpuplanError(f"{where}: not a readable .npy array (shape {list(shape)} has a negative size)")
        if dtype.hasobject:
            raise TpuplanError(f"{where}: holds Python objects; refused")
        if fortran and len(shape) > 1:
            raise TpuplanError(f"{where}: is in Fortran order; save it in C order")
        self.dtype = dtype
        self.count, self.item_shape = self._items_of(tuple(shape))
        self.item_bytes = int(np.prod(self.item_shape, dtype=np.int64)) * dtype.itemsize
        if self.count * self.item_bytes > size - header_end:
            raise TpuplanError(
                f"{where}: the header says {self.count:,} inputs of {self.item_bytes:,} bytes, but only "
                f"{size - header_end:,} bytes follow it (a truncated file)"
            )
        self.convert = self._converter()

    def _items_of(self, shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
        want = self.spec.shape
        if shape[1:] == want and shape:
            return shape[0], want
        if want and want[0] == 1 and shape and shape[1:] == want[1:]:
            return shape[0], want
        if shape == want:
            return 1, want
        raise TpuplanError(
            f"{self.where}: shape {list(shape)} does not fit input {self.spec.name!r} of shape "
            f"{list(want)} (give one input of that shape, or N of them stacked)"
        )

    def _converter(self) -> Callable[[Array, str], Array]:
        spec = self.spec
        if np.can_cast(self.dtype, spec.dtype, casting="equiv"):

            def same(a: Array, where: str) -> Array:
                _finite(a, spec, where)
                return a.astype(spec.dtype, copy=False)

            return same
        if np.issubdtype(self.dtype, np.floating) and spec.scale is not None:
            return lambda a, where: quantise(a, spec, where)
        raise TpuplanError(
            f"{self.where}: dtype {self.dtype} does not fit input {spec.name!r} of dtype "
            f"{spec.dtype}" + (" (float data would be quantised)" if spec.scale else "")
        )

    def __iter__(self) -> Iterator[Array]:
        for i in range(self.count):
            try:
                raw = self.fh.read(self.item_bytes)
            except _READ_ERRORS as exc:
                raise TpuplanError(f"{self.where}: cannot read input #{i} ({_detail(exc)})") from None
            if len(raw) != self.item_bytes:
                raise TpuplanError(f"{self.where}: ends early (truncated after the header says {self.count} items)")
            item = np.frombuffer(raw, dtype=self.dtype).reshape(self.item_shape)
            yield self.convert(item, f"{self.where}: input #{i}")


def _detail(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _one_input(specs: Sequence[InputSpec], path: Path) -> InputSpec:
    if len(specs) != 1:
        names = ", ".join(s.name for s in specs)
        raise TpuplanError(f"{path}: the model has {len(specs)} inputs ({names}): give a .npz with one array each")
    return specs[0]


def _open(path: Path) -> IO[bytes]:
    """A regular file opened for reading, checked before any read: a FIFO or a device (which could block
    or never end) is refused, as document readers refuse them."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TpuplanError(f"{path}: no such file") from None
    except OSError as exc:
        raise TpuplanError(f"{path}: cannot read ({exc.strerror or exc})") from None
    fh = os.fdopen(fd, "rb")  # closed by the reader that uses it
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        fh.close()
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise TpuplanError(f"{path}: is {what}; give a .npy or .npz file")
    return fh


def _npy(path: Path, specs: Sequence[InputSpec]) -> _Reader:
    spec = _one_input(specs, path)
    fh = _open(path)
    try:
        stream = _NpyStream(fh, str(path), spec, os.fstat(fh.fileno()).st_size)
    except BaseException:
        fh.close()
        raise

    def items() -> Iterator[dict[str, Array]]:
        with fh:
            for arr in stream:
                yield {spec.name: arr}

    return _Reader(stream.count, items(), fh.close)


def _members(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by array name, each one we can read (not encrypted, a method zipfile has)."""
    infos = archive.infolist()
    names = [i.filename.removesuffix(".npy") for i in infos]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise TpuplanError(f"{path}: not a readable .npz (array {twice[0]!r} is stored twice)")
    for info in infos:
        if info.flag_bits & 0x1:
            raise TpuplanError(f"{path}: not a readable .npz (member {info.filename!r} is encrypted)")
        if info.compress_type not in _ZIP_METHODS:
            raise TpuplanError(
                f"{path}: not a readable .npz (member {info.filename!r} uses compression method "
                f"{info.compress_type}, which cannot be read here)"
            )
    return dict(zip_strict(names, infos))


def _npz(path: Path, specs: Sequence[InputSpec]) -> _Reader:
    fh = _open(path)
    try:
        archive = zipfile.ZipFile(fh)
    except _READ_ERRORS as exc:
        fh.close()
        raise TpuplanError(f"{path}: not a readable .npz ({_detail(exc)})") from None
    try:
        streams = _npz_streams(archive, path, specs)
    except BaseException:
        archive.close()
        fh.close()
        raise

    def items() -> Iterator[dict[str, Array]]:
        with fh, archive:
            for arrays in zip_strict(*streams):
                yield {s.name: a for s, a in zip_strict(specs, arrays)}

    def close() -> None:
        archive.close()
        fh.close()

    return _Reader(streams[0].count, items(), close)


def _npz_streams(archive: zipfile.ZipFile, path: Path, specs: Sequence[InputSpec]) -> list[_NpyStream]:
    members = _members(archive, path)
    wanted = [s.name for s in specs]
    missing, extra = [n for n in wanted if n not in members], sorted(set(members) - set(wanted))
    if missing or extra:
        raise TpuplanError(
            f"{path}: needs one array per model input named {wanted}; "
            + (f"missing {missing}" if missing else f"unexpected {extra}")
        )
    streams = []
    for s in specs:
        info, where = members[s.name], f"{path}[{s.name}]"
        try:
            member = archive.open(info)
        except _READ_ERRORS as exc:
            raise TpuplanError(f"{path}: not a readable .npz (member {info.filename!r}: {_detail(exc)})") from None
        streams.append(_NpyStream(member, where, s, info.file_size))
    counts = {s.spec.name: s.count for s in streams}
    if len(set(counts.values())) != 1:
        raise TpuplanError(f"{path}: the arrays hold different numbers of inputs: {counts}")
    return streams


# --- images ------------------------------------------------------------------------------------------
def _images(directory: Path, specs: Sequence[InputSpec]) -> _Reader:
    spec = _one_input(specs, directory)
    files = images.image_files(directory, spec.shape, spec.name)

    def items() -> Iterator[dict[str, Array]]:
        for arr in images.image_items(files, spec, quantise):
            yield {spec.name: arr}

    return _Reader(len(files), items(), lambda: None)


def load_image(path: Path, spec: InputSpec, image: object | None = None) -> Array:
    """One image as the model's input tensor (`runtime.tensors.images`)."""
    return images.load_image(path, spec, quantise, image)
