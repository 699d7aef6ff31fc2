"""Fit an Edge TPU DeviceSpec to real single-TPU sweeps (the CSVs of shared/edgetpu-measurements).

Each row's model is written with profiles.synth, profiled with build_profile and predicted as ONE stage
by planner.costs.stage_table - the numbers the planner uses - so the fit checks the whole chain.
Deterministic: (1) layout padding from the reported total bytes; (2) capacity, activation reserve and
largest cached layer by a search for the most points within 0.3 MiB of the compiler's on-/off-chip
report; (3) times by non-negative least squares on relative error, reweighted towards the median. Two
fixed-depth sweeps cannot separate per-op constants from invoke overhead, nor the host link from host
per-element work, so a weak ridge pulls every time parameter towards PRIOR, which decides only those.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import Field

from tpuplan.profiles.build import build_profile
from tpuplan.profiles.cost import cached_layout_bytes
from tpuplan.profiles.device import OP_CLASSES, Calibration, DeviceSpec, OpClassCost
from tpuplan.profiles.docio import StrictModel, read_bytes
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.stagecost import stage_table
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite import parse_model

MIB = 1 << 20
TOL_MIB = 0.3
SWEEPS = {"Hidden neurons": "fc", "Num filters": "conv"}
COLUMNS = ["# MACs", "On chip mem used", "Off chip mem used", "Inference time"]
_COSTS = ("us_per_op", "us_per_mmac", "us_per_kib_act", "stream_us_per_kib")
_SCALE = {"us_per_op": 10.0, "us_per_mmac": 1.0, "us_per_kib_act": 0.1, "stream_us_per_kib": 1.0}
_IRLS_ROUNDS = 10
_RIDGE = 1e-3  # weight of the pull towards PRIOR, against 1 per point of relative error
# The sweeps show `elementwise` only as QUANTIZE/TANH with near-constant features: fitted freely it soaks
# up intercepts (errors unchanged) and would tax every ADD of other models, so it is held 1/_STIFF^2 harder.
# (`host` = DEQUANTIZE stays free: with the link it carries the output-size cost.)
_STIFF = 0.01


@dataclass(frozen=True)
class Measurement:
    sweep: str  # "fc" or "conv"
    x: int  # hidden neurons N or filters F
    macs: int
    onchip_mib: float
    offchip_mib: float
    ms: float


class CalibrationPoint(StrictModel):
    sweep: str
    x: int
    measured_ms: float
    predicted_ms: float
    rel_error: float = Field(description="|predicted - measured| / measured")
    measured_onchip_mib: float
    predicted_onchip_mib: float
    measured_offchip_mib: float
    predicted_offchip_mib: float
    memory_ok: bool = Field(description="both splits within 0.3 MiB of the compiler's report")


class CalibrationResult(StrictModel):
    device: DeviceSpec
    points: list[CalibrationPoint]


@dataclass(frozen=True)
class Sweep:
    """One measurement CSV as read: where it came from (name and sha256) and its rows."""

    name: str
    sha256: str
    rows: list[Measurement]


def read_measurements(path: Path) -> Sweep:
    """One sweep CSV, read once; any other format is a TpuplanError naming the file and line."""
    raw = read_bytes(Path(path), what="measurement CSV")
    return Sweep(Path(path).name, hashlib.sha256(raw).hexdigest(), parse_measurements(raw, str(path)))


def parse_measurements(raw: bytes, path: str) -> list[Measurement]:
    """Rows of a sweep CSV's bytes; `path` names the source in errors."""
    try:
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TpuplanError(f"{path}: not a measurement CSV ({exc})") from None
    head = [h.strip() for h in rows[0]] if rows else []
    if len(head) != 5 or head[0] not in SWEEPS or head[1:] != COLUMNS:
        raise TpuplanError(
            f"{path}:1: unknown header {','.join(head)!r}; expected 'Hidden neurons' or 'Num filters' "
            f"then {','.join(COLUMNS)}"
        )
    sweep, out = SWEEPS[head[0]], []
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) != 5:
            raise TpuplanError(f"{path}:{line}: expected 5 fields, got {len(row)}")
        try:
            x, macs, on, off, ms = (float(c) for c in row)
        except ValueError:
            raise TpuplanError(f"{path}:{line}: a field is not a number: {row!r}") from None
        if not (x == int(x) and 1 <= x <= 1 << 16 and macs >= 0 and on >= 0 and off >= 0
                and math.isfinite(ms) and ms > 0):
            raise TpuplanError(f"{path}:{line}: values out of range: {row!r}")
        out.append(Measurement(sweep, int(x), int(macs), on, off, ms))
    if not out:
        raise TpuplanError(f"{path}: no measurement rows")
    return out


