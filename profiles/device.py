"""DeviceSpec: what one accelerator can hold and how fast it runs each class of op.

Units are bytes and microseconds. The Edge TPU numbers of the default preset are fitted by
`plan calibrate` to the single-TPU sweeps in ../shared/edgetpu-measurements (see README).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Final, Literal

from pydantic import Field

from tpuplan.profiles.docio import StrictModel, load_doc, parse_doc
from tpuplan.profiles.errors import TpuplanError

DEVICE_KIND: Final = "tpuplan.device"
DEVICE_VERSION: Final = 1

OpClass = Literal["fc", "conv", "depthwise", "elementwise", "other", "host"]
OP_CLASSES: tuple[OpClass, ...] = ("fc", "conv", "depthwise", "elementwise", "other", "host")


class OpClassCost(StrictModel):
    """Time of one op of a class: fixed + per MAC + per activation byte; streaming cost per byte."""

    us_per_op: float = Field(0.0, ge=0)
    us_per_mmac: float = Field(0.0, ge=0, description="microseconds per million MACs")
    us_per_kib_act: float = Field(0.0, ge=0, description="microseconds per KiB of input+output activations")
    stream_us_per_kib: float = Field(
        0.0, ge=0, description="extra microseconds per KiB of parameters streamed from host memory"
    )


class Calibration(StrictModel):
    """Where a spec's numbers come from and how well they fit."""

    source: str
    points: int = Field(0, ge=0)
    median_rel_error: dict[str, float] = Field(default_factory=dict)
    worst_rel_error: dict[str, float] = Field(default_factory=dict)
    memory_within_0_3_mib: dict[str, float] = Field(default_factory=dict)


class DeviceSpec(StrictModel):
    """One accelerator. `backend` says how stages on it run: on an Edge TPU or the host CPU."""

    kind: Literal["tpuplan.device"] = DEVICE_KIND
    schema_version: Literal[1] = DEVICE_VERSION
    name: str = Field(min_length=1, max_length=200)
    backend: Literal["edgetpu", "cpu"] = "edgetpu"
    onchip_bytes: int = Field(ge=0, le=1 << 40, description="on-chip memory usable for parameters")
    max_cached_layer_bytes: int = Field(
        ge=0, le=1 << 40, description="a single layer larger than this is never cached on chip"
    )
    activation_reserve_frac: float = Field(
        0.0, ge=0, le=16, description="on-chip bytes given up per byte of the largest activation"
    )
    channel_pad: int = Field(1, ge=1, le=4096, description="the compiler pads output channels to this")
    input_pad: int = Field(
        1, ge=1, le=4096, description="the compiler pads the input depth of each weight row to this"
    )
    invoke_overhead_us: float = Field(0.0, ge=0)
    link_bytes_per_us: float = Field(
        0.0, ge=0, description="host link bandwidth for activations; 0 means free (CPU)"
    )
    op_costs: dict[OpClass, OpClassCost]
    calibration: Calibration | None = None


def load_device(path: Path) -> DeviceSpec:
    return load_doc(Path(path), DeviceSpec, kind=DEVICE_KIND, version=DEVICE_VERSION)


def preset_names() -> list[str]:
    folder = resources.files("tpuplan.profiles") / "presets"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def preset(name: str) -> DeviceSpec:
    folder = resources.files("tpuplan.profiles") / "presets"
    res = folder / f"{name}.json"
    if not res.is_file():
        raise TpuplanError(f"unknown device preset {name!r} (known: {', '.join(preset_names())})")
    return parse_doc(res.read_bytes(), DeviceSpec, kind=DEVICE_KIND, version=DEVICE_VERSION, source=name)


DEFAULT_DEVICE = "edgetpu-usb"


def resolve_device(spec: str | None) -> DeviceSpec:
    """A device from a preset name or a JSON file path; None gives the default preset."""
    if spec is None or spec == "":
        return preset(DEFAULT_DEVICE)
    if spec.endswith(".json") or "/" in spec or Path(spec).is_file():
        return load_device(Path(spec))
    return preset(spec)


def device_json(spec: DeviceSpec) -> str:
    return json.dumps(spec.model_dump(mode="json"), indent=2) + "\n"
