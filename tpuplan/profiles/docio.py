"""Versioned JSON documents: atomic writes and strict, one-line-error reads."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tpuplan.profiles.errors import TpuplanError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every document and every part of one: documents come from other people and other tools,
    so an unknown field (a typo, a newer writer) and a non-finite float (NaN is not JSON) are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def write_atomic(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write `data` whole or not at all: a temporary file in the same directory, then rename.

    The temporary name is short whatever the output's name (a 250-byte name must still work), and the
    file gets the permissions of any new file (0666 less the umask), or those of the file it replaces.
    Any failure (a full disk, a read-only file system) removes the temporary file and becomes one line.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise TpuplanError(f"{path}: already exists")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TpuplanError(f"{path}: directory {parent} does not exist")
    tmp = parent / f".tpuplan-{secrets.token_hex(6)}.tmp"
    try:
        keep = stat.S_IMODE(path.stat().st_mode) if path.is_file() and not path.is_symlink() else None
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                if keep is not None:
                    os.fchmod(fh.fileno(), keep)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise TpuplanError(f"{path}: cannot write ({exc.strerror or exc})") from None


def dump_json(doc: BaseModel) -> str:
    """Canonical JSON text of a document: same input, byte-identical output."""
    return json.dumps(doc.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


def write_doc(path: Path, doc: BaseModel, *, overwrite: bool = True) -> None:
    write_atomic(Path(path), dump_json(doc).encode(), overwrite=overwrite)


def read_bytes(path: Path, *, what: str = "file", max_bytes: int = 2**31) -> bytes:
    """Read an input file, turning OS errors into a one-line TpuplanError.

    Only a regular file is read: it is opened without blocking and checked before any read, so a FIFO
    cannot hang us and a device such as /dev/zero cannot feed us without end; at most `max_bytes` are read.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TpuplanError(f"{path}: no such file") from None
    except PermissionError:
        raise TpuplanError(f"{path}: permission denied") from None
    except OSError as exc:
        raise TpuplanError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        try:
            info = os.fstat(fh.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise TpuplanError(f"{path}: is a directory, expected a {what}")
            if not stat.S_ISREG(info.st_mode):
                raise TpuplanError(f"{path}: is not a regular file (a device, FIFO or socket), expected a {what}")
            if info.st_size > max_bytes:
                raise TpuplanError(f"{path}: {info.st_size} bytes is too large for a {what}")
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise TpuplanError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise TpuplanError(f"{path}: more than {max_bytes} bytes is too large for a {what}")
    return data


def load_doc(path: Path, model: type[M], *, kind: str, version: int) -> M:
    """Load a versioned document of `kind`; refuse other kinds and future versions by name."""
    raw = read_bytes(path, what=f"{kind} JSON document", max_bytes=1 << 30)
    return parse_doc(raw, model, kind=kind, version=version, source=str(path))


def parse_doc(raw: bytes, model: type[M], *, kind: str, version: int, source: str) -> M:
    try:
        obj = json.loads(raw, parse_int=_parse_int)
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:  # ValueError: a 5,000-digit integer too
        raise TpuplanError(f"{source}: not a JSON document ({_first_line(str(exc))})") from None
    if not isinstance(obj, dict):
        raise TpuplanError(f"{source}: expected a JSON object for a {kind} document")
    got_kind = obj.get("kind")
    if got_kind != kind:
        raise TpuplanError(f"{source}: not a {kind} document (kind is {got_kind!r})")
    got_version = obj.get("schema_version")
    if not isinstance(got_version, int) or isinstance(got_version, bool):
        raise TpuplanError(f"{source}: {kind} document has no integer schema_version")
    if got_version > version:
        raise TpuplanError(
            f"{source}: {kind} schema_version {got_version} is newer than this tpuplan supports "
            f"({version}); upgrade tpuplan"
        )
    if got_version < version:
        raise TpuplanError(
            f"{source}: {kind} schema_version {got_version} is older than {version} and cannot be "
            f"migrated; regenerate it"
        )
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise TpuplanError(f"{source}: invalid {kind} document at {validation_message(exc)}") from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise TpuplanError(f"{source}: invalid {kind} document ({_first_line(str(exc))})") from None


def validation_message(exc: ValidationError) -> str:
    """'field.path: what is wrong' of a validation error's first problem, on one line."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
    got = err.get("input")
    msg = f"a number of {got.digits:,} digits is out of range" if isinstance(got, _HugeInt) else err.get("msg")
    return f"{loc}: {_first_line(str(msg))}"


class _HugeInt(float):
    """An integer literal longer than any bounded field allows: read as infinity, which every field refuses,
    and reported by its number of digits (Python would refuse to read 4,300 digits or more at all)."""

    digits: int


_MAX_INT_DIGITS = 30  # every integer field's bound has fewer digits (limits.MAX_OBJECTIVE: 16)


def _parse_int(text: str) -> int | float:
    digits = len(text.lstrip("-"))
    if digits <= _MAX_INT_DIGITS:
        return int(text)
    huge = _HugeInt("-inf" if text.startswith("-") else "inf")
    huge.digits = digits
    return huge


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
