"""The profile document: one entry per operator of subgraph 0, and the bytes live across each cut."""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field

from tpuplan.profiles.device import DeviceSpec, OpClass
from tpuplan.profiles.docio import StrictModel, load_doc

PROFILE_KIND: Final = "tpuplan.profile"
PROFILE_VERSION: Final = 1


class TensorInfo(StrictModel):
    index: int = Field(ge=0)
    name: str
    shape: list[int]
    dtype: str
    bytes: int = Field(ge=0)


class OpProfile(StrictModel):
    """One operator. Times are integer microseconds; `predicted_us` is a prediction, never measured."""

    index: int = Field(ge=0)
    op_type: str
    op_class: OpClass
    inputs: list[str]
    outputs: list[str]
    param_bytes: int = Field(ge=0, description="constant tensors first read by this op")
    param_shapes: list[list[int]] = Field(default_factory=list, description="shapes of those tensors")
    cached_bytes: int = Field(ge=0, description="param bytes as the Edge TPU compiler lays them out")
    macs: int = Field(ge=0)
    input_bytes: int = Field(ge=0)
    output_bytes: int = Field(ge=0)
    max_activation_bytes: int = Field(ge=0)
    edgetpu: bool
    edgetpu_reason: str = ""
    predicted_us: int = Field(ge=0)
    stream_us: int = Field(ge=0, description="extra time when this op's parameters are streamed")
    measured_us: float | None = None


class CutProfile(StrictModel):
    """Cut `index` lies between op `index` and op `index + 1`."""

    index: int = Field(ge=0)
    bytes: int = Field(ge=0)
    tensors: list[str]


class ModelRef(StrictModel):
    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Profile(StrictModel):
    kind: Literal["tpuplan.profile"] = PROFILE_KIND
    schema_version: Literal[1] = PROFILE_VERSION
    model: ModelRef
    device: DeviceSpec
    source: Literal["static", "measured"] = "static"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    input_bytes: int = Field(ge=0, description="bytes of the model's inputs (what enters stage 0)")
    output_bytes: int = Field(ge=0, description="bytes of the model's outputs")
    ops: list[OpProfile] = Field(min_length=1)
    cuts: list[CutProfile]
    measurement: dict[str, float | int | str] | None = None

    @property
    def param_bytes(self) -> int:
        return sum(op.param_bytes for op in self.ops)


def load_profile(path: Path) -> Profile:
    return load_doc(Path(path), Profile, kind=PROFILE_KIND, version=PROFILE_VERSION)
