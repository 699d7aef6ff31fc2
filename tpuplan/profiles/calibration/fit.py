"""Fit the Edge TPU DeviceSpec and one HostSpec per pipeline runner to real measurements.

The data are single-TPU sweeps (one `invoke()` per row: the one-segment plan's device + host-op time)
and pipelines (a runner, a batch, a split), read by `profiles.calibration.measurements`. Every row's model is
written with `profiles.synth` and profiled with `build_profile`. The fit has two parts:
`profiles.calibration.memory` (layout, inferred cuts, caching capacity) and `profiles.calibration.timing` (the
time parameters of device and runners, jointly). Every number reported afterwards is the planner's own:
each row is priced by `stage_table` and `pipeline_cost` (what planner.costs adds the objective to) on the
fitted specs, so the fit checks the whole chain.

The float->int8 QUANTIZE at the model input runs on the host, priced by the host's `host_ops` (kept as
the base host has them: ~20 us for the conv models' 48 KiB float input), and the first stage's Edge TPU
input is the int8 tensor. The data show a few hundred microseconds more for a conv first stage than
that; the fit can only spread it over the shared device parameters (mostly the conv per-KiB output
cost, a lower invoke overhead and a lower pycoral stage_us), which costs the conv files about half a
point of median error against pricing the float input like the link does (the research's model).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Final, Literal

import numpy as np
from pydantic import Field

from tpuplan.profiles.build import price
from tpuplan.profiles.calibration.measurements import MeasuredFile, Measurement
from tpuplan.profiles.calibration.memory import (
    MIB,
    TOL_MIB,
    LayoutFit,
    RowMemory,
    Segment,
    cached_mask,
    fit_capacity,
    fit_layout,
    layout_bytes,
    model_geometry,
    stage_bounds,
)
from tpuplan.profiles.calibration.timing import (
    COVERED,
    ParamSpace,
    RowTerms,
    TimeModel,
    fit_times,
    stage_terms,
)
from tpuplan.profiles.docio import StrictModel, load_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_BATCH, Count, Rate, Share
from tpuplan.profiles.model import OpProfile
from tpuplan.profiles.pricing.device import OP_CLASSES, Calibration, DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.stagecost import StagePricer
from tpuplan.profiles.pricing.tables import StageCostTable, pipeline_cost, stage_table

RESERVED = frozenset({"device", "link", *OP_CLASSES})  # parameter groups of the device


class CalibrationPoint(StrictModel):
    """One measured row beside the planner's prediction for it on the fitted specs."""

    file: str
    family: str
    x: Count
    runner: str | None = Field(description="the pipeline runner; None: one invoke() of the one-segment model")
    batch: int = Field(ge=1, le=MAX_BATCH)
    cuts: list[Count] = Field(description="op ending each stage but the last")
    cuts_inferred: bool
    measured_ms: Rate
    predicted_ms: Rate = Field(description="PREDICTED: stage_table + totals on the fitted specs")
    rel_error: Rate = Field(description="|predicted - measured| / measured")
    bound: str = Field(description="what sets the predicted period: stage, serialized, bus (single: one invoke)")
    measured_onchip_mib: list[Rate]
    predicted_onchip_mib: list[Rate]
    measured_offchip_mib: list[Rate]
    predicted_offchip_mib: list[Rate]
    memory_ok: bool = Field(description="every segment's on- and off-chip MiB within 0.1 MiB of the report")


class FileSummary(StrictModel):
    file: str
    runner: str | None
    batch: int = Field(ge=1, le=MAX_BATCH)
    rows: Count
    median_rel_error: Rate
    p90_rel_error: Rate
    worst_rel_error: Rate
    memory_within_0_1_mib: Share


CALIBRATION_KIND: Final = "tpuplan.calibration"
CALIBRATION_VERSION: Final = 1


