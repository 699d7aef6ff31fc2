"""Real inputs (.npy, .npz, image directories) read lazily, bad ones refused in one line naming the file,
and outputs streamed to an .npz that appears whole or not at all."""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.tensors.inputs import RANDOM_POOL, InputSpec, load_image, open_inputs, quantise
from tpuplan.runtime.tensors.outputs import NpzWriter

IMG = InputSpec("image", (1, 8, 6, 3), np.dtype(np.uint8), 1 / 128, 128)
VEC = InputSpec("x", (1, 4), np.dtype(np.float32))
Q8 = InputSpec("q", (1, 4), np.dtype(np.int8), 0.5, -3)


def _one_line(exc: pytest.ExceptionInfo[TpuplanError], where: Path | str) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.startswith(str(where)), text
    return text


def test_npy_shapes_stream_one_item_at_a_time(tmp_path: Path) -> None:
    data = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    for shape in [(5, 4), (5, 1, 4)]:
        np.save(tmp_path / "a.npy", data.reshape(shape))
        source = open_inputs(tmp_path / "a.npy", [VEC])
        assert source.count == 5 and source.description == str(tmp_path / "a.npy")
        got = [item["x"] for item in source]
        assert all(g.shape == (1, 4) for g in got) and np.array_equal(np.concatenate(got), data)
    np.save(tmp_path / "one.npy", data[:1])
    assert open_inputs(tmp_path / "one.npy", [VEC]).count == 1
    assert len(list(open_inputs(tmp_path / "a.npy", [VEC], count=2))) == 2
    with pytest.raises(TpuplanError, match="holds 5 inputs, but 9 were asked for") as info:
        open_inputs(tmp_path / "a.npy", [VEC], count=9)
    _one_line(info, tmp_path / "a.npy")


def test_random_inputs_are_a_bounded_pool() -> None:
    source = open_inputs(None, [VEC], count=30_000)
    items = iter(source)
    first = [next(items) for _ in range(RANDOM_POOL + 1)]
    assert first[RANDOM_POOL] is first[0] and first[1] is not first[0]
    assert source.count == 30_000 and "random" in source.description


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 5), np.float32), r"shape \[3, 5\] does not fit input 'x' of shape \[1, 4\]"),
        (np.zeros((3, 4), np.int32), "dtype int32 does not fit input 'x' of dtype float32"),
        (np.array([None, 1], dtype=object), "holds Python objects; refused"),
    ],
)
def test_bad_npy_is_refused_naming_the_file(tmp_path: Path, array: Any, message: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=False) if array.dtype != object else _raw_object_npy(path)
    with pytest.raises(TpuplanError, match=message) as info:
        list(open_inputs(path, [VEC]))
    _one_line(info, path)


def _raw_object_npy(path: Path) -> None:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": (2,)})
        fh.write(b"\0" * 16)


def test_truncated_npy_and_a_junk_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((10, 4), np.float32))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(TpuplanError, match="a truncated file") as info:
        open_inputs(path, [VEC])  # refused before any input is read (R05)
    _one_line(info, path)
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(TpuplanError, match=r"not a readable \.npy"):
        open_inputs(tmp_path / "junk.npy", [VEC])
    (tmp_path / "x.csv").write_text("1")
    with pytest.raises(TpuplanError, match=r"expected a \.npy, a \.npz or a directory"):
        open_inputs(tmp_path / "x.csv", [VEC])


def test_npz_by_name_and_its_mistakes(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    q = np.arange(12, dtype=np.int8).reshape(3, 1, 4)
    np.savez_compressed(tmp_path / "in.npz", x=x, q=q)
    items = list(open_inputs(tmp_path / "in.npz", [VEC, Q8]))
    assert len(items) == 3 and np.array_equal(items[2]["q"], q[2]) and np.array_equal(items[1]["x"], x[1:2])
    for bad, message in [
        ({"x": x}, r"missing \['q'\]"),
        ({"x": x, "q": q, "z": x}, r"unexpected \['z'\]"),
        ({"x": x, "q": q[:2]}, "different numbers of inputs"),
    ]:
        np.savez(tmp_path / "bad.npz", **bad)  # type: ignore[arg-type]
        with pytest.raises(TpuplanError, match=message) as info:
            open_inputs(tmp_path / "bad.npz", [VEC, Q8])
        _one_line(info, tmp_path / "bad.npz")
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(TpuplanError, match=r"the model has 2 inputs \(x, q\): give a .npz"):
        open_inputs(tmp_path / "x.npy", [VEC, Q8])


def test_float_data_is_quantised_with_the_inputs_scale_and_zero_point(tmp_path: Path) -> None:
    real = np.array([[-62.5, -1.5, 0.0, 65.2]], np.float32)  # the ends: at most one step past the range
    assert quantise(real, Q8, "here").tolist() == [[-128, -6, -3, 127]]  # round(r / 0.5 - 3), clipped
    np.save(tmp_path / "real.npy", real)
    assert next(iter(open_inputs(tmp_path / "real.npy", [Q8])))["q"].tolist() == [[-128, -6, -3, 127]]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e30, -100.0])
