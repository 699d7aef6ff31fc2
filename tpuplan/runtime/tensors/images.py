"""A directory of images as model inputs (`plan run -i DIR`, `plan verify -i DIR`).

Images (PNG, JPEG; Pillow, the optional `images` extra) are converted to RGB (or L for one channel) and
resized to the model's input with bilinear filtering, no crop. Their pixels p become real values
(p - 128) / 128, Coral's convention (mean 128, std 128), quantised with the input's own scale and zero
point: for the usual uint8 input with scale 1/128 and zero point 128 that is the pixel itself.

Only 8-bit images are read: Pillow turns a 16-bit or float image into 8-bit RGB by clipping (a 16-bit
PNG becomes white), which would feed the model a different picture without a word. Every image's header
is read before the run starts, so a file that is not an image, is empty, or is not 8-bit is refused at
once by name; the pixels are decoded one image at a time as the pipeline asks for them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.pipeline.stage import Array

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PILLOW_HINT = "reading images needs Pillow: pip install 'tpuplan[images]' (or pillow)"
EIGHT_BIT_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
)
_WHAT_MODE = {"I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I;16N": "16-bit", "I": "32-bit integer"}

Quantise = Callable[[Array, Any, str], Array]


def pillow() -> Any:
    try:
        return importlib.import_module("PIL.Image")
    except ImportError:
        raise TpuplanError(PILLOW_HINT) from None


def _describe(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def check_header(path: Path, image: Any) -> None:
    """Open the image's header only: refuse what is not an image, has no pixels, or is not 8-bit."""
    try:
        with image.open(path) as img:
            mode, size = img.mode, img.size
    except (OSError, ValueError, SyntaxError, image.DecompressionBombError) as exc:
        raise TpuplanError(f"{path}: cannot read the image ({_describe(exc)})") from None
    if mode not in EIGHT_BIT_MODES:
        what = _WHAT_MODE.get(mode, "floating-point" if mode == "F" else f"mode {mode}")
        raise TpuplanError(
            f"{path}: a {what} image (Pillow mode {mode}); only 8-bit images are read, convert it to 8-bit first"
        )
    if size[0] < 1 or size[1] < 1:
        raise TpuplanError(f"{path}: the image has no pixels ({size[0]}x{size[1]})")


def image_files(directory: Path, shape: tuple[int, ...], name: str) -> list[Path]:
    """The PNG and JPEG files of `directory`, in name order, each header checked (see `check_header`)."""
    if len(shape) != 4 or shape[0] != 1 or shape[3] not in (1, 3):
        raise TpuplanError(
            f"{directory}: images need a model input of shape [1, H, W, 1 or 3]; {name!r} is {list(shape)}"
        )
    try:
        files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as exc:
        raise TpuplanError(f"{directory}: cannot list ({exc.strerror or exc})") from None
    if not files:
        raise TpuplanError(f"{directory}: holds no PNG or JPEG images")
    image = pillow()
    for path in files:
        check_header(path, image)
    return files


def image_items(files: Sequence[Path], spec: Any, quantise: Quantise) -> Iterator[Array]:
    image = pillow()
    for path in files:
        yield load_image(path, spec, quantise, image)


def load_image(path: Path, spec: Any, quantise: Quantise, image: Any | None = None) -> Array:
    """One image as the model's input tensor (see the module docstring for the conversion)."""
    image = image or pillow()
    _, height, width, channels = spec.shape
    try:
        with image.open(path) as img:
            if img.mode not in EIGHT_BIT_MODES:  # changed since its header was checked
                raise TpuplanError(f"{path}: not an 8-bit image (Pillow mode {img.mode})")
            pixels = np.asarray(
                img.convert("RGB" if channels == 3 else "L").resize((width, height), image.Resampling.BILINEAR),
                dtype=np.uint8,
            )
    except (OSError, ValueError, SyntaxError, image.DecompressionBombError) as exc:
        raise TpuplanError(f"{path}: cannot read the image ({_describe(exc)})") from None
    if spec.dtype == np.uint8 and spec.scale is None:
        fed: Array = pixels.reshape(spec.shape)  # an unquantised uint8 input takes the pixels as they are
        return fed
    real = (pixels.astype(np.float32) - 128.0) / 128.0
    fed = quantise(real, spec, str(path)).reshape(spec.shape)
    return fed