class CalibrationResult(StrictModel):
    """The fitted device, the fitted runner of every pipeline file (by runner name), and the points."""

    kind: Literal["tpuplan.calibration"] = CALIBRATION_KIND
    schema_version: Literal[1] = CALIBRATION_VERSION
    device: DeviceSpec
    hosts: dict[str, HostSpec]
    files: list[FileSummary]
    points: list[CalibrationPoint]


def load_calibration(path: Path) -> CalibrationResult:
    """A `plan calibrate --json` result read back, checked like every document."""
    return load_doc(path, CalibrationResult, kind=CALIBRATION_KIND, version=CALIBRATION_VERSION)


@dataclass(frozen=True)
class _Row:
    """A measured row with its file's run and the cut list it is priced with."""

    file: MeasuredFile
    m: Measurement
    cuts: tuple[int, ...]
    inferred: bool


def _runner_hosts(files: Sequence[MeasuredFile], hosts: Mapping[str, HostSpec]) -> dict[str, HostSpec]:
    """The base spec of every runner named by a file, with `fresh_upload` as the files say (files are
    reported by name, and runners share the parameter names of the device's groups: both must differ)."""
    out: dict[str, HostSpec] = {}
    seen: set[str] = set()
    for f in files:
        if f.name in seen:
            raise TpuplanError(f"{f.name}: given twice (files are reported by name)")
        seen.add(f.name)
        name = f.run.runner
        if name is None:
            continue
        if name in RESERVED:
            raise TpuplanError(f"{f.name}: {name!r} cannot name a runner")
        if name not in hosts:
            raise TpuplanError(f"{f.name}: no host spec given for runner {name!r}")
        spec = hosts[name].model_copy(update={"fresh_upload": f.run.fresh})
        if out.get(name, spec).fresh_upload != spec.fresh_upload:
            raise TpuplanError(f"{f.name}: runner {name!r} is fresh in one file and not in another")
        out[name] = spec
    return out


def _rows(files: Sequence[MeasuredFile], device: DeviceSpec | None) -> tuple[list[_Row], LayoutFit]:
    """Every row with its cuts, given or inferred from the memory columns, and the layout they were
    inferred with: `device`'s, or the one fitted along with the cuts when None."""
    mem, given = [], []
    for f in files:
        if f.run.runner is None and f.sweep.segments > 1:
            raise TpuplanError(
                f"{f.name}: {f.sweep.segments} segments per row is a pipeline file; give it "
                "as --pipeline FILE:RUNNER:BATCH"
            )
        for m in f.sweep.rows:
            geo = model_geometry(m.family, m.x)
            where = f"{f.name}:{m.line}"
            cuts = (
                [geo.check_cuts(f.run.cuts, m.segments, where)]
                if f.run.cuts is not None
                else (geo.candidate_cuts(m.segments))
            )
            if not cuts or any(not geo.tpu_ops(a, b) for c in cuts for a, b in stage_bounds(c, geo.n)):
                raise TpuplanError(f"{where}: no split of the {geo.n}-op model into {m.segments} Edge TPU stages")
            mem.append(RowMemory(m.family, m.x, m.onchip_mib, m.offchip_mib, cuts))
            given.append(f.run.cuts is not None or m.segments == 1)
    layout = fit_layout(mem, device)
    pairs = [(f, m) for f in files for m in f.sweep.rows]
    return [_Row(f, m, c, not g) for (f, m), c, g in zip(pairs, layout.cuts, given, strict=True)], layout