_SHAPES = DeviceSpec.model_validate({"name": "shapes", "onchip_bytes": 0, "max_cached_layer_bytes": 0, "op_costs": {}})


@lru_cache(maxsize=512)
def sweep_profile(sweep: str, x: int) -> Profile:
    """Static profile of the model a sweep row describes (zero weights: only shapes matter)."""
    data = synth_fc(x, weights="zeros") if sweep == "fc" else synth_conv(x, weights="zeros")
    return build_profile(parse_model(data, Path(f"synth_{sweep}_{x}.tflite"), allow_edgetpu=False), _SHAPES)


def _layout(prof: Profile, dev: DeviceSpec) -> np.ndarray:
    return np.array([cached_layout_bytes(op.op_type, op.param_shapes, op.param_bytes, dev) if op.edgetpu
                     else 0 for op in prof.ops], dtype=np.float64)


def _fit_pads(meas: Sequence[Measurement], profs: Sequence[Profile], base: DeviceSpec) -> tuple[int, int]:
    """Output-channel and input-depth padding that best reproduce the reported total bytes."""
    def key(pads: tuple[int, int]) -> tuple[int, float]:
        dev = base.model_copy(update={"channel_pad": pads[0], "input_pad": pads[1]})
        err = np.array([abs(_layout(p, dev).sum() / MIB - m.onchip_mib - m.offchip_mib)
                        for m, p in zip(meas, profs, strict=True)])
        return -int(np.sum(err <= TOL_MIB)), float(np.sum(err))

    return min(((c, i) for c in (1, 8, 16, 32, 64, 128) for i in (1, 2, 4, 8, 16)), key=key)


