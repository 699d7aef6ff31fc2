"""The profile document: one entry per operator of subgraph 0, every activation tensor, the cuts.

A profile is the model as the planner sees it, priced for one device and one host: where each op runs
when the whole model is one compiled segment and why, its predicted time on the device and on the
host CPU (measured instead, when `plan profile --measure` timed it), and its parameters as the Edge
TPU compiler lays them out. Splitting can move ops between the device and the host (each segment is
compiled on its own); the planner works that out from `supported`, `inputs` and `outputs`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import Field, model_validator

from tpuplan.compat import zip_strict
from tpuplan.profiles.docio import StrictModel, load_doc
from tpuplan.profiles.limits import BIG as BIG  # re-exported: documents bound their sizes with it
from tpuplan.profiles.limits import MAX_COUNT, MAX_OP_US, Bytes, Dim, OpUs, Real
from tpuplan.profiles.pricing.device import DeviceSpec, OpClass

PROFILE_KIND: Final = "tpuplan.profile"
PROFILE_VERSION: Final = 2
Shape = Annotated[list[Dim], Field(max_length=8)]

CostSource = Literal["measured", "calibrated", "uncalibrated"]


class TensorInfo(StrictModel):
    index: int = Field(ge=0, le=MAX_COUNT)
    name: str = Field(max_length=10_000)
    shape: Shape
    dtype: str = Field(max_length=40)
    bytes: Bytes


class OpProfile(StrictModel):
    """One operator. Times are integer microseconds; a `*_us` is predicted unless named measured."""

    index: int = Field(ge=0, le=MAX_COUNT)
    op_type: str = Field(max_length=200)
    op_class: OpClass
    inputs: list[str] = Field(description="activation tensors it reads")
    outputs: list[str]
    param_bytes: int = Field(ge=0, le=BIG, description="constant tensors first read by this op")
    param_shapes: list[Shape] = Field(default_factory=list, max_length=10_000, description="shapes of those tensors")
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
    tpu_us: OpUs = Field(description="predicted device time when on the device")
    tpu_cost: CostSource
    stream_us: OpUs = Field(description="extra device time when its parameters are streamed")
    host_us: OpUs = Field(description="host CPU time when on the host")
    host_cost: CostSource
    measured_us: float | None = Field(
        None, ge=0, le=MAX_OP_US, description="measured on the CPU by `plan profile --measure`"
    )


class CutProfile(StrictModel):
    """Cut `index` lies between op `index` and op `index + 1`."""

    index: int = Field(ge=0, le=MAX_COUNT)
    bytes: Bytes
    tensors: list[str]


class ModelRef(StrictModel):
    path: str = Field(max_length=10_000)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0, le=BIG)


class MeasuredStage(StrictModel):
    """A stage's invoke timed alone on real hardware (`plan verify`): ops first_op..last_op compiled on
    their own, on the device and host named. A plan priced from this profile on that device and host keeps
    this time for that stage instead of predicting it (formula.measured_parts)."""

    device: str = Field(max_length=200, description="the device spec's name the plan ran it on")
    host: str = Field(max_length=200, description="the host spec's name")
    first_op: int = Field(ge=0, le=MAX_COUNT)
    last_op: int = Field(ge=0, le=MAX_COUNT)
    invoke_us: float = Field(ge=0, le=MAX_OP_US, description="MEASURED: median of the reports' times")
    reports: int = Field(1, ge=1, le=MAX_COUNT, description="how many reports timed it (counted once)")
    source: str = Field("", max_length=2000, description="which reports")


class StateLoop(StrictModel):
    """State one inference leaves for the next (`profiles.state`): ops first_op..last_op are in its loop,
    so a stage holding any of them waits, for the next input, until this one's state is made (its time
    counts towards the period) and is never copied (copies would each hold their own state)."""

    kind: Literal["variable", "resource", "pair"] = Field(
        description="variable tensors of an op, resource variables (VAR_HANDLE), or a model input fed "
        "back from a model output"
    )
    names: list[Annotated[str, Field(max_length=10_000)]] = Field(
        min_length=1, max_length=100_000, description="the tensors, the variable, or [input, output]"
    )
    first_op: int = Field(ge=0, le=MAX_COUNT)
    last_op: int = Field(ge=0, le=MAX_COUNT)
    together: bool = Field(description="its ops must stay in one stage (the state lives in one interpreter)")
    declared: bool = Field(False, description="given with --state, not found in the model")


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
    measurement: (
        dict[str, Annotated[int, Field(ge=-BIG, le=BIG)] | Real | Annotated[str, Field(max_length=1000)]] | None
    ) = None
    measured_stages: list[MeasuredStage] = Field(
        default_factory=list, max_length=100_000, description="stage times measured on hardware (plan verify)"
    )
    state: list[StateLoop] | None = Field(
        None, max_length=100_000, description="state carried between inferences (None: not looked for)"
    )

    @property
    def param_bytes(self) -> int:
        return sum(op.param_bytes for op in self.ops)

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        """A profile edited by hand must still describe one model: ops in order, every cut there, every
        tensor an op reads made before it, outputs written once, and every byte count the sum of the
        tensors it counts (a profile whose ops were reordered or whose sizes were edited is refused)."""
        n = len(self.ops)
        if [op.index for op in self.ops] != list(range(n)):
            raise ValueError("ops must be numbered 0, 1, 2, ... in execution order")
        if [c.index for c in self.cuts] != list(range(n - 1)):
            raise ValueError(f"cuts must be numbered 0..{n - 2}, one between every two ops")
        size = _tensor_sizes(self)
        made = {t.name for t in self.inputs}
        for op in self.ops:
            missing = [t for t in op.inputs if t not in made]
            if missing:
                raise ValueError(f"op {op.index} reads {missing[0]!r} before any op writes it")
            twice = [t for t in op.outputs if t in made or t not in size]
            if twice:
                raise ValueError(f"op {op.index} writes {twice[0]!r}, which is written twice or not listed in tensors")
            made.update(op.outputs)
            _check_op_bytes(op, size)
        if made != set(size):
            raise ValueError("tensors must list exactly the model's inputs and the ops' outputs")
        _check_cuts(self, size)
        seen = set()
        for m in self.measured_stages:
            key = (m.device, m.host, m.first_op, m.last_op)
            if not m.first_op <= m.last_op < n or key in seen:
                raise ValueError(
                    f"measured stage {m.first_op}..{m.last_op} on {m.device!r}: outside the ops or given twice"
                )
            seen.add(key)
        for loop in self.state or []:
            if not loop.first_op <= loop.last_op < n:
                raise ValueError(
                    f"state loop {loop.names[0]!r}: ops {loop.first_op}..{loop.last_op} are not ops of the model"
                )
        return self


def _tensor_sizes(profile: Profile) -> dict[str, int]:
    """Bytes of every activation by name; the model's inputs and outputs must be among them, same size."""
    size = {t.name: t.bytes for t in profile.tensors}
    if len(size) != len(profile.tensors):
        raise ValueError("two tensors have the same name")
    for role, infos, total in (
        ("input", profile.inputs, profile.input_bytes),
        ("output", profile.outputs, profile.output_bytes),
    ):
        for t in infos:
            if size.get(t.name) != t.bytes:
                raise ValueError(f"model {role} {t.name!r} is not listed in tensors with {t.bytes} bytes")
        if total != sum(t.bytes for t in infos):
            raise ValueError(f"{role}_bytes is {total}, but the model's {role}s hold {sum(t.bytes for t in infos)}")
    return size


