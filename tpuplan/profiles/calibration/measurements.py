"""Real Edge TPU measurements as read from CSV, and how each file was run.

The files are those of ../shared/edgetpu-measurements (its README): a first column naming the model
family and its size (`Hidden neurons` N of `synth_fc`, `Num filters` F of `synth_conv`), the MACs, the
compiler's on-chip and off-chip MiB (one number for a single-TPU sweep; a list `[seg0, seg1, ...]` with
one entry per segment for a pipeline) and the time in ms. A file alone does not say how it was timed,
so each comes with a `RunSpec`: which pipeline runner (a HostSpec) ran it and on what batch, or none
(one `invoke()` per row), and where the model was cut, when that is known. Bad input is one line naming
the file and the line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

from tpuplan.profiles.docio import read_bytes
from tpuplan.profiles.errors import TpuplanError, quoted
from tpuplan.profiles.limits import MAX_BATCH

FAMILIES = {"Hidden neurons": "fc", "Num filters": "conv"}
COLUMNS = ["# MACs", "On chip mem used", "Off chip mem used", "Inference time"]
MAX_SEGMENTS = 16


@dataclass(frozen=True)
class Measurement:
    """One row: the model (family, size x), its MACs, the compiler's MiB per segment and the time."""

    family: str  # "fc" or "conv" (a synthetic model of the study), "model" (a real one, at `model`)
    x: int  # hidden neurons N or filters F (a real model: its row in its table)
    macs: int
    onchip_mib: tuple[float, ...]  # one entry per segment
    offchip_mib: tuple[float, ...]
    ms: float
    line: int  # where it came from, for messages
    model: str = ""  # a real model's .tflite file (family "model")

    @property
    def segments(self) -> int:
        return len(self.onchip_mib)


@dataclass(frozen=True)
class Sweep:
    """One measurement CSV as read: where it came from (name and sha256), its family and its rows."""

    name: str
    sha256: str
    family: str
    segments: int
    rows: list[Measurement]


@dataclass(frozen=True)
class RunSpec:
    """How a file's rows were timed. `runner` None: one `invoke()` of a single-TPU model per row (no
    pipeline runner). Otherwise the name of the HostSpec whose runner ran the pipeline, the batch each
    time is amortised over, whether every run started fresh interpreters (the first input uploads the
    cached parameters), and the cuts (the op ending each stage but the last) when known."""

    runner: str | None = None
    batch: int = 1
    fresh: bool = False
    cuts: tuple[int, ...] | None = None
    host: str | None = None  # the machine of a single-invoke file (a host preset); None: the runners'
    device: str | None = None  # the device it ran on (a device preset); None: the base device
    group: str = "study"  # what a leave-one-group-out check holds out together


@dataclass(frozen=True)
class MeasuredFile:
    """A file and how it was run: one unit of the calibration data."""

    sweep: Sweep
    run: RunSpec

    @property
    def name(self) -> str:
        return self.sweep.name


def read_measurements(path: Path) -> Sweep:
    """One measurement CSV, read once; any other format is a TpuplanError naming the file and line."""
    raw = read_bytes(Path(path), what="measurement CSV", max_bytes=1 << 26)
    rows = parse_measurements(raw, str(path))
    return Sweep(Path(path).name, hashlib.sha256(raw).hexdigest(), rows[0].family, rows[0].segments, rows)


def parse_measurements(raw: bytes, path: str) -> list[Measurement]:
    """Rows of a measurement CSV's bytes; `path` names the source in errors."""
    try:
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TpuplanError(f"{path}: not a measurement CSV ({exc})") from None
    head = [h.strip() for h in rows[0]] if rows else []
    if len(head) != 5 or head[0] not in FAMILIES or head[1:] != COLUMNS:
        raise TpuplanError(
            f"{path}:1: unknown header {','.join(head)!r}; expected 'Hidden neurons' or 'Num filters' "
            f"then {','.join(COLUMNS)}"
        )
    family, out = FAMILIES[head[0]], list[Measurement]()
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        m = _parse_row(row, family, f"{path}:{line}", line)
        if out and m.segments != out[0].segments:
            raise TpuplanError(f"{path}:{line}: {m.segments} segments, but line {out[0].line} has {out[0].segments}")
        out.append(m)
    if not out:
        raise TpuplanError(f"{path}: no measurement rows")
    return out


def _parse_row(row: list[str], family: str, where: str, line: int) -> Measurement:
    if len(row) != 5:
        raise TpuplanError(f"{where}: expected 5 fields, got {len(row)}")
    try:
        x, macs, ms = float(row[0]), float(row[1]), float(row[4])
        on, off = _numbers(row[2]), _numbers(row[3])
    except ValueError:
        raise TpuplanError(f"{where}: a field is not a number: {row!r}") from None
    if len(on) != len(off) or not 1 <= len(on) <= MAX_SEGMENTS:
        raise TpuplanError(f"{where}: on-chip and off-chip need one value per segment (1 to {MAX_SEGMENTS}): {row!r}")
    mib_ok = all(math.isfinite(v) and 0 <= v <= 1 << 20 for v in on + off)
    if not (
        x == int(x) and 1 <= x <= 1 << 16 and 0 <= macs <= 1 << 60 and mib_ok and math.isfinite(ms) and 0 < ms <= 1e7
    ):
        raise TpuplanError(f"{where}: values out of range: {row!r}")
    return Measurement(family, int(x), int(macs), on, off, ms, line)


def _numbers(cell: str) -> tuple[float, ...]:
    """A number, or a list of numbers written `[a, b, ...]` (a pipeline's value per segment)."""
    text = cell.strip()
    if text.startswith("[") and text.endswith("]"):
        return tuple(float(v) for v in text[1:-1].split(","))
    return (float(text),)


def parse_pipeline_spec(text: str) -> tuple[Path, RunSpec]:
    """`FILE:RUNNER:BATCH[:fresh][:cuts=I,J]` (the `plan calibrate --pipeline` form) -> (path, RunSpec).

    RUNNER is a host preset name or HostSpec JSON; `fresh` says every run made new interpreters (their
    first input uploads the cached parameters); `cuts` gives the split when the file does not (else it is
    inferred from the memory columns).
    """
    parts = text.split(":")
    usage = f"pipeline run {quoted(text)}: expected FILE:RUNNER:BATCH[:fresh][:cuts=I,J]"
    if len(parts) < 3 or not parts[0] or not parts[1]:
        raise TpuplanError(usage)
    try:
        batch = int(parts[2])
    except ValueError:
        raise TpuplanError(f"{usage} (BATCH {quoted(parts[2])} is not an integer)") from None
    if not 1 <= batch <= MAX_BATCH:
        raise TpuplanError(f"{usage} (BATCH must be 1 to {MAX_BATCH:,})")
    fresh, cuts = False, None
    for extra in parts[3:]:
        if extra == "fresh" and not fresh:
            fresh = True
        elif extra.startswith("cuts=") and cuts is None:
            try:
                cuts = tuple(int(c) for c in extra.removeprefix("cuts=").split(","))
            except ValueError:
                raise TpuplanError(f"{usage} ({quoted(extra)} is not a list of op indices)") from None
        else:
            raise TpuplanError(f"{usage} (unknown part {quoted(extra)})")
    return Path(parts[0]), RunSpec(runner=parts[1], batch=batch, fresh=fresh, cuts=cuts)
