"""Fit the Edge TPU devices and the hosts to real measurements from several sources at once.

A source is a file of measured rows and how they were taken (`RunSpec`): the device they ran on (USB 3.0
or PCIe), the host that ran them (a machine and, for a pipeline, its runner) and whether one invoke or a
pipeline was timed. The study's sweeps and pipelines (`calibration.measurements`) and the published
single-TPU times of real architectures (`calibration.published`) are sources alike: every row's model is
profiled with `build_profile` (a synthetic model of the study, or the real file), its stages priced by the
planner's own `StagePricer`, and every term of the cost formula becomes a linear form of the parameters
of `calibration.params` (`calibration.timing`). The fit then has two parts: the layout and caching, from
the compiler's memory reports (`calibration.memory`), and every time parameter jointly, each inside its
plausible range. Every number reported afterwards is the planner's own: each row priced by
`stage_table` and `pipeline_cost` on the fitted specs.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.profiles.calibration.fitrows import Row, Specs, file_rows, file_specs, fit_memory
from tpuplan.profiles.calibration.measurements import MeasuredFile, Measurement
from tpuplan.profiles.calibration.memory import (
    MIB,
    TOL_MIB,
    row_geometry,
    stage_bounds,
)
from tpuplan.profiles.calibration.params import (
    CHIP_PARAMS,
    LINK_PARAMS,
    MACHINE_PARAMS,
    Param,
    runner_params,
)
from tpuplan.profiles.calibration.paramspace import ParamSpace
from tpuplan.profiles.calibration.result import CalibrationPoint as CalibrationPoint
from tpuplan.profiles.calibration.result import CalibrationResult as CalibrationResult
from tpuplan.profiles.calibration.result import FileSummary as FileSummary
from tpuplan.profiles.calibration.result import ParamValue
from tpuplan.profiles.calibration.segments import PricedOps, priced, segment_forms
from tpuplan.profiles.calibration.specs import apply_params
from tpuplan.profiles.calibration.timing import RowTerms, TimeModel, fit_times, loss_of
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import Calibration, DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.profiles.pricing.plancost import pipeline_cost
from tpuplan.profiles.pricing.stagecost import StagePricer
from tpuplan.profiles.pricing.tables import stage_table

TILES = (0, 256, 512, 1024, 2048)  # output pixels per pass over a streamed layer: tried in turn


@lru_cache(maxsize=1024)
def _pricer(m: Measurement, device_json: str, host_json: str) -> tuple[StagePricer, PricedOps]:
    """The planner's pricer of a measured model and its priced ops with their output pixels (cached)."""
    dev, host = DeviceSpec.model_validate_json(device_json), HostSpec.model_validate_json(host_json)
    return priced(row_geometry(m).profile, dev, host)


def _row_terms(row: Row, space: ParamSpace, specs: Specs, weight: float, tile: int) -> RowTerms:
    """The row's stages as linear forms (`calibration.segments`)."""
    device, host = specs.devices[row.device], specs.hosts[row.host]
    pricer, ops = _pricer(row.m, device.model_dump_json(), host.model_dump_json())
    where = f"{row.file.name}:{row.m.line}"
    stages = [
        segment_forms(pricer, ops, space, (row.device, row.host), ab, tile, where)
        for ab in stage_bounds(row.cuts, pricer.n)
    ]
    run = row.file.run
    return RowTerms(stages, row.device, row.host, row.runner, run.batch, row.m.ms * 1000, weight)


def _time_model(rows: Sequence[Row], space: ParamSpace, specs: Specs, tile: int) -> TimeModel:
    sizes = Counter(r.file.name for r in rows)
    return TimeModel(space, [_row_terms(r, space, specs, 1 / np.sqrt(sizes[r.file.name]), tile) for r in rows])


def default_params(specs: Mapping[str, HostSpec]) -> list[Param]:
    """Every parameter of the fit: the chip's, the links', the machines' and each runner's."""
    return [*CHIP_PARAMS, *LINK_PARAMS, *MACHINE_PARAMS, *(p for n, h in specs.items() for p in runner_params(n, h))]


