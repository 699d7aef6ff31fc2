"""Every command that writes, against every kind of output target (issue 13, "data loss").

The rule (tpuplan/cli/outputs.py): never an input of the same command, never a non-regular file (a
device, a directory, a symbolic link to anything), an existing file only with --force, a name the file
system can hold, checked before any long work; written whole or not at all, with normal permissions,
and a full disk or a read-only file system ends in one line and leaves nothing behind. Refused targets
are tried WITH --force: it must never be what lets a target through. `plan split` writes a directory
and has its own matrix at the end.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Union

import pytest

from tests.cli_helpers import Inputs, fill, make_inputs, one_line_error, plan, tmpfs, umask

Argv = Callable[[Inputs, Path], list[Union[str, Path]]]

# command -> (its arguments writing to OUT, the input an output could wrongly replace)
WRITERS: dict[str, tuple[Argv, Callable[[Inputs], Path] | None]] = {
    "profile": (lambda i, o: ["profile", i.model, "-o", o], lambda i: i.model),
    "inspect": (lambda i, o: ["inspect", i.profile, "-o", o], lambda i: i.profile),
    "solve": (lambda i, o: ["solve", i.profile, "--tpus", "2", "-o", o], lambda i: i.profile),
    "compare": (lambda i, o: ["compare", i.model, "--tpus", "2", "-o", o], lambda i: i.model),
    "schema": (lambda i, o: ["schema", "plan", "-o", o], None),
    "devices": (lambda i, o: ["devices", "-o", o], None),
    "synth": (lambda i, o: ["synth", "fc", "--width", "16", "-o", o], None),
    "calibrate": (lambda i, o: ["calibrate", i.csv, "-o", o], lambda i: i.csv),
    "show --png": (lambda i, o: ["show", i.plan, "--png", o], lambda i: i.plan),
    # an Edge TPU plan measured on the CPU: --outputs-only, or the run exits 4 (nothing compared)
    "verify -o": (
        lambda i, o: ["verify", i.plan, "-m", i.model, "-n", "2", "--outputs-only", "-o", o],
        lambda i: i.plan,
    ),
    "verify --png": (
        lambda i, o: ["verify", i.plan, "-m", i.model, "-n", "2", "--outputs-only", "--png", o],
        lambda i: i.model,
    ),
}
ONE_RUN = {"verify --png"}  # seconds per run, same writer as verify -o: refusals and one real write only


def _symlink(tmp: Path, name: str, to: Path) -> Path:
    link = tmp / name
    link.symlink_to(to)
    return link


def _directory(tmp: Path) -> Path:
    (tmp / "adir").mkdir()
    return tmp / "adir"


REFUSED: dict[str, tuple[Callable[[Path], Path], str]] = {
    "a directory": (_directory, "is a directory"),
    "/dev/null": (lambda tmp: Path("/dev/null"), "is a device"),
    "a symlink to /dev/full": (lambda tmp: _symlink(tmp, "full", Path("/dev/full")), "is a symbolic link"),
    "a symlink to a file": (lambda tmp: _symlink(tmp, "link.json", tmp / "kept.txt"), "is a symbolic link"),
    "a dangling symlink": (lambda tmp: _symlink(tmp, "dangling.json", tmp / "nowhere"), "is a symbolic link"),
    "a missing directory": (lambda tmp: tmp / "missing" / "out.json", "does not exist"),
    "a 256-byte name": (lambda tmp: tmp / ("n" * 251 + ".json"), "longer than"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("outputs"))


@pytest.fixture(scope="module")
def read_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    with tmpfs(tmp_path_factory.mktemp("ro") / "mnt", "ro") as mount:
        yield mount


def _digests(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir() if p.is_file()}


def _run(name: str, inputs: Inputs, out: Path, *extra: str) -> object:
    argv, _ = WRITERS[name]
    return plan(*argv(inputs, out), *extra)


@pytest.mark.parametrize("target", list(REFUSED))
@pytest.mark.parametrize("name", list(WRITERS))
def test_refused_targets_even_with_force(name: str, target: str, inputs: Inputs, tmp_path: Path) -> None:
    (tmp_path / "kept.txt").write_text("keep me")
    make, text = REFUSED[target]
    out = make(tmp_path)
    before = _digests(inputs.root)
    one_line_error(_run(name, inputs, out, "--force"), text)
    assert (tmp_path / "kept.txt").read_text() == "keep me" and _digests(inputs.root) == before
    assert Path("/dev/full").is_char_device() and Path("/dev/null").is_char_device()


@pytest.mark.parametrize("name", list(WRITERS))
def test_the_input_itself_is_refused_even_with_force(name: str, inputs: Inputs) -> None:
    own = WRITERS[name][1]
    if own is None:
        pytest.skip(f"plan {name} reads no file")
    before = _digests(inputs.root)
    one_line_error(_run(name, inputs, own(inputs), "--force"), "is an input of this command")
    assert _digests(inputs.root) == before


@pytest.mark.parametrize("name", list(WRITERS))
def test_existing_file_needs_force_and_keeps_its_mode(name: str, inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "existing.out"
    out.write_text("old")
    os.chmod(out, 0o640)
    one_line_error(_run(name, inputs, out), "already exists (use --force to overwrite)")
    assert out.read_text() == "old"
    if name in ONE_RUN:
        return
    res = _run(name, inputs, out, "--force")
    assert res.returncode == 0, res.stderr  # type: ignore[attr-defined]
    assert out.read_bytes() != b"old" and stat.S_IMODE(out.stat().st_mode) == 0o640


@pytest.mark.parametrize("name", list(WRITERS))
def test_a_250_byte_name_is_written_with_normal_permissions(name: str, inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / ("n" * 245 + ".json")
    res = _run(name, inputs, out)
    assert res.returncode == 0, res.stderr  # type: ignore[attr-defined]
    assert out.stat().st_size > 0 and stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask()
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary file left


@pytest.mark.parametrize("name", list(WRITERS))
def test_read_only_file_system_is_refused_first(name: str, inputs: Inputs, read_only: Path | None) -> None:
    if read_only is None:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    one_line_error(_run(name, inputs, read_only / "out.json", "--force"), "read-only file system")


@pytest.mark.parametrize("name", [n for n in WRITERS if n not in ONE_RUN])
def test_full_disk_is_one_line_and_leaves_nothing(name: str, inputs: Inputs, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full") as mount:
        if mount is None:
            pytest.skip("cannot mount a small tmpfs here (needs root)")
        fill(mount)
        one_line_error(_run(name, inputs, mount / "out.json"), "No space left on device")
        assert sorted(p.name for p in mount.iterdir()) == ["filler"]


# --- plan split: a directory ------------------------------------------------------------------------


def _split(inputs: Inputs, out: Path, *extra: str) -> object:
    return plan("split", inputs.model, inputs.plan, "-o", out, *extra)


def test_split_force_replaces_only_an_earlier_split(inputs: Inputs, tmp_path: Path) -> None:
    mine = tmp_path / "mydata"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    one_line_error(_split(inputs, mine, "--force"), "is not an earlier split (no manifest.json)")
    assert (mine / "thesis.txt").read_text() == "years of work"
    afile = tmp_path / "somefile"
    afile.write_text("data")
    one_line_error(_split(inputs, afile, "--force"), "exists and is not a directory")
    assert afile.read_text() == "data"
    segs = tmp_path / "segs"
    assert _split(inputs, segs).returncode == 0  # type: ignore[attr-defined]
    one_line_error(_split(inputs, segs), "already exists and is not empty")
    assert _split(inputs, segs, "--force").returncode == 0  # type: ignore[attr-defined]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydata", "segs", "somefile"]  # no staging left


@pytest.mark.parametrize(
    ("target", "text"),
    [
        ("input dir", "is an input of this command"),
        ("symlink", "is a symbolic link"),
        ("256-byte name", "longer than"),
        ("/dev/null", "exists and is not a directory"),
    ],
)
def test_split_refuses_bad_directories(inputs: Inputs, tmp_path: Path, target: str, text: str) -> None:
    (tmp_path / "real").mkdir()
    out = {
        "input dir": inputs.root,
        "symlink": _symlink(tmp_path, "link", tmp_path / "real"),
        "256-byte name": tmp_path / ("d" * 256),
        "/dev/null": Path("/dev/null"),
    }[target]
    before = _digests(inputs.root)
    one_line_error(_split(inputs, out, "--force"), text)
    assert _digests(inputs.root) == before


def test_split_long_name_read_only_and_full_disk(inputs: Inputs, tmp_path: Path, read_only: Path | None) -> None:
    long = tmp_path / ("d" * 250)
    assert _split(inputs, long).returncode == 0  # type: ignore[attr-defined]
    assert (long / "manifest.json").is_file() and sorted(p.name for p in tmp_path.iterdir()) == [long.name]
    if read_only is None:
        pytest.skip("cannot mount tmpfs here (needs root)")
    one_line_error(_split(inputs, read_only / "segs"), "read-only file system")
    with tmpfs(tmp_path / "full") as mount:
        assert mount is not None
        fill(mount)
        one_line_error(_split(inputs, mount / "segs"), "No space left on device")
        assert sorted(p.name for p in mount.iterdir()) == ["filler"]