def _fit_memory(rows: list[_Row], layout: LayoutFit, base: DeviceSpec) -> DeviceSpec:
    """The base with the fitted layout and the capacity fitted to every segment of the rows."""
    dev = base.model_copy(
        update={
            "channel_pad": layout.channel_pad,
            "input_pad": layout.input_pad,
            "per_channel_bytes": layout.per_channel_bytes,
        }
    )
    segs = []
    for r in rows:
        geo = model_geometry(r.m.family, r.m.x)
        lay = layout_bytes(geo.profile, dev)
        for s, (a, b) in enumerate(stage_bounds(r.cuts, geo.n)):
            layers = tuple(int(lay[j]) for j in geo.tpu_ops(a, b) if lay[j] > 0)
            segs.append(Segment(layers, geo.io_bytes(a, b), r.m.onchip_mib[s], r.m.offchip_mib[s]))
    cap = fit_capacity(segs)
    return dev.model_copy(
        update={
            "onchip_bytes": cap.onchip_bytes,
            "io_reserve_frac": cap.io_reserve_frac,
            "max_cached_layer_bytes": cap.max_cached_layer_bytes,
        }
    )


@lru_cache(maxsize=1024)
def _pricer(family: str, x: int, device_json: str, host_json: str) -> tuple[StagePricer, list[OpProfile]]:
    """The planner's pricer of a measured model and its priced ops (cached: rows share models and specs)."""
    dev, host = DeviceSpec.model_validate_json(device_json), HostSpec.model_validate_json(host_json)
    priced = price(model_geometry(family, x).profile, dev, host)
    return StagePricer(priced, dev, host), priced.ops


def _row_terms(row: _Row, space: ParamSpace, device: DeviceSpec, host: HostSpec, n_file: int) -> RowTerms:
    """The row's stages as linear forms; the streamed layers are the rule's, checked against the pricer's
    own on-/off-chip bytes."""
    pricer, priced = _pricer(row.m.family, row.m.x, device.model_dump_json(), host.model_dump_json())
    stages = []
    for a, b in stage_bounds(row.cuts, pricer.n):
        full = pricer.row(a)
        entry = {
            k: int(full[k][b - a])
            for k in ("tpu_in", "tpu_out", "seg_in", "seg_out", "host_ops", "on", "off", "bus_bytes")
        }
        tpu = [bool(t) for t in pricer.placement(a)[: b - a + 1]]
        sizes = [priced[a + j].cached_bytes if t else 0 for j, t in enumerate(tpu)]
        budget = int(np.floor(device.onchip_bytes - device.io_reserve_frac * (entry["tpu_in"] + entry["tpu_out"])))
        kept = cached_mask(sizes, budget, device.max_cached_layer_bytes)
        on = sum(s for s, k in zip(sizes, kept, strict=True) if k)
        if (on, sum(sizes) - on) != (entry["on"], entry["off"]):
            raise TpuplanError(f"calibrate: caching of {row.file.name}:{row.m.line} differs from the pricer's")
        streamed = [s > 0 and not k for s, k in zip(sizes, kept, strict=True)]
        stages.append(stage_terms(space, priced[a : b + 1], tpu, streamed, entry, row.file.run.runner))
    return RowTerms(stages, row.file.run.runner, row.file.run.batch, row.m.ms * 1000, 1 / np.sqrt(n_file))


def _time_model(
    rows: Sequence[_Row], device: DeviceSpec, runners: Mapping[str, HostSpec], single: HostSpec
) -> TimeModel:
    space = ParamSpace(list(runners.items()), device)
    sizes = Counter(r.file.name for r in rows)
    return TimeModel(
        space,
        [_row_terms(r, space, device, runners.get(r.file.run.runner or "", single), sizes[r.file.name]) for r in rows],
    )


def time_features(
    files: Sequence[MeasuredFile], device: DeviceSpec, hosts: Mapping[str, HostSpec], sweep_host: HostSpec | None = None
) -> tuple[TimeModel, np.ndarray]:
    """The linear time model of every row on (fitted) specs, and the parameter values those specs hold:
    `model.evaluate(theta)[0]` is what the planner predicts for each row before it rounds every stage
    term up to whole microseconds (the test of the fit's features)."""
    runners = _runner_hosts(files, hosts)
    model = _time_model(_rows(files, device)[0], device, runners, _sweep_host(runners, sweep_host))
    return model, _base_theta(model.space, device, runners)


