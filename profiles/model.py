"""The profile document: one entry per operator of subgraph 0, every activation tensor, the cuts.

A profile is the model as the planner sees it, priced for one device and one host: where each op runs
when the whole model is one compiled segment and why, its predicted time on the device and on the
host CPU (measured instead, when `plan profile --measure` timed it), and its parameters as the Edge
TPU compiler lays them out. Splitting can move ops between the device and the host (each segment is
compiled on its own); the planner works that out from `supported`, `inputs` and `outputs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Literal

from pydantic import Field, model_validator

from tpuplan.profiles.device import DeviceSpec, OpClass
from tpuplan.profiles.docio import StrictModel, load_doc

PROFILE_KIND: Final = "tpuplan.profile"
PROFILE_VERSION: Final = 2
BIG = 1 << 50  # bound of every byte and MAC count: sums of a few thousand stay exact in int64
SHAPE_DIM = Field(ge=-1, le=1 << 28)

CostSource = Literal["measured", "calibrated", "uncalibrated"]


class TensorInfo(StrictModel):
    index: int = Field(ge=0, le=1 << 31)
    name: str = Field(max_length=10_000)
    shape: list[int] = Field(max_length=8)
    dtype: str = Field(max_length=40)
    bytes: int = Field(ge=0, le=BIG)


class OpProfile(StrictModel):
    """One operator. Times are integer microseconds; a `*_us` is predicted unless named measured."""

    index: int = Field(ge=0, le=1 << 31)
    op_type: str = Field(max_length=200)
    op_class: OpClass
    inputs: list[str] = Field(description="activation tensors it reads")
    outputs: list[str]
    param_bytes: int = Field(ge=0, le=BIG, description="constant tensors first read by this op")
    param_shapes: list[list[int]] = Field(default_factory=list, description="shapes of those tensors")
    per_channel: bool = Field(False, description="its kernel is quantised per output channel")
    cached_bytes: int = Field(ge=0, le=BIG, description="param bytes as the Edge TPU compiler lays them out")
    macs: int = Field(ge=0, le=BIG)
    tpu_macs: int = Field(ge=0, le=BIG, description="MACs of the compiler's padded layout")
    input_bytes: int = Field(ge=0, le=BIG)
    output_bytes: int = Field(ge=0, le=BIG)
    max_activation_bytes: int = Field(ge=0, le=BIG)
    supported: bool = Field(description="the compiler can map this op on its own (rules R1-R6)")
    edgetpu: bool = Field(description="on the Edge TPU when the whole model is one compiled segment")
    edgetpu_reason: str = Field("", max_length=2000, description="why it runs on the host")
    tpu_us: int = Field(ge=0, le=BIG, description="predicted device time when on the device")
    tpu_cost: CostSource
    stream_us: int = Field(ge=0, le=BIG, description="extra device time when its parameters are streamed")
    host_us: int = Field(ge=0, le=BIG, description="host CPU time when on the host")
    host_cost: CostSource
    measured_us: float | None = Field(None, ge=0, le=1e9, description="measured on the CPU by `plan profile --measure`")


class CutProfile(StrictModel):
    """Cut `index` lies between op `index` and op `index + 1`."""

    index: int = Field(ge=0, le=1 << 31)
    bytes: int = Field(ge=0, le=BIG)
    tensors: list[str]


class ModelRef(StrictModel):
    path: str = Field(max_length=10_000)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0, le=BIG)


class Profile(StrictModel):
    kind: Literal["tpuplan.profile"] = PROFILE_KIND
    schema_version: Literal[2] = PROFILE_VERSION
    model: ModelRef
    device: DeviceSpec
    host: str = Field(max_length=200, description="the host spec that priced `host_us`")
    source: Literal["static", "measured"] = "static"
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    tensors: list[TensorInfo] = Field(description="every activation: model inputs and op outputs")
    input_bytes: int = Field(ge=0, le=BIG, description="bytes of the model's inputs (what enters stage 0)")
    output_bytes: int = Field(ge=0, le=BIG, description="bytes of the model's outputs")
    ops: list[OpProfile] = Field(min_length=1, max_length=100_000)
    cuts: list[CutProfile]
    measurement: dict[str, float | int | str] | None = None

    @property
    def param_bytes(self) -> int:
        return sum(op.param_bytes for op in self.ops)

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        """A profile edited by hand must still describe one model: ops in order, every cut there, every
        tensor an op reads made before it, outputs written once."""
        n = len(self.ops)
        if [op.index for op in self.ops] != list(range(n)):
            raise ValueError("ops must be numbered 0, 1, 2, ... in execution order")
        if [c.index for c in self.cuts] != list(range(n - 1)):
            raise ValueError(f"cuts must be numbered 0..{n - 2}, one between every two ops")
        known = {t.name for t in self.tensors}
        made = {t.name for t in self.inputs}
        for op in self.ops:
            missing = [t for t in op.inputs if t not in made]
            if missing:
                raise ValueError(f"op {op.index} reads {missing[0]!r} before any op writes it")
            twice = [t for t in op.outputs if t in made or t not in known]
            if twice:
                raise ValueError(f"op {op.index} writes {twice[0]!r}, which is written twice or not listed in tensors")
            made.update(op.outputs)
        return self


def load_profile(path: Path) -> Profile:
    return load_doc(Path(path), Profile, kind=PROFILE_KIND, version=PROFILE_VERSION)
