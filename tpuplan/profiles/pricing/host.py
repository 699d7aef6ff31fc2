"""HostSpec: the machine around the accelerators, and the program that runs the pipeline on it.

Per stage and inference, the runner does host work outside the device's own invoke (tensor copies,
dispatch, queue hand-offs): `stage_us + stage_us_per_kib x KiB of the stage's boundary tensors`. A part
of it runs under one lock shared by all stages (Python's interpreter lock) and adds up across stages
instead of overlapping (`serialized`, and `serialized_device` of the device time). Devices on one USB
controller share its bytes (`bus_shared`). Ops the Edge TPU does not run are priced by `host_ops`.
Presets: `python-threads` and `pycoral` (the runners of the measurements in ../shared/edgetpu-measurements)
and `tpuplan` (our own `plan run`, measured on the machine that `plan verify` ran on).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints, model_validator

from tpuplan.profiles.docio import StrictModel, dump_json, load_doc
from tpuplan.profiles.pricing.bundled import bundled, bundled_names, resolve_spec
from tpuplan.profiles.pricing.coefficients import check_scenarios
from tpuplan.profiles.pricing.device import Calibration
from tpuplan.profiles.pricing.formula import HostOpCost, HostTimes

HOST_KIND: Final = "tpuplan.host"
HOST_VERSION: Final = 1
DEFAULT_HOST = "tpuplan"
HostOpKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,100}$")]  # an op class or an op type


class _HostName(StrictModel):
    kind: Literal["tpuplan.host"] = HOST_KIND
    schema_version: Literal[1] = HOST_VERSION
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)


class HostSpec(HostTimes, _HostName):
    """One host and its pipeline runner; see the module docstring for what each number means. Its time
    coefficients are those of `HostTimes` (profiles.pricing.formula)."""

    host_ops: dict[HostOpKey, HostOpCost] = Field(
        default_factory=dict, description="by op type (e.g. ARG_MAX) where measured, else by op class"
    )
    calibration: Calibration | None = None

    @model_validator(mode="after")
    def _scenarios(self) -> HostSpec:
        """Its calibration's scenarios price stages too: each must be a spec this one would accept."""
        return check_scenarios(self)

    def op_cost(self, op_class: str, op_type: str = "") -> HostOpCost:
        """The op type's own cost where one was measured, else its class's, else `other`'s."""
        return self.host_ops.get(op_type) or self.host_ops.get(op_class) or self.host_ops.get("other") or HostOpCost()


def load_host(path: Path) -> HostSpec:
    return load_doc(Path(path), HostSpec, kind=HOST_KIND, version=HOST_VERSION)


def host_preset_names() -> list[str]:
    return bundled_names("hosts")


def host_preset(name: str) -> HostSpec:
    return bundled("hosts", name, HostSpec, kind=HOST_KIND, version=HOST_VERSION, what="host")


def resolve_host(spec: str | None) -> HostSpec:
    """A host from a preset name or a JSON file path; None gives the default (our own runner)."""
    return resolve_spec(spec, HostSpec, kind=HOST_KIND, version=HOST_VERSION, default=DEFAULT_HOST, preset=host_preset)


def host_json(spec: HostSpec) -> str:
    return dump_json(spec)