def test_r21_nan_infinite_and_out_of_range_values_are_refused_by_file_and_index(tmp_path: Path, bad: float) -> None:
    """R21: NaN was quantised to 0 (real -1.0) and infinities or 1e30 clipped, without a word."""
    real = np.zeros((3, 1, 4), np.float32)
    real[2, 0, 1] = bad
    path = tmp_path / "real.npy"
    np.save(path, real)
    source = iter(open_inputs(path, [InputSpec("q", (1, 4), np.dtype(np.int8), 0.5, -3)]))
    assert next(source)["q"].tolist() == [[-3, -3, -3, -3]]
    next(source)
    with pytest.raises(TpuplanError, match=r"input #2: .*at index \[0, 1\]") as info:
        next(source)
    _one_line(info, path)
    assert ("NaN" if bad != bad else "infinity" if abs(bad) == float("inf") else "outside") in str(info.value)


def test_images_are_resized_and_quantised(tmp_path: Path) -> None:
    image = importlib.import_module("PIL.Image")
    rng = np.random.default_rng(1)
    frames = tmp_path / "frames"
    frames.mkdir()
    for name, size in [("b.png", (30, 20)), ("a.jpg", (6, 8)), ("c.PNG", (61, 47))]:
        image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(frames / name)
    (frames / "notes.txt").write_text("not an image")
    source = open_inputs(frames, [IMG])
    items = list(source)
    assert source.count == 3 and all(i["image"].shape == (1, 8, 6, 3) and i["image"].dtype == np.uint8 for i in items)
    # scale 1/128, zero point 128: the quantised pixel is the pixel itself
    exact = np.asarray(image.open(frames / "a.jpg").convert("RGB"))
    assert np.array_equal(items[0]["image"][0], exact)  # sorted by name: a.jpg first, already 6 x 8
    shifted = InputSpec("image", (1, 8, 6, 3), np.dtype(np.int8), 1 / 128, 0)
    assert np.array_equal(load_image(frames / "a.jpg", shifted)[0].astype(int), exact.astype(int) - 128)


def test_bad_images_and_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    with pytest.raises(TpuplanError, match="holds no PNG or JPEG images"):
        open_inputs(frames, [IMG])
    (frames / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(TpuplanError, match="cannot read the image") as info:
        list(open_inputs(frames, [IMG]))
    _one_line(info, frames / "broken.png")
    with pytest.raises(TpuplanError, match=r"images need a model input of shape \[1, H, W, 1 or 3\]"):
        open_inputs(frames, [VEC])
    real_import = importlib.import_module

    def no_pillow(name: str) -> Any:
        if name == "PIL.Image":
            raise ImportError(name)
        return real_import(name)

    monkeypatch.setattr(importlib, "import_module", no_pillow)
    with pytest.raises(TpuplanError, match=r"needs Pillow: pip install 'tpuplan\[images\]'"):
        open_inputs(frames, [IMG])


def test_npz_writer_stacks_rows_in_order_and_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "out.npz"
    writer = NpzWriter(out, ["y", "name/with:odd"])
    for i in range(5):
        writer.add({"y": np.full((1, 3), i, np.int8), "name/with:odd": np.array([i * 1.5], np.float32)})
        assert not out.exists()
    writer.commit()
    saved = np.load(out)
    assert saved["y"].shape == (5, 1, 3) and saved["y"][:, 0, 0].tolist() == list(range(5))
    assert saved["name/with:odd"][:, 0].tolist() == [0.0, 1.5, 3.0, 4.5, 6.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]  # no staging files left
    dropped = NpzWriter(tmp_path / "never.npz", ["y"])
    dropped.add({"y": np.zeros(2)})
    dropped.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]
    assert zipfile.is_zipfile(out)
