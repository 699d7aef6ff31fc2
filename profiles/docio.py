"""Versioned JSON documents: atomic writes and strict, one-line-error reads."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
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
    """Write `data` whole or not at all: a temporary file in the same directory, then rename."""
    path = Path(path)
    if not overwrite and path.exists():
        raise TpuplanError(f"{path}: already exists")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise TpuplanError(f"{path}: directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def dump_json(doc: BaseModel) -> str:
    """Canonical JSON text of a document: same input, byte-identical output."""
    return json.dumps(doc.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


def write_doc(path: Path, doc: BaseModel, *, overwrite: bool = True) -> None:
    write_atomic(Path(path), dump_json(doc).encode(), overwrite=overwrite)


def read_bytes(path: Path, *, what: str = "file", max_bytes: int = 2**31) -> bytes:
    """Read an input file, turning OS errors into a one-line TpuplanError."""
    path = Path(path)
    try:
        if path.is_dir():
            raise TpuplanError(f"{path}: is a directory, expected a {what}")
        size = path.stat().st_size
        if size > max_bytes:
            raise TpuplanError(f"{path}: {size} bytes is too large for a {what}")
        return path.read_bytes()
    except FileNotFoundError:
        raise TpuplanError(f"{path}: no such file") from None
    except PermissionError:
        raise TpuplanError(f"{path}: permission denied") from None
    except OSError as exc:
        raise TpuplanError(f"{path}: cannot read ({exc.strerror or exc})") from None


def load_doc(path: Path, model: type[M], *, kind: str, version: int) -> M:
    """Load a versioned document of `kind`; refuse other kinds and future versions by name."""
    raw = read_bytes(path, what=f"{kind} JSON document", max_bytes=1 << 30)
    return parse_doc(raw, model, kind=kind, version=version, source=str(path))


def parse_doc(raw: bytes, model: type[M], *, kind: str, version: int, source: str) -> M:
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
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
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        raise TpuplanError(f"{source}: invalid {kind} document at {loc}: {err.get('msg')}") from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise TpuplanError(f"{source}: invalid {kind} document ({_first_line(str(exc))})") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
