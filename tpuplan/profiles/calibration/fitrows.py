"""The rows a calibration fits: which device and host ran each measured file, each row's cut list (given,
or inferred from the compiler's memory columns) and the chip's layout and caching fitted to those
reports.

Apart from the time fit (`profiles.calibration.fit`) because it is the compiler's behaviour, not a time:
the memory reports fix the layout and the cuts first, and every time parameter is fitted on rows priced
with them afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tpuplan.compat import zip_strict
from tpuplan.profiles.calibration.measurements import MeasuredFile, Measurement
from tpuplan.profiles.calibration.memory import (
    LayoutFit,
    RowMemory,
    Segment,
    fit_capacity,
    fit_layout,
    layout_bytes,
    row_geometry,
    stage_bounds,
)
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host


@dataclass(frozen=True)
class Row:
    """A measured row with its source, the cut list it is priced with and the specs that ran it."""

    file: MeasuredFile
    m: Measurement
    cuts: tuple[int, ...]
    inferred: bool
    device: str
    host: str

    @property
    def runner(self) -> bool:
        return self.file.run.runner is not None


@dataclass(frozen=True)
class Specs:
    devices: dict[str, DeviceSpec]
    hosts: dict[str, HostSpec]
    device_of: dict[str, str]  # file name -> device name
    host_of: dict[str, str]  # file name -> host name


def file_specs(
    files: Sequence[MeasuredFile], devices: Mapping[str, DeviceSpec], hosts: Mapping[str, HostSpec]
) -> Specs:
    """Which device and host ran each file (a runner's `fresh_upload` as its files say; a single-invoke file
    on its own host, else on the first runner's machine), every one given."""
    if not devices:
        raise TpuplanError("calibrate: needs a base device")
    base = next(iter(devices))
    out_hosts: dict[str, HostSpec] = {}
    device_of, host_of = {}, {}
    runners = [f.run.runner for f in files if f.run.runner]
    for f in files:
        if f.name in device_of:
            raise TpuplanError(f"{f.name}: given twice (files are reported by name)")
        device_of[f.name] = f.run.device or base
        if device_of[f.name] not in devices:
            raise TpuplanError(f"{f.name}: no device spec given for device {f.run.device!r}")
        name = f.run.runner or f.run.host or (runners[0] if runners else resolve_host(None).name)
        host_of[f.name] = name
        if name not in hosts and name != resolve_host(None).name:
            raise TpuplanError(f"{f.name}: no host spec given for {name!r}")
        spec = hosts.get(name) or resolve_host(None)
        if f.run.runner:
            spec = spec.model_copy(update={"fresh_upload": f.run.fresh})
            if out_hosts.get(name, spec).fresh_upload != spec.fresh_upload:
                raise TpuplanError(f"{f.name}: runner {name!r} is fresh in one file and not in another")
        out_hosts[name] = out_hosts.get(name, spec)
    used = {d: devices[d] for d in dict.fromkeys(device_of.values())}
    return Specs({base: devices[base], **used}, out_hosts, device_of, host_of)


def file_rows(files: Sequence[MeasuredFile], specs: Specs, layout_of: DeviceSpec | None) -> tuple[list[Row], LayoutFit]:
    """Every row with its cuts, given or inferred from the memory columns (a real model's row is one
    segment and has none), and the layout they were inferred with (`layout_of`'s, or fitted when None)."""
    mem, index, given = [], [], []
    for f in files:
        if f.run.runner is None and f.sweep.segments > 1:
            raise TpuplanError(
                f"{f.name}: {f.sweep.segments} segments per row is a pipeline file; "
                "give it as --pipeline FILE:RUNNER:BATCH"
            )
        for m in f.sweep.rows:
            if m.family == "model":
                continue
            geo = row_geometry(m)
            where = f"{f.name}:{m.line}"
            options = (
                [geo.check_cuts(f.run.cuts, m.segments, where)]
                if f.run.cuts is not None
                else geo.candidate_cuts(m.segments)
            )
            if not options or any(not geo.tpu_ops(a, b) for c in options for a, b in stage_bounds(c, geo.n)):
                raise TpuplanError(f"{where}: no split of the {geo.n}-op model into {m.segments} Edge TPU stages")
            mem.append(RowMemory(m.family, m.x, m.onchip_mib, m.offchip_mib, options))
            index.append((f.name, m.line))
            given.append(f.run.cuts is not None or m.segments == 1)
    base = layout_of or next(iter(specs.devices.values()))
    layout = (
        fit_layout(mem, layout_of)
        if mem
        else LayoutFit(base.channel_pad, base.input_pad, base.per_channel_bytes, [], 0)
    )
    found = {k: (c, g) for k, c, g in zip_strict(index, layout.cuts, given)}
    rows = []
    for f in files:
        for m in f.sweep.rows:
            cuts, ok = found.get((f.name, m.line), ((), True))
            rows.append(Row(f, m, cuts, not ok, specs.device_of[f.name], specs.host_of[f.name]))
    return rows, layout


def fit_memory(rows: list[Row], layout: LayoutFit, base: DeviceSpec) -> dict[str, int | float]:
    """The layout and the caching capacity fitted to every segment of the rows with memory reports: the
    chip's (and its compiler's) numbers, the same on every Edge TPU device."""
    dev = base.model_copy(
        update={
            "channel_pad": layout.channel_pad,
            "input_pad": layout.input_pad,
            "per_channel_bytes": layout.per_channel_bytes,
        }
    )
    segs = []
    if all(r.m.family == "model" for r in rows):  # no memory reports: the base device's numbers stay
        return {}
    for r in rows:
        if r.m.family == "model":
            continue
        geo = row_geometry(r.m)
        lay = layout_bytes(geo.profile, dev)
        for s, (a, b) in enumerate(stage_bounds(r.cuts, geo.n)):
            layers = tuple(int(lay[j]) for j in geo.tpu_ops(a, b) if lay[j] > 0)
            segs.append(Segment(layers, geo.io_bytes(a, b), r.m.onchip_mib[s], r.m.offchip_mib[s]))
    cap = fit_capacity(segs)
    return {
        "channel_pad": layout.channel_pad,
        "input_pad": layout.input_pad,
        "per_channel_bytes": layout.per_channel_bytes,
        "onchip_bytes": cap.onchip_bytes,
        "io_reserve_frac": cap.io_reserve_frac,
        "max_cached_layer_bytes": cap.max_cached_layer_bytes,
    }
