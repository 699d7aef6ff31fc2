"""Helpers shared by the CLI command modules: output, tables, device options."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import typer
from pydantic import BaseModel

from profiles.device import DeviceSpec, preset_names, resolve_device
from profiles.docio import dump_json, write_doc
from profiles.errors import TpuplanError

DEVICE_HELP = (
    "Device preset name or DeviceSpec JSON file. Presets: edgetpu-usb (calibrated default), edgetpu-pci, cpu."
)


def device_option(spec: str | None) -> DeviceSpec:
    return resolve_device(spec)


def emit(doc: BaseModel, *, output: Path | None, as_json: bool, table: str, force: bool = True) -> None:
    """Write the document to `output` atomically, then print JSON or the table for people."""
    if output is not None:
        write_doc(output, doc, force=force)
    if as_json:
        sys.stdout.write(dump_json(doc))
    else:
        typer.echo(table)
        if output is not None:
            typer.echo(f"wrote {output}")


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[bool] | None = None
) -> str:
    """A plain fixed-width text table."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = right or [False] + [True] * (len(headers) - 1)
    lines = []
    for k, row in enumerate(cells):
        parts = [
            c.rjust(w) if align[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))
        ]
        lines.append("  ".join(parts).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def mib(n: int | float) -> str:
    return f"{n / 2**20:.2f}"


def bar(value: float, scale: float, width: int = 30) -> str:
    if scale <= 0:
        return ""
    k = max(0, min(width, round(width * value / scale)))
    return "#" * k


def known_presets() -> str:
    return ", ".join(preset_names())


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


def require(cond: bool, message: str) -> None:
    if not cond:
        raise TpuplanError(message)
