"""DeviceSpec: what one accelerator holds and how fast it runs each class of op.

Units are bytes and microseconds. The Edge TPU numbers of the `edgetpu-usb` preset are fitted by
`plan calibrate` to the single-TPU sweeps and 2-TPU pipelines in ../shared/edgetpu-measurements (README).
Every number is bounded, so that the integer tables built from a spec stay exact in int64.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints, TypeAdapter, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo

from tpuplan.profiles.docio import StrictModel, dump_json, load_doc
from tpuplan.profiles.limits import MAX_RATE as MAX_RATE  # re-exported: every spec bounds its rates with it
from tpuplan.profiles.limits import MAX_US as MAX_US  # and its fixed times with this
from tpuplan.profiles.limits import Rate, Share
from tpuplan.profiles.pricing.bundled import bundled, bundled_names, resolve_spec
from tpuplan.profiles.pricing.coefficients import check_scenarios
from tpuplan.profiles.pricing.formula import OP_CLASSES as OP_CLASSES  # re-exported with the class names
from tpuplan.profiles.pricing.formula import DeviceTimes, HostTimes, LinkCost, OpClassCost
from tpuplan.profiles.pricing.formula import OpClass as OpClass

DEVICE_KIND: Final = "tpuplan.device"
DEVICE_VERSION: Final = 2


class Scenario(StrictModel):
    """A plausible set of this spec's coefficients: the fit again without one source (its name), as
    coefficient paths (`invoke_overhead_us`, `link.in_us_per_kib`, `op_costs.conv.us_per_mmac`) and values,
    each inside the bounds of the field it sets."""

    name: str = Field(min_length=1, max_length=200)
    values: dict[Annotated[str, StringConstraints(pattern=r"^[a-z_]+(\.[a-z_]+){0,2}$", max_length=100)], Rate] = Field(
        default_factory=dict, max_length=200
    )

    @field_validator("values")
    @classmethod
    def _in_bounds(cls, values: dict[str, float]) -> dict[str, float]:
        for path, value in values.items():
            bounds = _bounds_of(path)
            if bounds is None:
                raise ValueError(f"{path} is not a coefficient of a device or host")
            try:
                bounds.validate_python(value)
            except ValidationError as exc:
                first = exc.errors()[0]
                detail = {"type": first["type"], "loc": (path,), "input": value, "ctx": first.get("ctx", {})}
                raise ValidationError.from_exception_data("Scenario", [detail]) from None  # type: ignore[list-item]
        return values


@functools.lru_cache(maxsize=512)
def _bounds_of(path: str) -> TypeAdapter[float] | None:
    """The bounds of the field a coefficient path sets, as a validator (built once per path: a spec
    keeps hundreds of scenario values, and building a validator costs far more than running it)."""
    field = _coefficient_field(path)
    if field is None:
        return None
    bounded = (float, *field.metadata)
    adapter: TypeAdapter[float] = TypeAdapter(Annotated[bounded])  # type: ignore[arg-type]
    return adapter


def _coefficient_field(path: str) -> FieldInfo | None:
    """The field a coefficient path sets (its bounds are the scenario value's)."""
    parts = path.split(".")
    if parts[0] == "op_costs":
        return OpClassCost.model_fields.get(parts[-1]) if len(parts) == 3 else None
    if parts[0] == "link":
        return LinkCost.model_fields.get(parts[-1]) if len(parts) == 2 else None
    return (DeviceTimes.model_fields.get(path) or HostTimes.model_fields.get(path)) if len(parts) == 1 else None


class Calibration(StrictModel):
    """Where a spec's numbers come from, how well they fit, and how far they could be off: `spread` gives,
    per coefficient path, the least and most value over `scenarios` (leave-one-source-out refits)."""

    source: str = Field(max_length=4000)
    points: int = Field(0, ge=0, le=1 << 30)  # every number of a spec is bounded (profiles.limits)
    median_rel_error: dict[str, Rate] = Field(default_factory=dict)
    worst_rel_error: dict[str, Rate] = Field(default_factory=dict)
    memory_within_0_1_mib: dict[str, Share] = Field(default_factory=dict)
    assumed: list[Annotated[str, StringConstraints(max_length=100)]] = Field(
        default_factory=list, max_length=200, description="coefficient paths that are assumed, not fitted"
    )
    scenarios: list[Scenario] = Field(default_factory=list, max_length=64)

    def provenance(self) -> str:
        """Where the numbers come from, in a few words: fitted on how many sources and rows, with how many
        scenarios, and what is assumed instead of fitted."""
        sources = len(self.median_rel_error)
        fitted = f"fitted to {sources} source(s), {self.points} rows" if sources else ""
        parts = [p for p in (fitted, f"{len(self.scenarios)} scenarios" if self.scenarios else "") if p]
        if self.assumed:
            kinds = {a.split(".")[-1] if a.startswith("op_costs") else a.split(".")[0] for a in self.assumed}
            parts.append("ASSUMED: " + ", ".join(sorted(kinds)))
        if parts:
            return "; ".join(parts)
        return self.source.split(";")[0].strip() or "assumed (no fit)"  # the source's first clause

    def spread(self, path: str) -> tuple[float, float] | None:
        """Least and most value of a coefficient over the scenarios (None: not varied)."""
        values = [s.values[path] for s in self.scenarios if path in s.values]
        return (min(values), max(values)) if values else None


class _DeviceFacts(StrictModel):
    """What one accelerator is and holds (its time coefficients are `DeviceTimes`, in the cost formula)."""

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


class DeviceSpec(DeviceTimes, _DeviceFacts):
    """One accelerator. `backend` says how stages on it run: on an Edge TPU or on the host CPU. Its
    time coefficients are those of `DeviceTimes` (profiles.pricing.formula)."""

    calibration: Calibration | None = None

    @model_validator(mode="after")
    def _scenarios(self) -> DeviceSpec:
        """Its calibration's scenarios price stages too: each must be a spec this one would accept."""
        return check_scenarios(self)


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