def _point(row: Row, device: DeviceSpec, host: HostSpec) -> CalibrationPoint:
    """The planner's own prediction of one row: the stage table of the fitted specs, then the planner's
    totals (a pipeline) or the one stage's invoke (one invoke, no runner)."""
    m, run = row.m, row.file.run
    table = _table(m, device.model_dump_json(), host.model_dump_json())
    parts = [table.stage_parts(a, b) for a, b in stage_bounds(row.cuts, table.n)]
    if run.runner is None:
        us, bound = float(parts[0].invoke_us), "single"
    else:
        cost = pipeline_cost([table] * len(parts), row.cuts)
        us, bound = cost.per_input_us(run.batch), cost.bound
    on = [p.onchip_bytes / MIB for p in parts]
    off = [p.offchip_bytes / MIB for p in parts]
    known = m.family != "model"
    ok = not known or all(abs(a - b) <= TOL_MIB for a, b in zip_strict(on + off, m.onchip_mib + m.offchip_mib))
    return CalibrationPoint(
        file=row.file.name,
        family=m.family if known else m.model.rsplit("/", 1)[-1],
        x=m.x,
        runner=run.runner,
        device_name=device.name,
        host_name=host.name,
        batch=run.batch,
        cuts=list(row.cuts),
        cuts_inferred=row.inferred,
        measured_ms=m.ms,
        predicted_ms=us / 1000,
        rel_error=round(abs(us / 1000 - m.ms) / m.ms, 6),
        bound=bound,
        measured_onchip_mib=list(m.onchip_mib) if known else [],
        predicted_onchip_mib=[round(v, 4) for v in on],
        measured_offchip_mib=list(m.offchip_mib) if known else [],
        predicted_offchip_mib=[round(v, 4) for v in off],
        memory_ok=ok,
    )


@lru_cache(maxsize=1024)
def _table(m: Measurement, device_json: str, host_json: str):  # type: ignore[no-untyped-def]
    dev, host = DeviceSpec.model_validate_json(device_json), HostSpec.model_validate_json(host_json)
    return stage_table(row_geometry(m).profile, dev, host)


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
        f.name: ("one invoke per row" if f.run.runner is None else f"runner {f.run.runner}, batch {f.run.batch}")
        + (", fresh" if f.run.fresh else "")
        for f in files
    }
    return Calibration(
        source=("plan calibrate on " + "; ".join(f"{f.name} ({how[f.name]}; sha256 {f.sweep.sha256})" for f in files))[
            :4000
        ],
        points=sum(s.rows for s in part),
        median_rel_error={s.file: s.median_rel_error for s in part},
        worst_rel_error={s.file: s.worst_rel_error for s in part},
        memory_within_0_1_mib={s.file: s.memory_within_0_1_mib for s in part},
    )


@dataclass(frozen=True)
class Fitted:
    """The outcome of one fit before it is reported: the specs, the parameter values and what was used."""

    devices: dict[str, DeviceSpec]
    hosts: dict[str, HostSpec]
    space: ParamSpace
    theta: np.ndarray
    used: np.ndarray
    loss: float


def fit_specs(
    files: Sequence[MeasuredFile],
    devices: Mapping[str, DeviceSpec],
    hosts: Mapping[str, HostSpec],
    *,
    params: Sequence[Param] | None = None,
    frozen: Mapping[str, float] | None = None,
    tiles: Sequence[int] = TILES,
    memory_from: Sequence[MeasuredFile] | None = None,
) -> Fitted:
    """The time parameters fitted to `files`, each parameter named in `frozen` held at its value there;
    the streaming tile tried over `tiles`. The layout and capacity of the chip are fitted to the memory
    reports of `memory_from` (the files themselves by default): the compiler's behaviour, not a time."""
    specs = file_specs(files, devices, hosts)
    base = specs.devices[next(iter(specs.devices))]
    rows, layout = file_rows(files, specs, None)
    if memory_from is not None:
        mem_specs = file_specs(memory_from, devices, hosts)
        mem_rows, layout = file_rows(memory_from, mem_specs, None)
        memory = fit_memory(mem_rows, layout, base)
        rows, _ = file_rows(files, specs, base.model_copy(update=memory))
    else:
        memory = fit_memory(rows, layout, base)
    sized = {n: d.model_copy(update=memory) if d.backend == "edgetpu" else d for n, d in specs.devices.items()}
    best: Fitted | None = None
    for tile in tiles:
        tiled = {n: d.model_copy(update={"stream_tile_pixels": tile}) for n, d in sized.items()}
        here = Specs(tiled, specs.hosts, specs.device_of, specs.host_of)
        runners = {n: h for n, h in specs.hosts.items() if any(f.run.runner == n for f in files)}
        space = ParamSpace(params or default_params(runners), tiled, specs.hosts)
        model = _time_model(rows, space, here, tile)
        low, high = space.bounds()
        fixed = np.clip(space.init(), low, high)  # what the data cannot inform keeps its declared start, not
        for name, value in (frozen or {}).items():  # a preset's earlier fit (a held-out source would leak)
            if name in space.index:
                fixed[space.index[name]] = value
        used = model.used() & np.array([p.name not in (frozen or {}) for p in space.params])
        theta = fit_times(model, used, fixed)
        loss = loss_of(model, theta, used)
        if best is None or loss < best.loss - 1e-12:
            new_devices, new_hosts = apply_params(theta, space, used, tiled, specs.hosts)
            best = Fitted(new_devices, new_hosts, space, theta, used, loss)
    assert best is not None
    return best


