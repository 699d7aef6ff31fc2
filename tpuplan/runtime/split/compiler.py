"""Run Coral's `edgetpu_compiler` on a segment and read back what it decided.

The compiler's console report is the only place that says how many parameter bytes stayed on chip,
how many are streamed from host memory and which operators fell back to the CPU, so the planner's
cost model is checked against it.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from pydantic import Field

from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import Bytes, Count
from tpuplan.runtime.split.flags import COMPILER_FLAGS

COMPILER_NAME = "edgetpu_compiler"
COMPILER_INSTALL_HINT = (
    "edgetpu_compiler not found on PATH: install the Debian package 'edgetpu-compiler' from Coral's apt "
    "repository (deb https://packages.cloud.google.com/apt coral-edgetpu-stable main); "
    "it exists for x86-64 Linux only"
)
MAPPED_STATUS = "Mapped to Edge TPU"

# edgetpu_compiler's own flags (compiler 16) that `plan split --compile --compiler-args` passes on: long name ->
# (short name, takes a whole number). The rest are tpuplan's to set (-s, -o), would change the segments it
# planned (-n, -i, -a), or do not compile (-h, -v); `refused` says why.
_REFUSED: Final = {
    "--out_dir": ("-o", "tpuplan chooses where the compiled segments go"),
    "--show_operations": ("-s", "tpuplan always asks for the report it reads"),
    "--num_segments": ("-n", "tpuplan makes the segments: plan solve --tpus"),
    "--intermediate_tensors": ("-i", "it changes a segment's outputs, which the manifest routes"),
    "--enable_multiple_subgraphs": ("-a", "segments have one subgraph"),
    "--help": ("-h", "it compiles nothing"),
    "--version": ("-v", "it compiles nothing"),
}
MAX_FLAG_VALUE = 1_000_000

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


def parse_compiler_args(text: str) -> list[str]:
    """`--compiler-args` as the flags passed on, in long form: '-m 13 --search_delegate' ->
    ['--min_runtime_version', '13', '--search_delegate']. Only the flags of COMPILER_FLAGS, each once, with
    a whole number where one is due; anything else is refused by name."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise TpuplanError(f"--compiler-args: cannot read {text!r} ({exc})") from None
    shorts = {short: name for name, (short, _) in COMPILER_FLAGS.items()}
    out: list[str] = []
    while words:
        word = words.pop(0)
        flag, eq, value = word.partition("=")
        name = shorts.get(flag, flag)
        if name in _REFUSED or flag in {s for s, _ in _REFUSED.values()}:
            long = name if name in _REFUSED else next(n for n, (s, _) in _REFUSED.items() if s == flag)
            raise TpuplanError(f"--compiler-args: {word} is not passed on: {_REFUSED[long][1]}")
        if name not in COMPILER_FLAGS:
            known = ", ".join(f"{n} ({s})" for n, (s, _) in COMPILER_FLAGS.items())
            raise TpuplanError(f"--compiler-args: unknown edgetpu_compiler flag {word!r} (passed on: {known})")
        if name in out:
            raise TpuplanError(f"--compiler-args: {name} is given twice")
        out.append(name)
        if not COMPILER_FLAGS[name][1]:
            if eq:
                raise TpuplanError(f"--compiler-args: {name} takes no value (got {word!r})")
            continue
        if not eq:
            value = words.pop(0) if words else ""
        if not value.isdigit() or not 1 <= int(value) <= MAX_FLAG_VALUE:
            raise TpuplanError(
                f"--compiler-args: {name} needs a whole number from 1 to {MAX_FLAG_VALUE} (got {value!r})"
            )
        out.append(str(int(value)))
    return out


def compile_segment(path: Path, out_dir: Path, *, args: Sequence[str] = (), timeout_s: float = 600) -> CompiledSegment:
    """Compile one segment with `edgetpu_compiler -s -o OUT_DIR [ARGS] MODEL` and parse its report.

    `args` are flags from `parse_compiler_args`. The arguments go as a list (no shell), so model paths with
    spaces or quotes are safe. A --timeout_sec longer than ours extends ours, so the compiler's own applies.
    """
    compiler = find_compiler()
    if compiler is None:
        raise TpuplanError(COMPILER_INSTALL_HINT)
    if not path.is_file():
        raise TpuplanError(f"cannot compile {path}: no such model file")
    args = list(args)
    if "--timeout_sec" in args:
        timeout_s = max(timeout_s, int(args[args.index("--timeout_sec") + 1]) + 60.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [compiler, "-s", "-o", str(out_dir), *args, str(path)]
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
