"""What every command shares: reading inputs once, the one output check, options, tables.

One place decides "is this argument a profile or a model" (`read_source`), one parses cut lists
(`parse_cuts`), and one checks an output path before any long work starts (`check_output`).
"""

from __future__ import annotations

import importlib
import json
import platform
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tpuplan.cli.outputs import check_output, check_outputs, document_text, is_stdout, spec_files, write_output
from tpuplan.planner.defaults import MAX_TIME_LIMIT_S
from tpuplan.profiles.errors import TpuplanError, UsageError, printable, quoted

if TYPE_CHECKING:  # the library is imported where it is used: see tpuplan/cli/__init__.py
    from pydantic import BaseModel

    from tpuplan.profiles.model import Profile
    from tpuplan.profiles.pricing.device import DeviceSpec
    from tpuplan.profiles.pricing.host import HostSpec
    from tpuplan.profiles.tflite.reader import LoadedModel

MAX_NAME = 200  # the name fields of device and host documents
DEVICE_HELP = (
    "Device preset name or DeviceSpec JSON file. Presets: edgetpu-usb (USB 3.0, the default), edgetpu-usb2, "
    "edgetpu-pci (M.2, mini-PCIe, Dev Board), cpu."
)
DEVICES_HELP = DEVICE_HELP + (
    " A pool: repeat or comma-separate, 'Nx NAME' for N of one (e.g. '2x edgetpu-usb, 1x edgetpu-pci, cpu'); the "
    "planner chooses which device runs which stage. One device alone: as many as --tpus asks. With --cuts or "
    "--in-order: one per stage, in stage order (copies of a stage run on its device)."
)
HOST_HELP = (
    "Host preset (tpuplan, pycoral, python-threads, desktop-x86, arm-a53, arm-a72) or HostSpec JSON: the "
    "machine's side of an invoke, its runner and host CPU costs."
)
SOURCE_HELP = "A profile JSON (from `plan profile`) or a .tflite CPU model (profiled on the first --device)."
STATE_HELP = (
    "Declare state the model carries from one input to the next: IN=OUT, a model input that takes back a "
    "model output (repeat or comma-separate). Variables and pairs named like init_x/x are found by themselves."
)
NO_STATE_HELP = "Plan as if stateless: ignore the state the model shows (copies of any stage allowed)."
FORCE_HELP = "Overwrite the output if it exists (a file; for `plan split`, only an earlier split)."
JSON_HELP = "Print JSON for machines instead of a table."

__all__ = [
    "check_output",
    "check_outputs",
    "document_text",
    "is_stdout",
    "spec_files",
    "write_output",
]  # the output rule, shared by every command


def read_model(path: Path) -> LoadedModel:
    """A .tflite model from disk, read and checked once."""
    from tpuplan.profiles.docio import read_bytes
    from tpuplan.profiles.tflite.reader import MAX_MODEL_BYTES, parse_model

    return parse_model(read_bytes(path, what=".tflite model", max_bytes=MAX_MODEL_BYTES), path)


@dataclass(frozen=True)
class Source:
    """What a planning command was given: a profile, and the model when it was a model."""

    profile: Profile
    model: LoadedModel | None


