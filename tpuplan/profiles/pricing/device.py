"""DeviceSpec: what one accelerator holds and how fast it runs each class of op.

Units are bytes and microseconds. The Edge TPU numbers of the `edgetpu-usb` preset are fitted by
`plan calibrate` to the single-TPU sweeps and 2-TPU pipelines in ../shared/edgetpu-measurements (README).
Every number is bounded, so that the integer tables built from a spec stay exact in int64.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field

from tpuplan.profiles.docio import StrictModel, dump_json, load_doc
from tpuplan.profiles.limits import MAX_RATE as MAX_RATE  # re-exported: every spec bounds its rates with it
from tpuplan.profiles.limits import MAX_US as MAX_US  # and its fixed times with this
from tpuplan.profiles.limits import Rate, Share
from tpuplan.profiles.pricing.bundled import bundled, bundled_names, resolve_spec

DEVICE_KIND: Final = "tpuplan.device"
DEVICE_VERSION: Final = 2

OpClass = Literal["fc", "conv", "depthwise", "elementwise", "reduce", "resize", "custom", "other"]
OP_CLASSES: tuple[OpClass, ...] = ("fc", "conv", "depthwise", "elementwise", "reduce", "resize", "custom", "other")


class OpClassCost(StrictModel):
    """Time of one op of a class on the device: fixed + per million MACs (of the padded layout on an
    Edge TPU) + per KiB of its output activation; streaming cost per KiB of parameters."""

    us_per_op: float = Field(0.0, ge=0, le=MAX_US)
    us_per_mmac: float = Field(0.0, ge=0, le=MAX_RATE)
    us_per_kib_act: float = Field(0.0, ge=0, le=MAX_RATE)
    stream_us_per_kib: float = Field(0.0, ge=0, le=MAX_RATE)
    calibrated: bool = Field(False, description="fitted to real measurements; else an uncalibrated default")


class LinkCost(StrictModel):
    """Moving tensors between the host and the device, per KiB; the first inference's parameter upload."""

    in_us_per_kib: float = Field(0.0, ge=0, le=1e6, description="host -> device tensor copy and transfer")
    out_us_per_kib: float = Field(0.0, ge=0, le=1e6, description="device -> host")
    upload_us_per_kib: float = Field(0.0, ge=0, le=1e6, description="cached parameters, first inference")
    calibrated: bool = False


class Calibration(StrictModel):
    """Where a spec's numbers come from and how well they fit."""

    source: str = Field(max_length=4000)
    points: int = Field(0, ge=0, le=1 << 30)  # every number of a spec is bounded (profiles.limits)
    median_rel_error: dict[str, Rate] = Field(default_factory=dict)
    worst_rel_error: dict[str, Rate] = Field(default_factory=dict)
    memory_within_0_1_mib: dict[str, Share] = Field(default_factory=dict)


class DeviceSpec(StrictModel):
    """One accelerator. `backend` says how stages on it run: on an Edge TPU or on the host CPU."""

    kind: Literal["tpuplan.device"] = DEVICE_KIND
    schema_version: Literal[2] = DEVICE_VERSION
    name: str = Field(min_length=1, max_length=200)
    backend: Literal["edgetpu", "cpu"] = "edgetpu"
    onchip_bytes: int = Field(0, ge=0, le=1 << 40, description="on-chip bytes usable for parameters")
    max_cached_layer_bytes: int = Field(0, ge=0, le=1 << 40, description="a larger layer is never cached")
    io_reserve_frac: float = Field(
        0.0, ge=0, le=16, description="on-chip bytes given up per byte of the Edge TPU part's inputs and outputs"
    )
    channel_pad: int = Field(1, ge=1, le=4096, description="the compiler pads output channels to this")
    input_pad: int = Field(1, ge=1, le=4096, description="the compiler pads the input depth of each weight row")
    per_channel_bytes: int = Field(
        0, ge=0, le=4096, description="extra bytes per padded output channel of a per-channel quantised kernel"
    )
    invoke_overhead_us: float = Field(0.0, ge=0, le=MAX_US)
    link: LinkCost = Field(default_factory=lambda: LinkCost())
    op_costs: dict[OpClass, OpClassCost] = Field(default_factory=dict)
    calibration: Calibration | None = None

    def cost(self, op_class: str) -> OpClassCost:
        """The class's cost, `other`'s when the class has none of its own, zero when neither exists."""
        return self.op_costs.get(op_class) or self.op_costs.get("other") or OpClassCost()  # type: ignore[call-overload]


def load_device(path: Path) -> DeviceSpec:
    return load_doc(Path(path), DeviceSpec, kind=DEVICE_KIND, version=DEVICE_VERSION)


def preset_names(folder: str = "devices") -> list[str]:
    return bundled_names(folder)


def preset(name: str) -> DeviceSpec:
    return bundled("devices", name, DeviceSpec, kind=DEVICE_KIND, version=DEVICE_VERSION, what="device")


DEFAULT_DEVICE = "edgetpu-usb"


def resolve_device(spec: str | None) -> DeviceSpec:
    """A device from a preset name or a JSON file path; None gives the default preset."""
    return resolve_spec(
        spec, DeviceSpec, kind=DEVICE_KIND, version=DEVICE_VERSION, default=DEFAULT_DEVICE, preset=preset
    )


def device_json(spec: DeviceSpec) -> str:
    return dump_json(spec)
