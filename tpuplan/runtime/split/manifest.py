"""The segment manifest: what `plan split` wrote, so `plan run` can load and route the segments.

A manifest may come from anywhere, so every file it names must resolve inside its own directory and
match the recorded sha256: it can never make the runner open /etc/passwd or ../../x.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, Field, model_validator

from tpuplan.profiles.docio import StrictModel, load_doc, read_bytes
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_COUNT, Bytes, Count, Dim, Real
from tpuplan.profiles.state import copied_state, model_state
from tpuplan.profiles.tflite.reader import parse_model
from tpuplan.runtime.split.compiler import CompilerReport

MANIFEST_KIND: Final = "tpuplan.manifest"
MANIFEST_VERSION: Final = 1
MANIFEST_NAME = "manifest.json"
_SHA256_LEN = 64


def _check_relative(name: str) -> str:
    """A plain relative file name: no absolute path, no '..', no backslash or drive tricks."""
    if not name or "\\" in name or "\x00" in name:
        raise ValueError(f"file name {name!r} is not a plain relative path")
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts) or ":" in pure.parts[0]:
        raise ValueError(f"file name {name!r} must stay inside the manifest directory")
    return name


def _check_sha(value: str) -> str:
    if len(value) != _SHA256_LEN or any(c not in "0123456789abcdef" for c in value):
        raise ValueError("must be 64 lowercase hex digits")
    return value


RelativeName = Annotated[str, AfterValidator(_check_relative)]
Sha256 = Annotated[str, AfterValidator(_check_sha)]


class TensorSpec(StrictModel):
    """A tensor crossing a segment boundary; shape as the interpreter reports it after allocation."""

    name: str = Field(min_length=1, max_length=10_000)
    shape: list[Dim] = Field(max_length=8)
    dtype: str = Field(max_length=40)
    scale: Real | None = None  # per-tensor quantisation; null when float or per-channel
    zero_point: int | None = Field(None, ge=-(2**31), le=2**31 - 1)


class CompiledEntry(StrictModel):
    """The Edge TPU compiler's output for a segment and how it compares with the plan's prediction."""

    file: RelativeName
    sha256: Sha256
    report: CompilerReport
    warnings: list[str] = Field(default_factory=list)


class SegmentEntry(StrictModel):
    index: Count
    file: RelativeName
    first_op: Count
    last_op: Count
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    bytes: Bytes
    sha256: Sha256
    copies: int = Field(1, ge=1, le=64, description="devices that run this segment, taking inputs in turn (the plan's)")
    device: str | None = Field(None, max_length=200, description="the device the plan gave this segment")
    compiled: CompiledEntry | None = None


class ModelRef(StrictModel):
    path: str
    sha256: Sha256
    num_ops: int = Field(ge=1, le=MAX_COUNT)
    inputs: list[str] = Field(description="the model's input tensor names, in model order")
    outputs: list[str] = Field(description="the model's output tensor names, in model order")


class SegmentManifest(StrictModel):
    """Versioned description of a split: the source model, the cuts, and every segment file."""

    kind: Literal["tpuplan.manifest"] = MANIFEST_KIND
    schema_version: Literal[1] = MANIFEST_VERSION
    model: ModelRef
    plan_sha256: Sha256 | None = None  # sha256 of the plan file's bytes when split from a plan
    compiler_args: list[str] | None = Field(
        None,
        max_length=16,
        description="flags given to edgetpu_compiler besides -s -o (plan split --compiler-args); null: not compiled",
    )
    cuts: list[Count]
    segments: list[SegmentEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> SegmentManifest:
        """Segments must be numbered in order and tile the model exactly as the cuts say."""
        expected_first = 0
        for i, seg in enumerate(self.segments):
            if seg.index != i:
                raise ValueError(f"segment {i} has index {seg.index}")
            if seg.first_op != expected_first or seg.last_op < seg.first_op:
                raise ValueError(f"segment {i} covers ops {seg.first_op}..{seg.last_op}, not contiguous")
            expected_first = seg.last_op + 1
        if expected_first != self.model.num_ops:
            raise ValueError(f"segments end at op {expected_first - 1}, the model has {self.model.num_ops}")
        if self.cuts != [seg.last_op for seg in self.segments[:-1]]:
            raise ValueError(f"cuts {self.cuts} do not match the segments")
        names = [s.file for s in self.segments] + [s.compiled.file for s in self.segments if s.compiled]
        if len(set(names)) != len(names):
            raise ValueError("two segments name the same file")
        self._check_routes()
        return self

    def _check_routes(self) -> None:
        """Every tensor a segment reads is a model input or written by an earlier segment, and every model
        output is written: a manifest edited apart from its segments cannot route a run."""
        available = set(self.model.inputs)
        for seg in self.segments:
            missing = [t.name for t in seg.inputs if t.name not in available]
            if missing:
                raise ValueError(
                    f"segment {seg.index} reads {missing[0]!r}, which no earlier segment writes and "
                    "the model does not take"
                )
            available.update(t.name for t in seg.outputs)
        lost = [name for name in self.model.outputs if name not in available]
        if lost:
            raise ValueError(f"model output {lost[0]!r} is written by no segment")


@dataclass(frozen=True)
class LoadedSplit:
    """A split read from disk once: its manifest and the bytes of the file each stage runs."""

    directory: Path
    manifest: SegmentManifest
    contents: list[bytes]  # per segment: the CPU file, or the Edge TPU compiler's when `compiled`
    compiled: bool

    def where(self, index: int) -> str:
        seg = self.manifest.segments[index]
        name = seg.compiled.file if self.compiled and seg.compiled is not None else seg.file
        return str(self.directory / name)


def _read_checked(directory: Path, name: str, sha256: str) -> bytes:
    """The bytes of a file the manifest names: inside the directory and unchanged since splitting."""
    path = resolve_inside(directory, name)
    if not os.path.lexists(path):
        raise TpuplanError(f"{directory / MANIFEST_NAME}: segment file {name!r} is missing")
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file"
        raise TpuplanError(f"{directory / MANIFEST_NAME}: segment file {name!r} is {what}")
    data = read_bytes(path, what="segment file")
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise TpuplanError(
            f"{path}: sha256 {got} does not match the manifest ({sha256}); the file changed after splitting"
        )
    return data


def read_manifest(directory: Path) -> SegmentManifest:
    directory = Path(directory)
    if not directory.is_dir():
        raise TpuplanError(f"{directory}: not a directory (expected the output of `plan split`)")
    return load_doc(directory / MANIFEST_NAME, SegmentManifest, kind=MANIFEST_KIND, version=MANIFEST_VERSION)


def load_split(directory: Path, *, compiled: bool = False) -> LoadedSplit:
    """Read DIR/manifest.json and every file it records, each once and checked against its sha256 (a folder
    copied to another machine is verified as a whole); keep the bytes of the files a run needs: the CPU
    segments, or with `compiled` the Edge TPU compiler's. The compiler is never needed here."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    contents = []
    for seg in manifest.segments:
        cpu = _read_checked(directory, seg.file, seg.sha256)
        tpu = _read_checked(directory, seg.compiled.file, seg.compiled.sha256) if seg.compiled else None
        if compiled and tpu is None:
            raise TpuplanError(_not_compiled(directory, seg))
        contents.append(tpu if compiled and tpu is not None else cpu)
    _refuse_state_copies(directory, manifest, contents, compiled)
    return LoadedSplit(directory, manifest, contents, compiled)