def time_features(
    files: Sequence[MeasuredFile], devices: Mapping[str, DeviceSpec], hosts: Mapping[str, HostSpec]
) -> tuple[TimeModel, np.ndarray]:
    """The fit's model of every row on given (fitted) specs, and the parameter values those specs hold:
    `model.evaluate(theta)[0]` is what the planner predicts for each row before it rounds every term up to
    whole microseconds (the test of the fit's features)."""
    specs = file_specs(files, devices, hosts)
    base = specs.devices[next(iter(specs.devices))]
    rows, _ = file_rows(files, specs, base)
    runners = {n: h for n, h in specs.hosts.items() if any(f.run.runner == n for f in files)}
    space = ParamSpace(default_params(runners), specs.devices, specs.hosts)
    return _time_model(rows, space, specs, base.stream_tile_pixels), space.base_theta()


def _param_values(fit: Fitted) -> list[ParamValue]:
    out = []
    for p, v, u in zip_strict(fit.space.params, fit.theta, fit.used):
        edge = (
            "" if not u else ("low" if v <= p.low * (1 + 1e-6) + 1e-9 else "high" if v >= p.high * (1 - 1e-6) else "")
        )
        out.append(
            ParamValue(
                name=p.name, value=round(float(v), 6), low=p.low, high=p.high, why=p.why, used=bool(u), at_edge=edge
            )
        )
    return out


def predict_rows(
    files: Sequence[MeasuredFile], devices: Mapping[str, DeviceSpec], hosts: Mapping[str, HostSpec]
) -> list[CalibrationPoint]:
    """Every row of `files` priced on given specs (cuts not given are inferred with the base device's
    layout): how fitted specs do on files they were not fitted to."""
    specs = file_specs(files, devices, hosts)
    rows, _ = file_rows(files, specs, specs.devices[next(iter(specs.devices))])
    return [_point(r, specs.devices[r.device], specs.hosts[r.host]) for r in rows]


def calibrate(
    files: Sequence[MeasuredFile],
    devices: Mapping[str, DeviceSpec],
    hosts: Mapping[str, HostSpec] | None = None,
) -> CalibrationResult:
    """Fit every device (the first is the base: its name and the op classes the data lack are kept) and every
    host that ran a source, then price every row on the result."""
    first = next(iter(devices.values()), None)
    if not files or first is None or first.backend != "edgetpu":
        raise TpuplanError(
            f"calibrate: needs measurement files and an Edge TPU base device (got {first and first.name!r})"
        )
    fit = fit_specs(files, devices, hosts or {})
    points = predict_rows(files, fit.devices, fit.hosts)
    summary = summarise(points)
    by_device = {d: [f for f in files if (f.run.device or next(iter(devices))) == d] for d in fit.devices}
    out_devices = {
        n: d.model_copy(update={"calibration": _calibration(by_device[n] or list(files), summary)})
        for n, d in fit.devices.items()
    }
    out_hosts = {
        name: h.model_copy(
            update={"calibration": _calibration([f for f in files if _host_of(f, fit) == name], summary)}
        )
        for name, h in fit.hosts.items()
    }
    base = out_devices[next(iter(devices))]
    return CalibrationResult(
        device=base, devices=out_devices, hosts=out_hosts, params=_param_values(fit), files=summary, points=points
    )


def _host_of(f: MeasuredFile, fit: Fitted) -> str:
    return f.run.runner or f.run.host or next(iter(fit.hosts))