def _apply(
    theta: np.ndarray, space: ParamSpace, used: np.ndarray, device: DeviceSpec, hosts: Mapping[str, HostSpec]
) -> tuple[DeviceSpec, dict[str, HostSpec]]:
    """The specs the parameters describe: fitted op classes and link marked calibrated, the rest kept."""
    val = {(p.group, p.field): round(float(v), 4) for p, v, u in zip(space.params, theta, used, strict=True) if u}
    costs = {c: oc.model_copy(update={"calibrated": False}) for c, oc in device.op_costs.items()}
    for c in COVERED:  # the fit prices these classes with no per-op constant and (fc) no activation term
        fields = {f: v for (g, f), v in val.items() if g == c}
        if fields:
            fixed = {"us_per_op": 0.0, "us_per_kib_act": 0.0}
            costs[c] = device.cost(c).model_copy(update={**fixed, **fields, "calibrated": True})
    link = {f: v for (g, f), v in val.items() if g == "link"}
    dev = device.model_copy(
        update={
            "invoke_overhead_us": val.get(("device", "invoke_overhead_us"), device.invoke_overhead_us),
            "link": device.link.model_copy(update={**link, "calibrated": "in_us_per_kib" in link}),
            "op_costs": costs,
        }
    )
    out = {name: h.model_copy(update={f: v for (g, f), v in val.items() if g == name}) for name, h in hosts.items()}
    return dev, out


def _base_theta(space: ParamSpace, device: DeviceSpec, hosts: Mapping[str, HostSpec]) -> np.ndarray:
    """The base specs' value of every parameter (what an unused one keeps)."""

    def value(group: str, field: str) -> float:
        if group in hosts:
            return float(getattr(hosts[group], field))
        owner = device if group == "device" else device.link if group == "link" else device.cost(group)
        return float(getattr(owner, field))

    return np.array([value(p.group, p.field) for p in space.params])


@lru_cache(maxsize=1024)
def _table(family: str, x: int, device_json: str, host_json: str) -> StageCostTable:
    dev, host = DeviceSpec.model_validate_json(device_json), HostSpec.model_validate_json(host_json)
    return stage_table(model_geometry(family, x).profile, dev, host)


def _point(row: _Row, device: DeviceSpec, host: HostSpec) -> CalibrationPoint:
    """The planner's own prediction of one row: the stage table of the fitted specs, then the planner's
    totals (a pipeline) or the one stage's device + host-op time (one invoke, no runner)."""
    m, run = row.m, row.file.run
    table = _table(m.family, m.x, device.model_dump_json(), host.model_dump_json())
    parts = [table.stage_parts(a, b) for a, b in stage_bounds(row.cuts, table.n)]
    if run.runner is None:
        us, bound = float(parts[0].invoke_us), "single"
    else:
        cost = pipeline_cost([table] * len(parts), row.cuts)
        us, bound = cost.per_input_us(run.batch), cost.bound
    on = [p.onchip_bytes / MIB for p in parts]
    off = [p.offchip_bytes / MIB for p in parts]
    ok = all(abs(a - b) <= TOL_MIB for a, b in zip(on + off, m.onchip_mib + m.offchip_mib, strict=True))
    return CalibrationPoint(
        file=row.file.name,
        family=m.family,
        x=m.x,
        runner=run.runner,
        batch=run.batch,
        cuts=list(row.cuts),
        cuts_inferred=row.inferred,
        measured_ms=m.ms,
        predicted_ms=us / 1000,
        rel_error=round(abs(us / 1000 - m.ms) / m.ms, 6),
        bound=bound,
        measured_onchip_mib=list(m.onchip_mib),
        predicted_onchip_mib=[round(v, 4) for v in on],
        measured_offchip_mib=list(m.offchip_mib),
        predicted_offchip_mib=[round(v, 4) for v in off],
        memory_ok=ok,
    )


