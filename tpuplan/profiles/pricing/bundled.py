"""Presets shipped inside the package (profiles/presets/<folder>/<name>.json) and the rule that turns a
command-line spec into a document: a path to a JSON file, else a preset name, else the default."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from tpuplan.profiles.docio import load_doc, parse_doc
from tpuplan.profiles.errors import TpuplanError

M = TypeVar("M", bound=BaseModel)


def bundled_names(folder: str) -> list[str]:
    base = resources.files("tpuplan.profiles.pricing") / "presets" / folder
    return sorted(p.name.removesuffix(".json") for p in base.iterdir() if p.name.endswith(".json"))


def bundled(folder: str, name: str, model: type[M], *, kind: str, version: int, what: str) -> M:
    res = resources.files("tpuplan.profiles.pricing") / "presets" / folder / f"{name}.json"
    if not res.is_file():
        raise TpuplanError(f"unknown {what} preset {name!r} (known: {', '.join(bundled_names(folder))})")
    return parse_doc(res.read_bytes(), model, kind=kind, version=version, source=name)


def resolve_spec(
    spec: str | None, model: type[M], *, kind: str, version: int, default: str, preset: Callable[[str], M]
) -> M:
    """A document from a JSON file path or a preset name; None or "" gives the default preset."""
    if not spec:
        return preset(default)
    if spec.endswith(".json") or "/" in spec or Path(spec).is_file():
        return load_doc(Path(spec), model, kind=kind, version=version)
    return preset(spec)
