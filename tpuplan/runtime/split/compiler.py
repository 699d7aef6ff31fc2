"""Run Coral's `edgetpu_compiler` on a segment and read back what it decided.

The compiler's console report is the only place that says how many parameter bytes stayed on chip,
how many are streamed from host memory and which operators fell back to the CPU, so the planner's
cost model is checked against it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from pydantic import Field

from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import Bytes, Count

COMPILER_NAME = "edgetpu_compiler"
COMPILER_INSTALL_HINT = (
    "edgetpu_compiler not found on PATH: install the Debian package 'edgetpu-compiler' from Coral's apt "
    "repository (deb https://packages.cloud.google.com/apt coral-edgetpu-stable main); "
    "it exists for x86-64 Linux only"
)
MAPPED_STATUS = "Mapped to Edge TPU"

_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)$")
_VERSION_RE = re.compile(r"Edge TPU Compiler version (\S+)")
_ROW_RE = re.compile(r"^(\S+)\s+(\d+)\s+(\S.*?)\s*$")
_TABLE_HEADER_RE = re.compile(r"^Operator\s+Count\s+Status\s*$")

# Report label -> CompilerReport field; sizes and counts are converted below.
_SIZE_LABELS = {
    "Input size": "input_bytes",
    "Output size": "output_bytes",
    "On-chip memory used for caching model parameters": "onchip_bytes",
    "On-chip memory remaining for caching model parameters": "onchip_remaining_bytes",
    "On-chip memory available for caching model parameters": "onchip_available_bytes",
    "Off-chip memory used for streaming uncached model parameters": "offchip_bytes",
}
_COUNT_LABELS = {
    "Number of Edge TPU subgraphs": "subgraphs",
    "Total number of operations": "total_ops",
    "Number of operations that will run on Edge TPU": "ops_on_tpu",
    "Number of operations that will run on CPU": "ops_on_cpu",
}
_TEXT_LABELS = {
    "Input model": "input_model",
    "Output model": "output_model",
    "Operation log": "operation_log",
}
_REQUIRED = (
    "input_model",
    "input_bytes",
    "output_model",
    "output_bytes",
    "offchip_bytes",
    "subgraphs",
    "total_ops",
)


class OperatorRow(StrictModel):
    """One row of the `-s` operator table; the same op appears once per status."""

    op: str
    count: Count
    status: str
    mapped: bool


class CompilerReport(StrictModel):
    """What one `edgetpu_compiler` run printed, sizes in integer bytes."""

    compiler_version: str | None = None
    input_model: str
    input_bytes: Bytes
    output_model: str
    output_bytes: Bytes
    onchip_bytes: Bytes
    onchip_remaining_bytes: Bytes | None = None
    onchip_available_bytes: Bytes | None = Field(default=None, description="printed by compiler 2.0")
    offchip_bytes: Bytes
    subgraphs: Count
    total_ops: Count
    ops_on_tpu: Count | None = None
    ops_on_cpu: Count | None = None
    operation_log: str | None = None
    operators: list[OperatorRow] = Field(default_factory=list)


class CompiledSegment(StrictModel):
    """A compiled segment: where the `_edgetpu.tflite` file is and what the compiler reported."""

    source: Path
    compiled: Path
    report: CompilerReport


def parse_size(text: str) -> int:
    """'7.04MiB' -> bytes; the compiler prints two decimals, so the result is rounded."""
    m = _SIZE_RE.match(text.strip())
    if m is None:
        raise TpuplanError(f"cannot read the size {text.strip()!r} in an edgetpu_compiler report")
    return round(float(m.group(1)) * _UNITS[m.group(2)])


def parse_compiler_report(text: str) -> CompilerReport:
    """Read the console report of `edgetpu_compiler -s` (versions 2.0 to 16)."""
    fields: dict[str, object] = {}
    rows: list[OperatorRow] = []
    in_table = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        version = _VERSION_RE.search(line)
        if version is not None:
            fields["compiler_version"] = version.group(1)
            continue
        if _TABLE_HEADER_RE.match(line):
            in_table = True
            continue
        label, sep, value = line.partition(":")
        label, value = label.strip(), value.strip()
        if sep and label in _SIZE_LABELS:
            fields[_SIZE_LABELS[label]] = parse_size(value)
        elif sep and label in _COUNT_LABELS:
            if not value.isdigit():
                raise TpuplanError(f"cannot read the count {value!r} of {label!r} in an edgetpu_compiler report")
            fields[_COUNT_LABELS[label]] = int(value)
        elif sep and label in _TEXT_LABELS:
            fields[_TEXT_LABELS[label]] = value
        elif in_table:
            row = _ROW_RE.match(line)
            if row is None:
                in_table = False  # anything after the table ends it
                continue
            status = row.group(3)
            rows.append(
                OperatorRow(op=row.group(1), count=int(row.group(2)), status=status, mapped=status == MAPPED_STATUS)
            )
    if "onchip_bytes" not in fields:
        raise TpuplanError("not an edgetpu_compiler report: no 'On-chip memory used for caching model parameters' line")
    missing = [name for name in _REQUIRED if name not in fields]
    if missing:
        raise TpuplanError(f"incomplete edgetpu_compiler report: missing {', '.join(missing)}")
    # Compilers that map everything print no per-device counts; the table then proves all ops are on the TPU.
    if "ops_on_tpu" not in fields and "ops_on_cpu" not in fields and rows and all(r.mapped for r in rows):
        fields["ops_on_tpu"] = fields["total_ops"]
        fields["ops_on_cpu"] = 0
    fields["operators"] = rows
    return CompilerReport.model_validate(fields)


def find_compiler() -> str | None:
    """Full path of `edgetpu_compiler` on PATH, or None."""
    return shutil.which(COMPILER_NAME)


def _last_line(*texts: str) -> str:
    """The last non-blank line of the first text that has one: the compiler's final word on a failure."""
    for text in texts:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "no output"


def compile_segment(path: Path, out_dir: Path, *, timeout_s: float = 600) -> CompiledSegment:
    """Compile one segment with `edgetpu_compiler -s -o OUT_DIR MODEL` and parse its report.

    The arguments go as a list (no shell), so model paths with spaces or quotes are safe.
    """
    compiler = find_compiler()
    if compiler is None:
        raise TpuplanError(COMPILER_INSTALL_HINT)
    if not path.is_file():
        raise TpuplanError(f"cannot compile {path}: no such model file")
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [compiler, "-s", "-o", str(out_dir), str(path)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise TpuplanError(f"edgetpu_compiler timed out after {timeout_s:g} s compiling {path}") from exc
    except OSError as exc:
        raise TpuplanError(f"cannot run {compiler} on {path}: {exc}") from exc
    if done.returncode != 0:
        last = _last_line(done.stderr, done.stdout)
        raise TpuplanError(f"edgetpu_compiler failed on {path} (exit {done.returncode}): {last}")
    try:
        report = parse_compiler_report(done.stdout)
    except TpuplanError as exc:
        raise TpuplanError(f"edgetpu_compiler on {path}: {exc}") from exc
    compiled = out_dir / f"{path.stem}_edgetpu.tflite"
    if not compiled.is_file():
        raise TpuplanError(f"edgetpu_compiler reported success on {path} but wrote no {compiled}")
    return CompiledSegment(source=path, compiled=compiled, report=report)
