"""Write a split to disk: segment files + manifest.json as one directory that appears whole or not at all.

Splitting may end in the Edge TPU compiler, which can fail half way; building in a temporary sibling
directory and renaming it into place means a failure never leaves a directory that looks usable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tpuplan.compat import zip_strict
from tpuplan.planner.matching import check_plan_matches
from tpuplan.planner.plan import Plan, plan_digest
from tpuplan.profiles.docio import dump_json, path_text
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.state import copied_state, model_state
from tpuplan.profiles.tflite.reader import LoadedModel, dtype_name, sha256_of, tensor_name, tensor_shape
from tpuplan.runtime.backends.probe import probe_models
from tpuplan.runtime.backends.registry import new_interpreter
from tpuplan.runtime.progress import Progress
from tpuplan.runtime.split.compiler import COMPILER_INSTALL_HINT, compile_segment, find_compiler
from tpuplan.runtime.split.cut import Segment, segment_file_name, split_model, validate_cuts
from tpuplan.runtime.split.manifest import (
    MANIFEST_NAME,
    CompiledEntry,
    ModelRef,
    SegmentEntry,
    SegmentManifest,
    TensorSpec,
)

PREDICTION_TOLERANCE_BYTES = round(0.3 * 2**20)  # compiler vs plan on-chip/off-chip: beyond this, warn


def _specs(loaded: LoadedModel, seg: Segment) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Boundary tensors as the interpreter sees them after allocate_tensors (some output shapes, e.g.
    of TFLite_Detection_PostProcess, are [] in the file); the file's facts if no interpreter loads it."""
    by_name = {tensor_name(t): t for t in loaded.subgraph.tensors}
    details: dict[str, dict[str, Any]] = {}
    try:  # shapes only: no XNNPACK delegate (and no banner on stderr)
        interp = new_interpreter(seg.data, f"segment {seg.index}", default_delegates=False)
        interp.allocate_tensors()
        for d in [*interp.get_input_details(), *interp.get_output_details()]:
            details[str(d["name"])] = d
    except (TpuplanError, ValueError, RuntimeError):
        details = {}

    def spec(name: str) -> TensorSpec:
        t = by_name[name]
        q = t.quantization
        scales = list(q.scale) if q is not None and q.scale is not None else []
        zeros = list(q.zeroPoint) if q is not None and q.zeroPoint is not None else []
        shape = [int(x) for x in details[name]["shape"]] if name in details else tensor_shape(t)
        single = len(scales) == 1 and len(zeros) == 1
        return TensorSpec(
            name=name,
            shape=shape,
            dtype=dtype_name(t),
            scale=float(scales[0]) if single else None,
            zero_point=int(zeros[0]) if single else None,
        )

    return [spec(n) for n in seg.inputs], [spec(n) for n in seg.outputs]


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _compile(
    tmp: Path, entry: SegmentEntry, predicted: tuple[int | None, int | None] | None, args: Sequence[str]
) -> CompiledEntry:
    """Compile one segment in the staging directory and compare the compiler's bytes with the plan."""
    done = compile_segment(tmp / entry.file, tmp, args=args)
    report = done.report.model_copy(
        update={
            "input_model": Path(done.report.input_model).name,
            "output_model": Path(done.report.output_model).name,
            "operation_log": Path(done.report.operation_log).name if done.report.operation_log else None,
        }
    )
    warnings: list[str] = []
    if report.ops_on_cpu:
        warnings.append(f"{report.ops_on_cpu} of {report.total_ops} ops run on the CPU, not the Edge TPU")
    on_pred, off_pred = predicted if predicted is not None else (None, None)
    pairs = (("on-chip", report.onchip_bytes, on_pred), ("off-chip", report.offchip_bytes, off_pred))
    for label, got, want in pairs:
        if want is not None and abs(got - want) > PREDICTION_TOLERANCE_BYTES:
            warnings.append(
                f"compiler {label} {got / 2**20:.2f} MiB differs from the plan's {want / 2**20:.2f} MiB "
                f"by more than 0.3 MiB"
            )
    data = (tmp / done.compiled.name).read_bytes()
    return CompiledEntry(file=done.compiled.name, sha256=sha256_of(data), report=report, warnings=warnings)