def _sweep_host(runners: Mapping[str, HostSpec], given: HostSpec | None) -> HostSpec:
    """The host whose `host_ops` price the single-TPU rows' host ops: the one given, else the first
    runner's (the same machine), else the default host."""
    return given or next(iter(runners.values()), None) or resolve_host(None)


def predict(
    files: Sequence[MeasuredFile],
    device: DeviceSpec,
    hosts: Mapping[str, HostSpec],
    *,
    sweep_host: HostSpec | None = None,
) -> list[CalibrationPoint]:
    """Every row of `files` priced on given specs (cuts not given are inferred with the device's layout):
    how fitted specs do on files they were not fitted to."""
    runners = _runner_hosts(files, hosts)
    single = _sweep_host(runners, sweep_host)
    return [_point(r, device, runners.get(r.file.run.runner or "", single)) for r in _rows(files, device)[0]]


def summarise(points: Sequence[CalibrationPoint]) -> list[FileSummary]:
    """Per file: rows, median / p90 / worst relative error, share of rows with every MiB within 0.1."""
    out = []
    for name in dict.fromkeys(p.file for p in points):
        pts = [p for p in points if p.file == name]
        err = [p.rel_error for p in pts]
        out.append(
            FileSummary(
                file=name,
                runner=pts[0].runner,
                batch=pts[0].batch,
                rows=len(pts),
                median_rel_error=round(statistics.median(err), 4),
                p90_rel_error=round(float(np.percentile(err, 90)), 4),
                worst_rel_error=round(max(err), 4),
                memory_within_0_1_mib=round(sum(p.memory_ok for p in pts) / len(pts), 4),
            )
        )
    return out


def _calibration(files: Sequence[MeasuredFile], summary: Sequence[FileSummary]) -> Calibration:
    names = {f.name for f in files}
    part = [s for s in summary if s.file in names]
    how = {
        f.name: "one invoke per row"
        if f.run.runner is None
        else f"runner {f.run.runner}, batch {f.run.batch}{', fresh' if f.run.fresh else ''}"
        for f in files
    }
    return Calibration(
        source="plan calibrate on " + "; ".join(f"{f.name} ({how[f.name]}; sha256 {f.sweep.sha256})" for f in files),
        points=sum(s.rows for s in part),
        median_rel_error={s.file: s.median_rel_error for s in part},
        worst_rel_error={s.file: s.worst_rel_error for s in part},
        memory_within_0_1_mib={s.file: s.memory_within_0_1_mib for s in part},
    )


def calibrate(
    files: Sequence[MeasuredFile],
    base: DeviceSpec,
    hosts: Mapping[str, HostSpec] | None = None,
    *,
    sweep_host: HostSpec | None = None,
) -> CalibrationResult:
    """Fit the device (from `base`: its name and the op classes the data lack) and the runner of every
    pipeline file (from `hosts[runner]`: structure and host_ops), then price every row on the result."""
    if not files or base.backend != "edgetpu":
        raise TpuplanError(f"calibrate: needs measurement files and an Edge TPU base device (got {base.name!r})")
    runners = _runner_hosts(files, hosts or {})
    single = _sweep_host(runners, sweep_host)
    rows, layout = _rows(files, None)
    dev = _fit_memory(rows, layout, base)
    model = _time_model(rows, dev, runners, single)
    used = model.used()
    theta = fit_times(model, used, _base_theta(model.space, dev, runners))
    device, fitted = _apply(theta, model.space, used, dev, runners)
    points = [_point(r, device, fitted.get(r.file.run.runner or "", single)) for r in rows]
    summary = summarise(points)
    device = device.model_copy(update={"calibration": _calibration(files, summary)})
    fitted = {
        name: h.model_copy(update={"calibration": _calibration([f for f in files if f.run.runner == name], summary)})
        for name, h in fitted.items()
    }
    return CalibrationResult(device=device, hosts=fitted, files=summary, points=points)
