"""Red-team pass 3 (issue 22), inputs: every bad .npy, .npz, image directory or special file is a one-line
error naming the file, before the pipeline starts; a value that cannot be fed names the input and index.

Each test names the finding of ../shared/findings/redteam-3.md it closes.
"""

from __future__ import annotations

import importlib
import io
import os
import struct
import threading
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import one_line_error, plan
from tpuplan.planner.plan_build import evaluate
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite.reader import parse_model
from tpuplan.runtime.split.write import write_split
from tpuplan.runtime.tensors.inputs import InputSpec, open_inputs

VEC = InputSpec("x", (1, 4), np.dtype(np.float32))
IMG = InputSpec("image", (1, 8, 6, 3), np.dtype(np.uint8), 1 / 128, 128)


def _message(exc: pytest.ExceptionInfo[TpuplanError], where: Path) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.startswith(str(where)), text
    return text


def _header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda: _npy(np.zeros((0, 1, 4), np.float32)), "holds no inputs"),
        (lambda: _header((-3, 1, 4)), "has a negative size"),
        (lambda: _header((10**12, 1, 4)) + b"\0" * 32, r"only 32 bytes follow it \(a truncated file\)"),
        (lambda: _npy(np.zeros((5, 1, 4), np.float32))[:-8], "a truncated file"),
    ],
)
def test_r05_empty_negative_and_truncated_npy_refused_before_the_run(tmp_path: Path, content, message: str) -> None:  # type: ignore[no-untyped-def]
    """R05: an empty (0, ...) array or a header with a negative count crashed after the pipeline started."""
    path = tmp_path / "in.npy"
    path.write_bytes(content())
    with pytest.raises(TpuplanError, match=message) as info:
        open_inputs(path, [VEC])  # refused here, before any item is read
    _message(info, path)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _patched_npz(tmp_path: Path, local: tuple[int, bytes], central: tuple[int, bytes]) -> Path:
    """A good .npz with bytes of its member's local header and central directory entry replaced."""
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((2, 1, 4), np.float32))
    data = bytearray(good.read_bytes())
    for sig, (offset, value) in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        at = bytes(data).find(sig) + offset
        data[at : at + len(value)] = value
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(data))
    return bad


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (((6, b"\x01"), (8, b"\x01")), "member 'x.npy' is encrypted"),
        (((8, struct.pack("<H", 9)), (10, struct.pack("<H", 9))), "uses compression method 9"),
    ],
)
def test_r07_encrypted_and_method_9_npz_are_one_line(tmp_path: Path, patch, message: str) -> None:  # type: ignore[no-untyped-def]
    """R07: an encrypted member or compression method 9 raised RuntimeError / NotImplementedError."""
    bad = _patched_npz(tmp_path, *patch)
    with pytest.raises(TpuplanError, match=message) as info:
        open_inputs(bad, [VEC])
    assert "not a readable .npz" in _message(info, bad)


