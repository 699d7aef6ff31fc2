"""Inputs for `plan run` and `plan verify`: random tensors, a .npy, a .npz, or a directory of images.

Every source is read lazily, one input at a time as the pipeline asks for it, so any number of inputs
streams through in bounded memory: .npy and .npz arrays are read item by item from the file (zip members
are decompressed as a stream), images are decoded one by one. Random inputs are a pool of at most
RANDOM_POOL distinct tensors used in turn: enough to measure, and never 30,000 tensors built up front.

Images (PNG, JPEG; Pillow, the optional `images` extra) are converted to RGB (or L for one channel) and
resized to the model's input with bilinear filtering, no crop. Their pixels p become real values
(p - 128) / 128, Coral's convention (mean 128, std 128), quantised with the input's own scale and zero
point: for the usual uint8 input with scale 1/128 and zero point 128 that is the pixel itself. Float data
in a .npy/.npz is quantised the same way for a quantised integer input; otherwise dtypes must match.
Every bad input is a one-line error naming the file.
"""

from __future__ import annotations

import importlib
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.pipeline.stage import Array

RANDOM_POOL = 32
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PILLOW_HINT = "reading images needs Pillow: pip install 'tpuplan[images]' (or pillow)"


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
    """Real values as the input's dtype: quantised with its scale and zero point, or cast when float."""
    if np.issubdtype(spec.dtype, np.floating):
        return real.astype(spec.dtype)
    if spec.scale is None or spec.zero_point is None:
        raise TpuplanError(
            f"{where}: input {spec.name!r} is {spec.dtype} without quantisation parameters: give {spec.dtype} data"
        )
    info = np.iinfo(spec.dtype)
    q = np.round(real.astype(np.float64) / spec.scale + spec.zero_point)
    return np.clip(q, info.min, info.max).astype(spec.dtype)


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
        available, items = _images(path, specs)
    elif path.suffix.lower() == ".npy":
        available, items = _npy(path, specs)
    elif path.suffix.lower() == ".npz":
        available, items = _npz(path, specs)
    elif not path.exists():
        raise TpuplanError(f"{path}: no such file or directory")
    else:
        raise TpuplanError(f"{path}: expected a .npy, a .npz or a directory of PNG/JPEG images")
    if count is not None and count > available:
        raise TpuplanError(f"{path}: holds {available} inputs, but {count} were asked for")
    n = available if count is None else count
    return InputSource(n, str(path), _first(items, n))


def _first(items: Iterator[dict[str, Array]], n: int) -> Iterator[dict[str, Array]]:
    for i, item in enumerate(items):
        if i >= n:
            return
        yield item


# --- .npy and .npz, streamed ---------------------------------------------------------------------------
class _NpyStream:
    """Items of one array in a .npy stream, read one at a time after the header."""

    def __init__(self, fh: IO[bytes], where: str, spec: InputSpec) -> None:
        self.fh, self.where, self.spec = fh, where, spec
        try:
            version = np.lib.format.read_magic(fh)
            read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in read:
                raise ValueError(f"unsupported .npy version {version}")
            shape, fortran, dtype = read[version](fh)
        except (ValueError, OSError, EOFError) as exc:
            raise TpuplanError(f"{where}: not a readable .npy array ({exc})") from None
        if dtype.hasobject:
            raise TpuplanError(f"{where}: holds Python objects; refused")
        if fortran and len(shape) > 1:
            raise TpuplanError(f"{where}: is in Fortran order; save it in C order")
        self.dtype = dtype
        self.count, self.item_shape = self._items_of(tuple(shape))
        self.item_bytes = int(np.prod(self.item_shape, dtype=np.int64)) * dtype.itemsize
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

    def _converter(self) -> Any:
        spec = self.spec
        if np.can_cast(self.dtype, spec.dtype, casting="equiv"):
            return lambda a: a.astype(spec.dtype, copy=False)
        if np.issubdtype(self.dtype, np.floating) and spec.scale is not None:
            return lambda a: quantise(a, spec, self.where)
        raise TpuplanError(
            f"{self.where}: dtype {self.dtype} does not fit input {spec.name!r} of dtype "
            f"{spec.dtype}" + (" (float data would be quantised)" if spec.scale else "")
        )

    def __iter__(self) -> Iterator[Array]:
        for _ in range(self.count):
            raw = self.fh.read(self.item_bytes)
            if len(raw) != self.item_bytes:
                raise TpuplanError(f"{self.where}: ends early (truncated after the header says {self.count} items)")
            yield self.convert(np.frombuffer(raw, dtype=self.dtype).reshape(self.item_shape))