def read_source(path: Path, device: DeviceSpec | None, host: HostSpec | None = None) -> Source:
    """The one rule for "profile or model": a .tflite file is a model, profiled on `device` and `host`
    (default presets when None); a .json file is a profile document, priced again for `device`/`host`
    (its own device, and its host when that is a preset, when not given); anything else is refused."""
    from tpuplan.profiles.build import build_profile, price
    from tpuplan.profiles.docio import parse_doc, read_bytes
    from tpuplan.profiles.model import PROFILE_KIND, PROFILE_VERSION, Profile
    from tpuplan.profiles.pricing.device import resolve_device
    from tpuplan.profiles.pricing.host import host_preset, host_preset_names, resolve_host

    suffix = path.suffix.lower()  # P.JSON and M.TFLITE are what they say
    if suffix not in (".tflite", ".json"):
        raise TpuplanError(f"{path}: expected a profile .json or a .tflite model")
    if suffix == ".tflite":
        loaded = read_model(path)
        return Source(build_profile(loaded, device or resolve_device(None), host or resolve_host(None)), loaded)
    data = read_bytes(path, what="profile JSON document", max_bytes=1 << 30)
    if data[4:8] == b"TFL3":
        raise TpuplanError(f"{path}: is a .tflite model, not a profile JSON document; name it *.tflite")
    profile = parse_doc(data, Profile, kind=PROFILE_KIND, version=PROFILE_VERSION, source=str(path))
    own = host_preset(profile.host) if profile.host in host_preset_names() else None
    try:  # priced again, as the planner always does: what is shown is what is planned (prices are not facts)
        if device is not None or host is not None or own is not None:
            profile = price(
                profile, device or profile.device, host or own or resolve_host(profile.host), where=str(path)
            )
    except TpuplanError as exc:  # a price past the bounds names the profile's file
        raise TpuplanError(f"{path}: {exc}") from None
    return Source(profile, None)


def apply_state(profile: Profile, declared: Sequence[str] | None, no_state: bool) -> Profile:
    """--state IN=OUT and --no-state applied to a profile (`profiles.state.with_state`)."""
    from tpuplan.profiles.state import with_state

    return with_state(profile, split_list(declared, "--state"), no_state) if declared or no_state else profile


def parse_devices(specs: Sequence[str] | None, flag: str = "--device") -> list[DeviceSpec]:
    """--device values, repeated or comma-separated, as device specs (presets or JSON files)."""
    from tpuplan.profiles.pricing.device import resolve_device

    return [resolve_device(name) for name in split_list(specs, flag)]


def split_list(values: Sequence[str] | None, flag: str = "--devices") -> list[str]:
    """Repeated or comma-separated values; an empty one (`--device ''`, `a,,b`) is a mistake, not the default."""
    items = [v.strip() for item in values or [] for v in item.split(",")]
    if any(not v for v in items):
        raise UsageError(f"{flag}: an empty value in {quoted(','.join(values or []))}; name a preset or a file")
    return items


def spec_option(value: str | None, flag: str) -> str | None:
    """A preset-or-file option (--host, --base): absent gives the default, but an empty string is refused."""
    if value is not None and not value.strip():
        raise UsageError(f"{flag}: empty; name a preset or a JSON file (or leave the option out)")
    return value