def test_r07_duplicate_member_and_bad_crc_are_one_line(tmp_path: Path) -> None:
    """R07 (same class): an .npz that stores one array twice, or whose data fails its CRC mid-read."""
    twice = tmp_path / "twice.npz"
    with zipfile.ZipFile(twice, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name: that is the point
        for _ in range(2):
            zf.writestr("x.npy", _npy(np.zeros((1, 1, 4), np.float32)))
    with pytest.raises(TpuplanError, match="stored twice"):
        open_inputs(twice, [VEC])
    good = tmp_path / "crc.npz"
    np.savez(good, x=np.arange(8, dtype=np.float32).reshape(2, 1, 4))
    data = bytearray(good.read_bytes())
    data[bytes(data).find(b"PK\x01\x02") - 10] ^= 0xFF  # a byte of the stored data: its CRC fails
    good.write_bytes(bytes(data))
    with pytest.raises(TpuplanError, match="Bad CRC-32") as info:
        list(open_inputs(good, [VEC]))
    _message(info, good)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_r30_fifo_or_device_as_input_is_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    """R30: `--input f.npy` on a FIFO blocked in open() until killed."""
    if kind == "fifo":
        path = tmp_path / "f.npy"
        os.mkfifo(path)
    else:
        path = tmp_path / "zero.npz"
        path.symlink_to("/dev/zero")
    done: list[BaseException] = []

    def read() -> None:
        try:
            open_inputs(path, [VEC])
        except TpuplanError as exc:
            done.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the open() so the test process can end
        with open(path, "wb"):
            pass
    assert done and "is not a regular file" in str(done[0]), done


def test_r21_nan_in_a_float_model_input_is_refused_by_index(tmp_path: Path) -> None:
    """R21: NaN and infinities fed silently (for a float input they went through as they were)."""
    data = np.zeros((2, 1, 4), np.float32)
    data[1, 0, 3] = np.nan
    np.save(tmp_path / "nan.npy", data)
    items = iter(open_inputs(tmp_path / "nan.npy", [VEC]))
    next(items)
    with pytest.raises(TpuplanError, match=r"input #1: holds NaN at index \[0, 3\]"):
        next(items)


@pytest.mark.parametrize(("mode", "what"), [("I;16", "16-bit"), ("F", "floating-point"), ("I", "32-bit integer")])
def test_r22_images_that_are_not_8_bit_are_refused_before_the_run(tmp_path: Path, mode: str, what: str) -> None:
    """R22: a 16-bit PNG was fed as a white image (Pillow clips it to 8 bits), a float TIFF as 0..3."""
    image = importlib.import_module("PIL.Image")
    frames = tmp_path / "frames"
    frames.mkdir()
    image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(frames / "0.png")  # a good one first
    values = {"I;16": np.full((8, 6), 40000, np.uint16), "F": np.full((8, 6), 0.5, np.float32)}
    bad = image.fromarray(values.get(mode, np.full((8, 6), 7, np.int32)))
    bad.save(frames / "1.png", format="PNG" if mode == "I;16" else "TIFF")  # a TIFF under a .png name
    with pytest.raises(TpuplanError, match=f"a {what} image") as info:
        open_inputs(frames, [IMG])  # every header is read before the run starts
    assert "only 8-bit images are read" in _message(info, frames / "1.png")


def test_r22_a_broken_image_after_good_ones_is_refused_before_the_run(tmp_path: Path) -> None:
    """R22/R35: a bad image after 30 good ones used to fail mid-run, after the bar had drawn 0/31."""
    image = importlib.import_module("PIL.Image")
    for i in range(30):
        image.fromarray(np.zeros((8, 6, 3), np.uint8)).save(tmp_path / f"{i:02d}.png")
    (tmp_path / "99.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(TpuplanError, match="cannot read the image") as info:
        open_inputs(tmp_path, [IMG])
    _message(info, tmp_path / "99.png")


@pytest.fixture(scope="module")
def cpu_split(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A float-input model, its CPU plan and its split."""
    root = tmp_path_factory.mktemp("r3inputs")
    model = root / "fc.tflite"
    model.write_bytes(synth_fc(64, depth=3))
    loaded = parse_model(model.read_bytes(), model)
    profile = build_profile(loaded, preset("cpu"))
    cplan = evaluate(profile, None, [len(profile.ops) // 2])  # priced, no solver: runs on a device install too
    write_doc(root / "cplan.json", cplan)
    write_split(loaded, root / "segs", plan=cplan)
    return model, root / "cplan.json", root / "segs"


def test_r05_r06_run_and_verify_refuse_an_empty_input_in_one_line(cpu_split: tuple[Path, Path, Path]) -> None:
    """R05/R06: `plan run` crashed in RunResult, `plan verify` with ZeroDivisionError."""
    model, cplan, segs = cpu_split
    empty = segs.parent / "empty.npy"
    np.save(empty, np.zeros((0, 1, 64), np.float32))
    one_line_error(plan("run", segs, "-i", empty), "empty.npy: holds no inputs")
    one_line_error(plan("verify", cplan, "--model", model, "-i", empty), "empty.npy: holds no inputs")


def test_r27_verify_n_larger_than_the_input_is_refused_as_run_does(cpu_split: tuple[Path, Path, Path]) -> None:
    """R27: `plan verify -n 10` on a file of 5 verified 5 without a word; `plan run` refused it."""
    model, cplan, segs = cpu_split
    five = segs.parent / "five.npy"
    np.save(five, np.random.default_rng(0).standard_normal((5, 1, 64)).astype(np.float32))
    text = "five.npy: holds 5 inputs, but 10 were asked for"
    one_line_error(plan("run", segs, "-i", five, "-n", "10"), text)
    one_line_error(plan("verify", cplan, "--model", model, "-i", five, "-n", "10"), text)
    res = plan("verify", cplan, "--model", model, "-i", five, "--json")  # no -n: all 5 of a short file
    assert res.returncode == 0 and '"inputs": 5' in res.stdout, res.stderr


def test_r21_run_names_the_file_and_input_of_an_infinity(cpu_split: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, _, segs = cpu_split
    data = np.zeros((3, 1, 64), np.float32)
    data[2, 0, 7] = -np.inf
    np.save(tmp_path / "inf.npy", data)
    out = tmp_path / "out.npz"
    one_line_error(plan("run", segs, "-i", tmp_path / "inf.npy", "-o", out), "inf.npy: input #2: holds a negative")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tpuplan-")]


def test_r30_run_refuses_a_fifo_input_at_once(cpu_split: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, _, segs = cpu_split
    fifo = tmp_path / "f.npz"
    os.mkfifo(fifo)
    started = time.monotonic()
    one_line_error(plan("run", segs, "-i", fifo), "is not a regular file")
    assert time.monotonic() - started < 30


def test_r22_run_refuses_a_16_bit_image_directory(tmp_path: Path) -> None:
    image = importlib.import_module("PIL.Image")
    model = tmp_path / "conv.tflite"
    model.write_bytes(synth_conv(8, 2, 16, 3))
    write_split(parse_model(model.read_bytes(), model), tmp_path / "segs", cuts=[1])
    frames = tmp_path / "img16"
    frames.mkdir()
    image.fromarray(np.full((20, 20), 40000, np.uint16)).save(frames / "a.png")
    one_line_error(plan("run", tmp_path / "segs", "-i", frames), "a.png: a 16-bit image (Pillow mode I;16)")