def _check_destination(out_dir: Path, force: bool, keep: Sequence[Path]) -> None:
    """An empty or missing directory, or with `force` an earlier split (a directory holding our manifest);
    never a directory that holds the working directory, the home directory or an input."""
    if not (out_dir.exists() or out_dir.is_symlink()):
        return
    if out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir()):
        return
    if not force:
        raise TpuplanError(
            f"{out_dir}: already exists and is not empty (--force, or force=True, replaces an earlier split)"
        )
    if out_dir.is_symlink() or not out_dir.is_dir() or not (out_dir / MANIFEST_NAME).is_file():
        raise TpuplanError(f"{out_dir}: exists and is not an earlier split (no {MANIFEST_NAME}); not replaced")
    target = out_dir.resolve()
    guarded = [Path.cwd().resolve(), Path.home().resolve(), *(p.resolve() for p in keep)]
    if target == Path(target.anchor) or any(g == target or g.is_relative_to(target) for g in guarded):
        raise TpuplanError(
            f"{out_dir}: refusing to replace a directory that holds the working directory, "
            "the home directory or the input files"
        )


def _sibling(out_dir: Path, tag: str) -> Path:
    """An unused hidden name next to out_dir (same filesystem, so rename is atomic), short whatever
    out_dir's name is: a directory named with 250 bytes must still get a staging sibling."""
    while True:
        candidate = out_dir.with_name(f".tpuplan-{secrets.token_hex(6)}.{tag}")
        if not (candidate.exists() or candidate.is_symlink()):
            return candidate


def _publish(tmp: Path, out_dir: Path) -> None:
    """Rename the finished staging directory into place, moving any old output aside first."""
    old: Path | None = None
    if out_dir.exists() or out_dir.is_symlink():
        old = _sibling(out_dir, "old")
        os.rename(out_dir, old)
    try:
        os.rename(tmp, out_dir)
    except OSError as exc:
        if old is not None:
            os.rename(old, out_dir)
        raise TpuplanError(f"{out_dir}: cannot move the split into place ({exc.strerror or exc})") from None
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def _entries(
    loaded: LoadedModel,
    segments: list[Segment],
    tmp: Path,
    plan: Plan | None,
    compile: Sequence[str] | None,
    progress: Progress | None = None,
) -> list[SegmentEntry]:
    """Write every segment into the staging directory (and compile it) and describe it."""
    stem = Path(loaded.path).stem
    entries = []
    for seg in segments:
        name = segment_file_name(stem, seg.index, len(segments))
        _write_file(tmp / name, seg.data)
        ins, outs = _specs(loaded, seg)
        entry = SegmentEntry(
            index=seg.index,
            file=name,
            first_op=seg.first_op,
            last_op=seg.last_op,
            inputs=ins,
            outputs=outs,
            bytes=len(seg.data),
            sha256=sha256_of(seg.data),
            copies=plan.stages[seg.index].copies if plan is not None else 1,
            device=plan.stages[seg.index].device if plan is not None else None,
        )
        if compile is not None:
            stage = plan.stages[seg.index] if plan is not None else None
            predicted = (stage.predicted_onchip_bytes, stage.predicted_offchip_bytes) if stage else None
            entry.compiled = _compile(tmp, entry, predicted, compile)
        entries.append(entry)
        if progress is not None:
            progress("writing segments", len(entries), len(segments))
    return entries


def _manifest(
    loaded: LoadedModel,
    cuts: list[int],
    entries: list[SegmentEntry],
    plan: Plan | None,
    compiler_args: Sequence[str] | None,
) -> SegmentManifest:
    sg = loaded.subgraph
    return SegmentManifest(
        model=ModelRef(
            path=path_text(Path(loaded.path).name),  # the file name only: the same split from any directory
            sha256=loaded.sha256,
            num_ops=len(sg.operators),
            inputs=[tensor_name(sg.tensors[int(i)]) for i in sg.inputs],
            outputs=[tensor_name(sg.tensors[int(i)]) for i in sg.outputs],
        ),
        plan_sha256=plan_digest(plan) if plan is not None else None,
        compiler_args=list(compiler_args) if compiler_args is not None else None,
        cuts=cuts,
        segments=entries,
    )