def name_option(value: str | None, flag: str = "--name") -> str | None:
    """A name for a document tpuplan writes: what its reader accepts (1 to 200 characters), printable."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_NAME:
        raise UsageError(f"{flag}: 1 to {MAX_NAME} characters (got {len(value):,})")
    if not value.isprintable():
        raise UsageError(f"{flag}: holds a control character ({shown(value)})")
    return value


_COUNTED = re.compile(r"^(\d+)\s*[x*]\s*(\S.*)$")


def parse_pool(specs: Sequence[str] | None) -> tuple[list[tuple[DeviceSpec, int]], bool]:
    """--device items as (device, count), and whether any count was written ('2x edgetpu-usb')."""
    from tpuplan.profiles.pricing.device import resolve_device

    out: list[tuple[DeviceSpec, int]] = []
    counted = False
    for item in split_list(specs, "--device"):
        match = _COUNTED.match(item)
        if match:
            counted = True
            count = int(match.group(1))
            if not 1 <= count <= 64:
                raise UsageError(f"--device {quoted(item)}: a count from 1 to 64")
            out.append((resolve_device(match.group(2).strip()), count))
        else:
            out.append((resolve_device(item), 1))
    return out, counted


def device_names(specs: Sequence[str] | None) -> list[str]:
    """The device names or files of --device items, without their counts."""
    items = split_list(specs, "--device")
    return [m.group(2).strip() if (m := _COUNTED.match(item)) else item for item in items]


def parse_cuts(text: str, what: str = "--cuts") -> list[int]:
    """'3,10' -> [3, 10]: a stage ends after each op listed (or, for --copies, TPUs per stage); 'none' is
    no cut (one stage). An empty list or an empty item is refused: a build variable that expands to
    nothing is not "no cuts"."""
    if what == "--cuts" and text.strip().lower() == "none":
        return []
    items = [c.strip() for c in text.split(",")]
    if not text.strip() or any(not c for c in items):
        what_is = "empty" if not text.strip() else f"an empty item in {quoted(text)}"
        raise UsageError(f"{what}: {what_is}; give comma-separated integers like 3,10")
    try:
        return [int(c) for c in items]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers like 3,10 (got {quoted(text)})") from None


def positive(value: float | None, flag: str) -> None:
    if value is not None and not value > 0:
        raise UsageError(f"{flag} must be positive (got {value:g})")


def require_planner(command: str, *, solver: bool = True) -> None:
    """The planner's side is there, or one line saying what to install: Python 3.10 or newer and, with
    `solver`, OR-Tools (CP-SAT). A device-side install (`pip install tpuplan[device]`, Python 3.9 on most Coral
    hosts) has the runtime only: split, run, verify, show, devices."""
    if sys.version_info < (3, 10):
        needs = "Python 3.10 or newer and OR-Tools" if solver else "Python 3.10 or newer"
        raise TpuplanError(
            f"{command} needs {needs} (this is Python {platform.python_version()}, enough to split, run and "
            "verify): run it on a workstation with pip install 'tpuplan[planner]'"
        )
    if not solver:
        return
    try:
        importlib.import_module("ortools.sat.python.cp_model")
    except ImportError:
        raise TpuplanError(f"{command} needs OR-Tools: pip install 'tpuplan[planner]'") from None


def time_limit_option(seconds: float | None) -> None:
    """--time-limit: seconds from over 0 to a day; NaN, infinity and 1e300 are refused by the flag's name.
    The bound is the solver's (planner.defaults)."""
    if seconds is not None and not 0 < seconds <= MAX_TIME_LIMIT_S:
        raise UsageError(f"--time-limit must be more than 0 and at most {MAX_TIME_LIMIT_S:g} s (got {seconds:g})")


def emit(doc: BaseModel, *, output: Path | None, force: bool, as_json: bool, table: str) -> None:
    """Write the document to `output` (already checked; `-` is standard output), then print JSON or the
    table for people (nothing more when the document itself went to standard output). The document is
    read back as its reader will read it before anything is written (`outputs.document_text`)."""
    text = document_text(doc, output) if output is not None or as_json else ""
    if output is not None:
        write_output(output, text.encode(), force=force)
    if is_stdout(output):
        return
    if as_json:
        sys.stdout.write(text)
    else:
        typer.echo(table)
        if output is not None:
            typer.echo(f"wrote {shown(str(output))}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[bool] | None = None) -> str:
    """A plain fixed-width text table."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = right or [False] + [True] * (len(headers) - 1)
    lines = []
    for k, row in enumerate(cells):
        parts = [c.rjust(w) if align[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return shown(str(v))


shown = printable  # text from a document or a file name, as printed for people


def clip(text: str, width: int) -> str:
    """At most `width` characters for a table cell, cut between words and marked with '...'."""
    if len(text) <= width:
        return text
    cut = text[: width - 3]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip(" ,;:(") + "..."


def per_second(rate: float) -> str:
    """A throughput for people: 0.023/s stays 0.023/s rather than 0.0/s."""
    return f"{rate:,.1f}" if rate >= 100 or rate == 0 else f"{rate:.3g}"


def mib(n: int | float) -> str:
    return f"{n / 2**20:.2f}"


def ms(us: int | float) -> str:
    return f"{us / 1000:,.3f}"


def bar(value: float, scale: float, width: int = 30) -> str:
    if scale <= 0:
        return ""
    return "#" * max(0, min(width, round(width * value / scale)))


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