def _check_op_bytes(op: OpProfile, size: dict[str, int]) -> None:
    ins = [size.get(t, 0) for t in op.inputs]
    outs = [size[t] for t in op.outputs]
    for what, got, want in (
        ("input_bytes", op.input_bytes, sum(ins)),
        ("output_bytes", op.output_bytes, sum(outs)),
        ("max_activation_bytes", op.max_activation_bytes, max([*ins, *outs], default=0)),
    ):
        if got != want:
            raise ValueError(f"op {op.index}: {what} is {got}, but its tensors hold {want}")
    if op.edgetpu and not op.supported:
        raise ValueError(f"op {op.index} is marked on the Edge TPU but not supported by it")


def _check_cuts(profile: Profile, size: dict[str, int]) -> None:
    """Cut i must carry exactly the tensors made at or before op i (or model inputs) and read after it."""
    first = {t.name: -1 for t in profile.inputs}
    last: dict[str, int] = {}
    for op in profile.ops:
        first.update((t, op.index) for t in op.outputs)
        last.update((t, op.index) for t in op.inputs)
    live: list[set[str]] = [set() for _ in profile.cuts]
    for t, end in last.items():
        for i in range(max(first[t], 0), min(end, len(profile.ops) - 1)):
            live[i].add(t)
    for cut, want in zip_strict(profile.cuts, live):
        if set(cut.tensors) != want or len(cut.tensors) != len(want):
            raise ValueError(f"cut {cut.index} does not list the {len(want)} tensor(s) live across it")
        held = sum(size[t] for t in want)
        if cut.bytes != held:
            raise ValueError(f"cut {cut.index}: bytes is {cut.bytes}, but the tensors live across it hold {held}")


def load_profile(path: Path) -> Profile:
    return load_doc(Path(path), Profile, kind=PROFILE_KIND, version=PROFILE_VERSION)
