"""What every command shares: reading inputs once, the one output check, options, tables.

One place decides "is this argument a profile or a model" (`read_source`), one parses cut lists
(`parse_cuts`), and one checks an output path before any long work starts (`check_output`).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import typer
from pydantic import BaseModel

from tpuplan.cli.outputs import check_output, check_outputs, spec_files, write_output
from tpuplan.planner.search.cpsat import MAX_TIME_LIMIT_S
from tpuplan.profiles.build import build_profile, price
from tpuplan.profiles.docio import dump_json, parse_doc, read_bytes
from tpuplan.profiles.errors import TpuplanError, quoted
from tpuplan.profiles.model import PROFILE_KIND, PROFILE_VERSION, Profile
from tpuplan.profiles.pricing.device import DeviceSpec, preset_names, resolve_device
from tpuplan.profiles.pricing.host import HostSpec, host_preset, host_preset_names, resolve_host
from tpuplan.profiles.state import with_state
from tpuplan.profiles.tflite.reader import MAX_MODEL_BYTES, LoadedModel, parse_model

DEVICE_HELP = "Device preset name or DeviceSpec JSON file. Presets: edgetpu-usb (calibrated default), edgetpu-pci, cpu."
DEVICES_HELP = DEVICE_HELP + (
    " A pool: repeat or comma-separate, 'Nx NAME' for N of one (e.g. '2x edgetpu-usb, 1x edgetpu-pci, cpu'); the "
    "planner chooses which device runs which stage. One device alone: as many as --tpus asks. With --cuts or "
    "--in-order: one per stage, in stage order (copies of a stage run on its device)."
)
HOST_HELP = "Host preset (tpuplan, pycoral, python-threads) or HostSpec JSON: the runner and host CPU costs."
SOURCE_HELP = "A profile JSON (from `plan profile`) or a .tflite CPU model (profiled on the first --device)."
STATE_HELP = (
    "Declare state the model carries from one input to the next: IN=OUT, a model input that takes back a "
    "model output (repeat or comma-separate). Variables and pairs named like init_x/x are found by themselves."
)
NO_STATE_HELP = "Plan as if stateless: ignore the state the model shows (copies of any stage allowed)."
FORCE_HELP = "Overwrite the output if it exists (a file; for `plan split`, only an earlier split)."
JSON_HELP = "Print JSON for machines instead of a table."

__all__ = ["check_output", "check_outputs", "spec_files", "write_output"]  # the output rule, shared by every command


def read_model(path: Path) -> LoadedModel:
    """A .tflite model from disk, read and checked once."""
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
    if path.suffix not in (".tflite", ".json"):
        raise TpuplanError(f"{path}: expected a profile .json or a .tflite model")
    if path.suffix == ".tflite":
        loaded = read_model(path)
        return Source(build_profile(loaded, device or resolve_device(None), host or resolve_host(None)), loaded)
    data = read_bytes(path, what="profile JSON document", max_bytes=1 << 30)
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
    return with_state(profile, split_list(declared), no_state) if declared or no_state else profile


def parse_devices(specs: Sequence[str] | None) -> list[DeviceSpec]:
    """--device values, repeated or comma-separated, as device specs (presets or JSON files)."""
    return [resolve_device(name) for name in split_list(specs)]


_COUNTED = re.compile(r"^(\d+)\s*[x*]\s*(\S.*)$")


def parse_pool(specs: Sequence[str] | None) -> tuple[list[tuple[DeviceSpec, int]], bool]:
    """--device items as (device, count), and whether any count was written ('2x edgetpu-usb')."""
    out: list[tuple[DeviceSpec, int]] = []
    counted = False
    for item in split_list(specs):
        match = _COUNTED.match(item)
        if match:
            counted = True
            count = int(match.group(1))
            if not 1 <= count <= 64:
                raise TpuplanError(f"--device {quoted(item)}: a count from 1 to 64")
            out.append((resolve_device(match.group(2).strip()), count))
        else:
            out.append((resolve_device(item), 1))
    return out, counted


def device_names(specs: Sequence[str] | None) -> list[str]:
    """The device names or files of --device items, without their counts."""
    return [m.group(2).strip() if (m := _COUNTED.match(item)) else item for item in split_list(specs)]


def split_list(values: Sequence[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def parse_cuts(text: str, what: str = "--cuts") -> list[int]:
    """'3,10' -> [3, 10]: a stage ends after each op listed (or, for --copies, TPUs per stage)."""
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise TpuplanError(f"{what} must be comma-separated integers like 3,10 (got {quoted(text)})") from None


def positive(value: float | None, flag: str) -> None:
    if value is not None and not value > 0:
        raise TpuplanError(f"{flag} must be positive (got {value:g})")


def time_limit_option(seconds: float | None) -> None:
    """--time-limit: seconds from over 0 to a day; NaN, infinity and 1e300 are refused by the flag's name."""
    if seconds is not None and not 0 < seconds <= MAX_TIME_LIMIT_S:
        raise TpuplanError(f"--time-limit must be more than 0 and at most {MAX_TIME_LIMIT_S:g} s (got {seconds:g})")


def emit(doc: BaseModel, *, output: Path | None, as_json: bool, table: str) -> None:
    """Write the document to `output` (already checked), then print JSON or the table for people."""
    if output is not None:
        write_output(output, dump_json(doc).encode())
    if as_json:
        sys.stdout.write(dump_json(doc))
    else:
        typer.echo(table)
        if output is not None:
            typer.echo(f"wrote {output}")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[bool] | None = None) -> str:
    """A plain fixed-width text table."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = right or [False] + [True] * (len(headers) - 1)
    lines = []
    for k, row in enumerate(cells):
        parts = [c.rjust(w) if align[i] else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=False))]
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


def ms(us: int | float) -> str:
    return f"{us / 1000:,.3f}"


def bar(value: float, scale: float, width: int = 30) -> str:
    if scale <= 0:
        return ""
    return "#" * max(0, min(width, round(width * value / scale)))


def known_presets() -> str:
    return ", ".join(preset_names())


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")