def _one_input(specs: Sequence[InputSpec], path: Path) -> InputSpec:
    if len(specs) != 1:
        names = ", ".join(s.name for s in specs)
        raise TpuplanError(f"{path}: the model has {len(specs)} inputs ({names}): give a .npz with one array each")
    return specs[0]


def _npy(path: Path, specs: Sequence[InputSpec]) -> tuple[int, Iterator[dict[str, Array]]]:
    spec = _one_input(specs, path)
    fh = _open(path)
    stream = _NpyStream(fh, str(path), spec)

    def items() -> Iterator[dict[str, Array]]:
        with fh:
            for arr in stream:
                yield {spec.name: arr}

    return stream.count, items()


def _open(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")  # closed by the generator that reads it
    except OSError as exc:
        raise TpuplanError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _npz(path: Path, specs: Sequence[InputSpec]) -> tuple[int, Iterator[dict[str, Array]]]:
    try:
        archive = zipfile.ZipFile(_open(path))
    except (zipfile.BadZipFile, OSError) as exc:
        raise TpuplanError(f"{path}: not a readable .npz ({exc})") from None
    keys = {n.removesuffix(".npy"): n for n in archive.namelist()}
    wanted = [s.name for s in specs]
    missing, extra = [n for n in wanted if n not in keys], sorted(set(keys) - set(wanted))
    if missing or extra:
        archive.close()
        raise TpuplanError(
            f"{path}: needs one array per model input named {wanted}; "
            + (f"missing {missing}" if missing else f"unexpected {extra}")
        )
    streams = [_NpyStream(archive.open(keys[s.name]), f"{path}[{s.name}]", s) for s in specs]
    counts = {s.spec.name: s.count for s in streams}
    if len(set(counts.values())) != 1:
        archive.close()
        raise TpuplanError(f"{path}: the arrays hold different numbers of inputs: {counts}")

    def items() -> Iterator[dict[str, Array]]:
        with archive:
            for arrays in zip_strict(*streams):
                yield {s.name: a for s, a in zip_strict(specs, arrays)}

    return streams[0].count, items()


# --- images ------------------------------------------------------------------------------------------
def _pillow() -> Any:
    try:
        return importlib.import_module("PIL.Image")
    except ImportError:
        raise TpuplanError(PILLOW_HINT) from None


def _images(directory: Path, specs: Sequence[InputSpec]) -> tuple[int, Iterator[dict[str, Array]]]:
    spec = _one_input(specs, directory)
    shape = spec.shape
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3):
        raise TpuplanError(
            f"{directory}: images need a model input of shape [1, H, W, 1 or 3]; {spec.name!r} is {list(shape)}"
        )
    try:
        files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as exc:
        raise TpuplanError(f"{directory}: cannot list ({exc.strerror or exc})") from None
    if not files:
        raise TpuplanError(f"{directory}: holds no PNG or JPEG images")
    image = _pillow()

    def items() -> Iterator[dict[str, Array]]:
        for path in files:
            yield {spec.name: load_image(path, spec, image)}

    return len(files), items()


def load_image(path: Path, spec: InputSpec, image: Any | None = None) -> Array:
    """One image as the model's input tensor (see the module docstring for the conversion)."""
    image = image or _pillow()
    _, height, width, channels = spec.shape
    try:
        with image.open(path) as img:
            pixels = np.asarray(
                img.convert("RGB" if channels == 3 else "L").resize((width, height), image.Resampling.BILINEAR),
                dtype=np.uint8,
            )
    except (OSError, ValueError, SyntaxError, image.DecompressionBombError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise TpuplanError(f"{path}: cannot read the image ({detail})") from None
    if spec.dtype == np.uint8 and spec.scale is None:
        return pixels.reshape(spec.shape)  # an unquantised uint8 input takes the pixels as they are
    real = (pixels.astype(np.float32) - 128.0) / 128.0
    return quantise(real, spec, str(path)).reshape(spec.shape)
