"""The one rule for every output a command writes, checked before any long work starts.

An output is never one of the command's inputs nor inside a directory the command reads, never a
non-regular file (a device, a FIFO, a directory, a symbolic link to anything), replaces an existing file
only with --force, and must be a name the file system can hold in a directory we can write. A split's
output directory may be replaced, with --force, only when it holds an earlier split (our manifest.json).
Writing itself is `profiles.docio.write_atomic`: whole or not at all, and without --force a file that
appears while the command runs is kept, not replaced. `-` is standard output (binary data not on a
terminal). A document is checked by the reader that will load it before it is written (`checked_json`).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tpuplan.profiles.errors import TpuplanError, UsageError

if TYPE_CHECKING:  # the library is imported where it is used: see tpuplan/cli/__init__.py
    from pydantic import BaseModel

_NAME_MAX = 255  # when the file system does not say


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def is_stdout(path: Path | str | None) -> bool:
    """`-o -`: the output is standard output."""
    return path is not None and str(path) == "-"


def _check_inputs(path: Path, inputs: Sequence[Path], directory: bool) -> None:
    target = path.resolve()
    for given in inputs:
        if is_stdout(given):
            continue
        source = given.resolve()
        if _same_file(path, given) or (directory and source.is_relative_to(target)):
            raise TpuplanError(f"{path}: is an input of this command; choose another output")
        if source.is_dir() and target.is_relative_to(source):
            raise TpuplanError(
                f"{path}: is inside {given}, a directory this command reads; choose an output outside it"
            )


def _existing_ancestor(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _check_place(path: Path, parent: Path) -> None:
    """The name fits the file system and the directory that will hold it (or its staging sibling) is
    writable: refused now rather than after minutes of work."""
    try:
        name_max = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = _NAME_MAX
    if len(os.fsencode(path.name)) > name_max:
        raise TpuplanError(f"{path}: the file name is longer than the {name_max} bytes this file system allows")
    if not os.access(parent, os.W_OK | os.X_OK):
        why = "a read-only file system" if _read_only(parent) else "no write permission"
        raise TpuplanError(f"{path}: cannot write in {parent} ({why})")


def _read_only(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"


def _check_file(path: Path, force: bool) -> None:
    if path.is_symlink():
        raise TpuplanError(f"{path}: is a symbolic link; not written through (give the file itself)")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise TpuplanError(f"{path}: cannot check the output ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise TpuplanError(f"{path}: is {_kind(mode)}; choose a file name")
    if not force:
        raise TpuplanError(f"{path}: already exists (use --force to overwrite)")


def _check_directory(path: Path, force: bool) -> None:
    """An output directory: missing, empty, or with --force an earlier split."""
    from tpuplan.runtime.split.manifest import MANIFEST_NAME

    if path.is_symlink():
        raise TpuplanError(f"{path}: is a symbolic link; not replaced (give the directory itself)")
    if not path.exists():
        return
    if not path.is_dir():
        raise TpuplanError(f"{path}: exists and is not a directory; not replaced")
    if not any(path.iterdir()):
        return
    if not force:
        raise TpuplanError(f"{path}: already exists and is not empty (use --force to replace an earlier split)")
    manifest = path / MANIFEST_NAME
    if manifest.is_symlink() or not manifest.is_file():
        raise TpuplanError(f"{path}: is not an earlier split (no {MANIFEST_NAME}); not replaced")


def check_output(
    path: Path, *, force: bool, inputs: Sequence[Path] = (), directory: bool = False, binary: bool = False
) -> None:
    """The rule for every command that writes, checked before any long work starts (module docstring)."""
    path = Path(path)
    if is_stdout(path):
        if directory:
            raise UsageError("-o -: this output is a directory of files; standard output cannot hold it")
        if binary and sys.stdout.isatty():
            raise UsageError("-o -: refusing to write binary data to a terminal (redirect it, or name a file)")
        return
    _check_inputs(path, inputs, directory)
    if directory:
        _check_place(path, _existing_ancestor(path))
        _check_directory(path, force)
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TpuplanError(f"{path}: directory {parent} does not exist")
    _check_place(path, parent)
    _check_file(path, force)


def check_outputs(
    paths: Sequence[Path | None], *, force: bool, inputs: Sequence[Path] = (), binary: Sequence[Path] = ()
) -> None:
    """`check_output` for each output given (None: not asked for); two outputs may not be one file."""
    given = [p for p in paths if p is not None]
    for k, path in enumerate(given):
        if any(_same_file(path, other) or path == other for other in given[:k]):
            raise UsageError(f"{path}: is named for two outputs; give each its own file")
        check_output(path, force=force, inputs=inputs, binary=path in binary)


def write_output(path: Path, data: bytes, *, force: bool) -> None:
    """Write an output checked by `check_output`: whole or not at all; an existing file only with `force`,
    even one that appeared after the check. `-` writes to standard output."""
    if is_stdout(path):
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:  # a text stream standing in for standard output (a caller's redirect)
            sys.stdout.write(data.decode("utf-8", "surrogateescape"))
            return
        sys.stdout.flush()
        buffer.write(data)
        buffer.flush()
        return
    from tpuplan.profiles.docio import write_atomic

    write_atomic(path, data, overwrite=force)


def document_text(doc: BaseModel, path: Path | None) -> str:
    """The JSON of a document about to be written or printed, checked by the reader that will load it:
    tpuplan never writes what it would itself refuse (a fitted number past a bound, a name too long)."""
    from tpuplan.profiles.docio import checked_json

    return checked_json(doc, str(path) if path is not None and not is_stdout(path) else "standard output")


def spec_files(*specs: str | None) -> list[Path]:
    """The files among device/host arguments (a preset name is not a file): inputs an output must spare."""
    return [Path(s) for s in specs if s and (s.endswith(".json") or "/" in s or Path(s).is_file())]