@dataclass
class _Mem:
    """All points at once, ops padded to one length: cumulative cached bytes C, running largest
    activation A, layer sizes, and the reported on-/off-chip MiB."""

    C: np.ndarray  # [points, ops]
    A: np.ndarray
    layers: np.ndarray
    on: np.ndarray  # [points]
    off: np.ndarray

    @classmethod
    def build(cls, layouts: list[np.ndarray], acts: list[np.ndarray], on: np.ndarray, off: np.ndarray) -> _Mem:
        n = max(len(x) for x in layouts)

        def pad(rows: list[np.ndarray], mode: str) -> np.ndarray:
            return np.array([np.pad(r, (0, n - len(r)), mode=mode) for r in rows])  # type: ignore[call-overload]

        cum, run = [np.cumsum(x) for x in layouts], [np.maximum.accumulate(x) for x in acts]
        return cls(pad(cum, "edge"), pad(run, "edge"), pad(layouts, "constant"), on, off)

    def score(self, onchip: np.ndarray, frac: np.ndarray, max_layer: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Points within tolerance and total MiB error on the grid onchip x frac x max_layer."""
        n = self.C.shape[1]
        big = self.layers[:, :, None] > max_layer[None, None, :]  # [P, ops, L]
        k_layer = np.where(big.any(axis=1), big.argmax(axis=1), n)  # [P, L]
        # C and A never decrease along the ops, so the ops that fit are a prefix: count them
        need = self.C[:, :, None] + frac[None, None, :] * self.A[:, :, None]  # [P, ops, R]
        k_cap = (need[:, :, None, :] <= onchip[None, None, :, None]).sum(axis=1)  # [P, O, R]
        k = np.minimum(k_cap[:, :, :, None], k_layer[:, None, None, :])  # [P, O, R, L]
        lead = np.concatenate([np.zeros((len(self.C), 1)), self.C], axis=1) / MIB
        on = np.take_along_axis(lead, k.reshape(len(k), -1), axis=1).reshape(k.shape)
        off = self.C[:, -1, None, None, None] / MIB - on
        d_on = np.abs(on - self.on[:, None, None, None])
        d_off = np.abs(off - self.off[:, None, None, None])
        hits = ((d_on <= TOL_MIB) & (d_off <= TOL_MIB)).sum(axis=0)
        return hits.astype(float), np.round((d_on + d_off).sum(axis=0), 6)


def _top(h: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Mask of the best candidates (most hits, then least error) and their sort key."""
    best = h == h.max()
    least = float(e[best].min())
    return best & (e == least), (-float(h.max()), least)


def _middle_run(ok: np.ndarray, edges: np.ndarray) -> float:
    """Middle of the widest run of good candidates; candidate k stands for [edges[k], edges[k+1])."""
    idx = np.nonzero(ok)[0]
    starts = idx[np.r_[True, np.diff(idx) > 1]]
    ends = idx[np.r_[np.diff(idx) > 1, True]] + 1
    k = int(np.argmax(edges[ends] - edges[starts]))
    return float((edges[starts[k]] + edges[ends[k]]) / 2)


def _best_onchip(mem: _Mem, max_layer: float) -> tuple[float, float]:
    """Best (onchip, frac) for a fixed max_layer: exact in onchip (the score only changes where a
    prefix of some point stops fitting), a grid in frac; ties go to the middle of the best region."""
    found = []
    for frac in np.linspace(0.0, 1.0, 51):
        marks = np.unique(mem.C + frac * mem.A)
        ok, key = _top(*(v[:, 0, 0] for v in mem.score(marks, np.array([frac]), np.array([max_layer]))))
        found.append((key, _middle_run(ok, np.append(marks, marks[-1] + MIB)), float(frac)))
    tied = [f for f in found if f[0] == min(f[0] for f in found)]
    return tied[len(tied) // 2][1:]


def _fit_capacity(mem: _Mem) -> tuple[int, float, int]:
    """onchip_bytes, activation_reserve_frac, max_cached_layer_bytes by coordinate search.

    (onchip, frac), then max_layer exactly (it only matters between layer sizes), until stable. One
    search can stick (a too-small capacity also explains layers that are too big), so it starts from
    several max_layer values and keeps the best end point.
    """
    sizes = np.unique(mem.layers)
    edges = np.concatenate([sizes, [sizes[-1] + MIB]])
    mids = (edges[:-1] + edges[1:]) / 2
    best: tuple[float, float, tuple[float, float, float]] = (1.0, 0.0, (0.0, 0.0, 0.0))
    for q in (1.0, 0.95, 0.9, 0.8, 0.65, 0.5):
        state = (0.0, 0.0, float(np.quantile(edges, q)))
        for _ in range(4):
            onchip, frac = _best_onchip(mem, state[2])
            ok, _ = _top(*(v[0, 0] for v in mem.score(np.array([onchip]), np.array([frac]), mids)))
            state, old = (onchip, frac, _middle_run(ok, edges)), state
            if state == old:
                break
        hits, err = mem.score(*(np.array([v]) for v in state))
        best = min(best, (-float(hits.sum()), float(err.sum()), state))
        if hits.sum() == len(mem.C):
            break  # every point explained: no other start can do better
    return int(best[2][0]), round(best[2][1], 4), int(best[2][2])


# Rough physical guesses (the uncalibrated preset's) for the classes the sweeps contain. They only decide
# what the sweeps cannot separate, and keep the fit independent of the base spec. Link 300 B/us (USB 3).
PRIOR_OVERHEAD_US = 100.0
PRIOR_LINK_US_PER_BYTE = 1 / 300
PRIOR: dict[str, OpClassCost] = {
    "fc": OpClassCost(us_per_op=5, us_per_mmac=20, us_per_kib_act=0, stream_us_per_kib=2.7),
    "conv": OpClassCost(us_per_op=20, us_per_mmac=1.4, us_per_kib_act=0.5, stream_us_per_kib=10),
    "elementwise": OpClassCost(us_per_op=5, us_per_mmac=0, us_per_kib_act=0.2, stream_us_per_kib=0),
    "host": OpClassCost(us_per_op=20, us_per_mmac=2000, us_per_kib_act=1.0, stream_us_per_kib=0),
}


def _features(prof: Profile, dev: DeviceSpec, names: list[tuple[str, str]]) -> np.ndarray:
    """Row of the linear time model: stage time = row . params (before per-op integer rounding)."""
    index = {n: i for i, n in enumerate(names)}
    row = np.zeros(len(names))
    row[:2] = 1.0, prof.input_bytes + prof.output_bytes  # invoke overhead; float input/output over the link
    cached = [int(v) for v in _layout(prof, dev)]
    lc = last_cached(cached, [op.max_activation_bytes for op in prof.ops], dev)[0]
    for k, op in enumerate(prof.ops):
        key = op.op_class if op.edgetpu else "host"
        row[index[(key, "us_per_op")]] += 1
        row[index[(key, "us_per_mmac")]] += op.macs / 1e6
        row[index[(key, "us_per_kib_act")]] += (op.input_bytes + op.output_bytes) / 1024
        if k > lc and op.edgetpu:
            row[index[(op.op_class, "stream_us_per_kib")]] += cached[k] / 1024
    return row


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min |a x - b| subject to x >= 0 (Lawson-Hanson active set); deterministic."""
    n = a.shape[1]
    passive, x = np.zeros(n, dtype=bool), np.zeros(n)
    for _ in range(10 * n):
        w = a.T @ (b - a @ x)
        free = ~passive & (w > 1e-12 * max(1.0, float(np.abs(w).max())))
        if not free.any():
            break
        passive[int(np.argmax(np.where(free, w, -np.inf)))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            x = x + float(np.min(x[neg] / (x[neg] - z[neg]))) * (z - x)
            passive &= x > 1e-15
    return x


def _fit_times(meas: Sequence[Measurement], profs: Sequence[Profile], dev: DeviceSpec) -> DeviceSpec:
    """Time parameters of the op classes the sweeps contain; `other` follows `elementwise` (both are
    cheap data movement), classes with no ops in the sweeps (depthwise) keep the base's numbers."""
    classes = sorted({op.op_class if op.edgetpu else "host" for p in profs for op in p.ops})
    names = [("", "invoke_overhead_us"), ("", "link_us_per_byte")] + [(c, f) for c in classes for f in _COSTS]
    prior = np.array([PRIOR_OVERHEAD_US, PRIOR_LINK_US_PER_BYTE] + [getattr(PRIOR[c], f) for c, f in names[2:]])
    scale = np.array([100.0, 1e-3] + [max(_SCALE[f], abs(p)) * (_STIFF if c == "elementwise" else 1)
                                      for (c, f), p in zip(names[2:], prior[2:], strict=True)])
    y = np.array([m.ms * 1000 for m in meas])
    rows = np.array([_features(p, dev, names) for p in profs]) / y[:, None]
    weights, theta = np.ones(len(meas)), prior
    for _ in range(_IRLS_ROUNDS):  # reweighting towards least absolute relative error (the median)
        a = np.vstack([rows * scale * weights[:, None], math.sqrt(_RIDGE) * np.eye(len(names))])
        b = np.concatenate([weights, math.sqrt(_RIDGE) * prior / scale])
        theta = nnls(a, b) * scale
        weights = 1 / np.sqrt(np.maximum(np.abs(rows @ theta - 1), 0.01))
    costs = dict(dev.op_costs)
    for c in (c for c in OP_CLASSES if c in classes):
        costs[c] = OpClassCost(**{f: round(float(theta[i]), 4) for i, (cc, f) in enumerate(names) if cc == c})
    if "elementwise" in classes:
        costs["other"] = costs["elementwise"]
    return dev.model_copy(update={
        "invoke_overhead_us": round(float(theta[0]), 2),
        "link_bytes_per_us": round(1 / theta[1], 1) if theta[1] > 1e-9 else 0.0,
        "op_costs": costs,
    })


def predict(prof: Profile, dev: DeviceSpec) -> tuple[int, int, int]:
    """(time us, on-chip bytes, off-chip bytes) of the whole model as one stage on dev."""
    parts = (table := stage_table(prof, dev)).stage_parts(0, table.n - 1)
    return parts["total_us"], parts["onchip_bytes"], parts["offchip_bytes"]


def calibrate(sweeps: Sequence[Sweep], base: DeviceSpec) -> CalibrationResult:
    """Fit an Edge TPU spec to the sweeps; base gives the name and the classes the sweeps lack."""
    if not sweeps or base.backend != "edgetpu":
        raise TpuplanError(f"calibrate: needs measurement CSVs and an Edge TPU base (got {base.name!r})")
    meas = [m for sweep in sweeps for m in sweep.rows]
    sources = [f"{sweep.name} (sha256 {sweep.sha256})" for sweep in sweeps]
    profs = [sweep_profile(m.sweep, m.x) for m in meas]
    cpad, ipad = _fit_pads(meas, profs, base)
    dev = base.model_copy(update={"channel_pad": cpad, "input_pad": ipad})
    mem = _Mem.build([_layout(p, dev) for p in profs],
                     [np.array([op.max_activation_bytes for op in p.ops], dtype=float) for p in profs],
                     np.array([m.onchip_mib for m in meas]), np.array([m.offchip_mib for m in meas]))
    onchip, frac, max_layer = _fit_capacity(mem)
    dev = dev.model_copy(update={"onchip_bytes": onchip, "activation_reserve_frac": frac,
                                 "max_cached_layer_bytes": max_layer})
    dev = _fit_times(meas, profs, dev)
    points = []
    for m, p in zip(meas, profs, strict=True):
        us, on_mib, off_mib = (v / d for v, d in zip(predict(p, dev), (1, MIB, MIB), strict=True))
        points.append(CalibrationPoint(
            sweep=m.sweep, x=m.x, measured_ms=m.ms, predicted_ms=us / 1000, rel_error=abs(us / 1000 - m.ms) / m.ms,
            measured_onchip_mib=m.onchip_mib, predicted_onchip_mib=round(on_mib, 4),
            measured_offchip_mib=m.offchip_mib, predicted_offchip_mib=round(off_mib, 4),
            memory_ok=abs(on_mib - m.onchip_mib) <= TOL_MIB and abs(off_mib - m.offchip_mib) <= TOL_MIB,
        ))
    by = {s: [p for p in points if p.sweep == s] for s in sorted({p.sweep for p in points})}
    dev = dev.model_copy(update={"calibration": Calibration(
        source="plan calibrate on " + "; ".join(sources), points=len(points),
        median_rel_error={s: round(float(np.median([p.rel_error for p in v])), 4) for s, v in by.items()},
        worst_rel_error={s: round(max(p.rel_error for p in v), 4) for s, v in by.items()},
        memory_within_0_3_mib={s: round(sum(p.memory_ok for p in v) / len(v), 4) for s, v in by.items()},
    )})
    return CalibrationResult(device=dev, points=points)