def _not_compiled(directory: Path, seg: SegmentEntry) -> str:
    """Why an Edge TPU run cannot use a segment: the manifest records no compiled file for it."""
    said = f"{directory / MANIFEST_NAME}: segment {seg.index} ({seg.file}) was not compiled for the Edge TPU"
    beside = PurePosixPath(seg.file).stem + "_edgetpu.tflite"
    if (directory / beside).is_file():
        return (
            f"{said}: {beside} lies beside it but the manifest does not record it (no sha256 to check it "
            "against); split with `plan split --compile` and copy the whole folder"
        )
    return f"{said}: split with `plan split --compile` (edgetpu_compiler runs on x86-64 Linux) and copy the folder here"


def _refuse_state_copies(directory: Path, manifest: SegmentManifest, contents: list[bytes], compiled: bool) -> None:
    """A segment run on several copies must hold no state of its own (each copy would keep its own)."""
    for seg in manifest.segments:
        if seg.copies == 1:
            continue
        data = contents[seg.index] if not compiled else _read_checked(directory, seg.file, seg.sha256)
        loops = model_state(parse_model(data, Path(seg.file)))
        why = copied_state(loops, [(0, seg.last_op - seg.first_op)], [seg.copies])
        if why:
            raise TpuplanError(
                f"{directory / MANIFEST_NAME}: segment {seg.index}: {why.split(': ', 1)[1]}; split it again "
                "from a new plan (the planner never copies a stage that holds state)"
            )


def resolve_inside(directory: Path, name: str) -> Path:
    """Path of `name` in `directory`, refusing anything (symlinks too) that resolves outside it."""
    try:
        _check_relative(name)
    except ValueError as exc:
        raise TpuplanError(f"{directory / MANIFEST_NAME}: {exc}") from None
    root = Path(directory).resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(root) or target == root:
        raise TpuplanError(f"{directory / MANIFEST_NAME}: {name!r} resolves outside {directory}")
    return target


def load_manifest(directory: Path) -> SegmentManifest:
    """Read DIR/manifest.json and check that every segment (and compiled) file is inside DIR and intact."""
    return load_split(directory).manifest