def split_cuts(loaded: LoadedModel, plan: Plan | None, cuts: Sequence[int] | None) -> list[int]:
    """The cuts of a plan made for this model, or explicit cuts; checked against the model."""
    if (plan is None) == (cuts is None):
        raise TpuplanError("split: give a plan or cuts, not both or neither")
    if plan is not None:
        check_plan_matches(plan, loaded)
        cuts = plan.cuts
    return validate_cuts(list(cuts or []), len(loaded.subgraph.operators))


def _require_runnable(loaded: LoadedModel, segments: Sequence[Segment]) -> None:
    """Every segment must load and run in the TFLite interpreter (in the probe's child process): a split
    whose segments cannot run is refused, not written. A model that cannot run here as a whole, such as one
    with a custom op this LiteRT lacks, can still be planned; only splitting and running it needs the op."""
    labels = [f"segment {seg.index}" for seg in segments]
    errors = probe_models([("model", loaded.data), *zip_strict(labels, (seg.data for seg in segments))])
    if "model" in errors:
        raise TpuplanError(
            f"{loaded.path}: the TFLite interpreter here cannot run this model ({errors['model']}); "
            "it can be planned, but its segments could not run, so none are written"
        )
    for label, seg in zip_strict(labels, segments):
        if label in errors:
            raise TpuplanError(
                f"{loaded.path}: {label} (ops {seg.first_op}..{seg.last_op}) does not load in the "
                f"TFLite interpreter ({errors[label]}); nothing written"
            )


def write_split(
    loaded: LoadedModel,
    out_dir: Path,
    *,
    plan: Plan | None = None,
    cuts: Sequence[int] | None = None,
    compile: bool = False,
    compiler_args: Sequence[str] = (),
    force: bool = False,
    progress: Progress | None = None,
) -> SegmentManifest:
    """Split the model by a plan (or explicit cuts) into out_dir: segment files + manifest.json, and with
    `compile` each segment's Edge TPU file beside it (`compiler_args` from `parse_compiler_args` passed on
    and recorded in the manifest), every file by name, so the folder can be copied to a Coral host as is.

    `force` replaces an earlier split only. Everything is built in a hidden sibling directory that is
    renamed into place at the end, so a failure (the compiler's, a full disk) leaves nothing behind.
    """
    out_dir = Path(out_dir)
    if compiler_args and not compile:
        raise TpuplanError("compiler arguments go with compiling (--compile)")
    if compile and find_compiler() is None:
        raise TpuplanError(COMPILER_INSTALL_HINT)
    chosen = split_cuts(loaded, plan, cuts)
    if plan is not None and any(st.copies > 1 for st in plan.stages):
        why = copied_state(
            model_state(loaded), [(st.first_op, st.last_op) for st in plan.stages], [st.copies for st in plan.stages]
        )
        if why:
            raise TpuplanError(f"{loaded.path}: {why}; solve again (the planner never copies a stage that holds state)")
    keep = [Path(loaded.path)]
    _check_destination(out_dir, force, keep)
    segments = split_model(loaded, chosen)
    if progress is not None:
        progress("probing segments", 0, 1)
    _require_runnable(loaded, segments)
    if progress is not None:
        progress("probing segments", 1, 1)
    created: list[Path] = []
    parent = out_dir.parent
    while not parent.exists():
        created.insert(0, parent)
        parent = parent.parent
    tmp: Path | None = None
    published = False
    try:
        for d in created:
            d.mkdir()
        tmp = _sibling(out_dir, "tmp")
        tmp.mkdir()  # honours the umask, unlike mkdtemp's 0700
        args = list(compiler_args) if compile else None
        manifest = _manifest(loaded, chosen, _entries(loaded, segments, tmp, plan, args, progress), plan, args)
        _write_file(tmp / MANIFEST_NAME, dump_json(manifest).encode())
        _check_destination(out_dir, force, keep)  # it may have appeared while we compiled
        _publish(tmp, out_dir)
        published = True
    except OSError as exc:
        raise TpuplanError(f"{out_dir}: cannot write the split ({exc.strerror or exc})") from None
    finally:
        if not published:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            for d in reversed(created):
                with contextlib.suppress(OSError):
                    d.rmdir()
    return manifest
