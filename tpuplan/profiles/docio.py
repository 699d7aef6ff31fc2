"""Versioned JSON documents: atomic writes and strict, one-line-error reads."""

from __future__ import annotations

import contextlib
import errno
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
    """Write `data` whole or not at all: a temporary file in the same directory, then `publish`.

    The temporary name is short whatever the output's name (a 250-byte name must still work), and the
    file gets the permissions of any new file (0666 less the umask), or those of the file it replaces.
    Any failure (a full disk, a read-only file system) removes the temporary file and becomes one line.
    Without `overwrite`, a file at `path` is never replaced, even one that appears while we write.
    """
    path = Path(path)
    if not overwrite and os.path.lexists(path):
        raise appeared(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TpuplanError(f"{path}: directory {parent} does not exist")
    tmp = temporary_sibling(path, "tmp")
    try:
        keep = stat.S_IMODE(path.stat().st_mode) if overwrite and path.is_file() and not path.is_symlink() else None
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                if keep is not None:
                    os.fchmod(fh.fileno(), keep)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            publish(tmp, path, overwrite=overwrite)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise TpuplanError(f"{path}: cannot write ({exc.strerror or exc})") from None


def temporary_sibling(path: Path, suffix: str) -> Path:
    """A short, unused-looking name beside `path` for a file or directory that becomes `path` (or is
    dropped): short whatever `path`'s own name, so a 255-byte output name still has room for it."""
    parent = path.parent if str(path.parent) else Path(".")
    return parent / f".tpuplan-{secrets.token_hex(6)}.{suffix}"


def publish(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Move the finished file `tmp` to `path`. With `overwrite`, an atomic rename; without, a hard link
    that fails if `path` exists (no check-then-rename race: a file that appeared meanwhile is kept),
    then `tmp` is removed. Where hard links are not supported, `path` is first created exclusively
    (empty) and the rename then replaces only that placeholder of ours."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        raise appeared(path) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        _publish_by_placeholder(tmp, path)
        return
    os.unlink(tmp)


def appeared(path: Path) -> TpuplanError:
    """An output that exists now, though it did not when the command checked it: kept, not replaced."""
    return TpuplanError(f"{path}: already exists (it appeared while this command ran; use --force to overwrite)")


def _publish_by_placeholder(tmp: Path, path: Path) -> None:
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    except FileExistsError:
        raise appeared(path) from None
    os.replace(tmp, path)


def path_text(path: Path | str) -> str:
    """A file name as text a document can hold: names that are not UTF-8 (legal on POSIX) keep their
    bytes as backslash escapes instead of making the document invalid."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


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


def load_json(raw: bytes) -> object:
    """JSON text as Python objects, stricter than `json.loads`: a key given twice in one object is refused
    (which of the two would count is a guess), and an integer of more digits than any bound is read as
    an infinity that remembers its digits (`_HugeInt`). Raises ValueError or RecursionError."""
    return json.loads(raw, parse_int=_parse_int, object_pairs_hook=_unique_keys)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"the key {key!r} is given twice in one object")
        obj[key] = value
    return obj


def parse_doc(raw: bytes, model: type[M], *, kind: str, version: int, source: str) -> M:
    try:
        obj = load_json(raw)
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:  # ValueError: a 5,000-digit integer too
        raise TpuplanError(f"{source}: not a JSON document ({_first_line(str(exc))})") from None
    return validate_doc(obj, model, kind=kind, version=version, source=source)


def validate_doc(obj: object, model: type[M], *, kind: str, version: int, source: str) -> M:
    """A parsed JSON value as a document of `kind` and `version`, strictly: a number must be a JSON
    number (not "5", not true), an integer field an integer (not 7.0), a string a string."""
    if not isinstance(obj, dict):
        raise TpuplanError(f"{source}: expected a JSON object for a {kind} document")
    got_kind = obj.get("kind")
    if got_kind != kind:
        raise TpuplanError(f"{source}: not a {kind} document (kind is {_shown(got_kind)})")
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
        return model.model_validate(obj, strict=True)
    except ValidationError as exc:
        raise TpuplanError(f"{source}: invalid {kind} document at {validation_message(exc)}") from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise TpuplanError(f"{source}: invalid {kind} document ({_first_line(str(exc))})") from None


def checked_json(doc: BaseModel, where: str) -> str:
    """`dump_json` of a document about to be written, read back as its reader will read it: a document
    tpuplan would refuse (a fitted number past a bound, a name too long) is never written."""
    text = dump_json(doc)
    kind, version = getattr(doc, "kind", None), getattr(doc, "schema_version", None)
    if not isinstance(kind, str) or not isinstance(version, int):
        return text
    try:
        validate_doc(load_json(text.encode()), type(doc), kind=kind, version=version, source=where)
    except TpuplanError as exc:
        raise TpuplanError(f"{exc}; tpuplan would refuse to read it, so it is not written") from None
    return text


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


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
