"""Host CPU cost of the ops the Edge TPU leaves to the host, per op class, fitted to ops timed on a real CPU.

`plan profile --measure` times every op of a model on this machine's CPU. Per op class the host cost is

    us = us_per_op + us_per_kib x KiB of its input and output tensors + us_per_mmac x million MACs

fitted by non-negative least squares on relative error (the ops of one class range from 1 us to 15 ms,
and a plain least squares would fit only the largest). An op type that
the Edge TPU leaves to the host gets its own price per byte of its tensors (a bilinear resize costs far
more per byte than a nearest-neighbour one, an ARG_MAX than a RESHAPE). A class with
too few measured ops keeps the base host's numbers, marked uncalibrated.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np
from pydantic import Field, ValidationError

from tpuplan.compat import zip_strict
from tpuplan.profiles.calibration.timing import nnls
from tpuplan.profiles.docio import StrictModel, validation_message
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import OpProfile, Profile
from tpuplan.profiles.pricing.device import OP_CLASSES, Calibration
from tpuplan.profiles.pricing.formula import HostOpCost
from tpuplan.profiles.pricing.host import HostSpec

MIN_OPS = 4  # fewer measured ops of a class than this cannot pin three numbers
_FLOOR_US = 2.0  # relative errors of ops faster than this are taken against it (timer noise)


class HostClassFit(StrictModel):
    """How one class's fit does on the ops it was fitted to."""

    op_class: str
    ops: int = Field(ge=0)
    calibrated: bool
    median_rel_error: float | None = None
    worst_rel_error: float | None = None


class HostOpsFit(StrictModel):
    host: HostSpec
    classes: list[HostClassFit]


def _features(op: OpProfile) -> list[float]:
    return [1.0, (op.input_bytes + op.output_bytes) / 1024, op.macs / 1e6]


def _per_byte(ops: Sequence[OpProfile]) -> tuple[HostOpCost, list[float]]:
    """An op type: its fastest measurement as the fixed part, and the rest per KiB of its tensors as the
    ratio of the sums (the large ops, which decide a stage's time, weigh the most; a microsecond op timed
    as 0 or 30 does not move it)."""
    kib = [(op.input_bytes + op.output_bytes) / 1024 for op in ops]
    us = [max(float(op.measured_us or 0.0), 0.0) for op in ops]
    fixed = min(us) if len(us) > 1 else 0.0
    rate = sum(t - fixed for t in us) / max(sum(kib), 1e-3)
    errors = [abs(fixed + rate * k - t) / max(t, _FLOOR_US) for k, t in zip_strict(kib, us)]
    return HostOpCost(us_per_op=round(fixed, 4), us_per_kib=round(rate, 6), calibrated=True), errors


def _fit_class(ops: Sequence[OpProfile]) -> tuple[HostOpCost, list[float]]:
    """The three numbers of one class (or op type), and each op's relative error under them."""
    x = np.array([_features(op) for op in ops])
    y = np.array([max(float(op.measured_us or 0.0), 0.0) for op in ops])
    scale = np.maximum(x.max(axis=0), 1e-12)
    weight = 1 / np.maximum(y, _FLOOR_US)
    theta = nnls(x / scale * weight[:, None], y * weight) / scale
    cost = HostOpCost(
        us_per_op=round(float(theta[0]), 4),
        us_per_kib=round(float(theta[1]), 6),
        us_per_mmac=round(float(theta[2]), 4),
        calibrated=True,
    )
    errors = [abs(float(v)) for v in (x @ theta - y) / np.maximum(y, _FLOOR_US)]
    return cost, errors


def _fit(name: str, ops: Sequence[OpProfile], base: HostSpec) -> tuple[HostOpCost | None, HostClassFit]:
    if ops and (len(ops) >= MIN_OPS or name not in OP_CLASSES):
        cost, errors = _fit_class(ops) if name in OP_CLASSES else _per_byte(ops)
        return cost, HostClassFit(
            op_class=name,
            ops=len(ops),
            calibrated=True,
            median_rel_error=round(statistics.median(errors), 4),
            worst_rel_error=round(max(errors), 4),
        )
    old = base.host_ops.get(name)
    return (old.model_copy(update={"calibrated": False}) if old else None), HostClassFit(
        op_class=name, ops=len(ops), calibrated=False
    )


def fit_host_ops(profiles: Sequence[Profile], base: HostSpec) -> HostOpsFit:
    """The base host with `host_ops` fitted to the measured ops of `profiles` (from `plan profile --measure`):
    one entry per op class, and one per op type that the host runs in some model (so measured)."""
    measured = [p for p in profiles if p.source == "measured"]
    if not measured:
        raise TpuplanError("host calibration needs measured profiles (plan profile --measure)")
    groups: dict[str, list[OpProfile]] = {str(c): [] for c in OP_CLASSES}
    for prof in measured:
        for op in prof.ops:
            if op.measured_us is not None and math.isfinite(op.measured_us):
                groups[op.op_class].append(op)
                if not op.supported:  # an op type the host runs: it gets its own price
                    groups.setdefault(op.op_type, []).append(op)
    costs: dict[str, HostOpCost] = {k: v for k, v in base.host_ops.items() if k in OP_CLASSES}
    rows = []
    for name, ops in groups.items():
        if name not in OP_CLASSES:
            ops = [op for prof in measured for op in prof.ops if op.op_type == name and op.measured_us is not None]
        try:
            cost, row = _fit(name, ops, base)
        except ValidationError as exc:  # a price past the host's bounds: say which ops and models
            worst = max(float(op.measured_us or 0.0) for op in ops)
            raise TpuplanError(
                f"the measured {name} ops (up to {worst:,.0f} us, in "
                f"{', '.join(sorted({p.model.path for p in measured}))}) give a host price out of bounds "
                f"({validation_message(exc)}); not fitted"
            ) from None
        if cost is not None:
            costs[name] = cost
        rows.append(row)
    models = sorted({p.model.path.rsplit("/", 1)[-1] for p in measured})
    machine = {str(p.measurement.get("machine")) for p in measured if p.measurement}
    note = (
        f"host_ops fitted to the ops timed on the CPU ({', '.join(sorted(machine))}) of {len(models)} "
        f"models: {', '.join(models)}"
    )
    calibration = (base.calibration or Calibration(source="")).model_copy()
    calibration.source = (calibration.source + "; " if calibration.source else "") + note
    return HostOpsFit(host=base.model_copy(update={"host_ops": costs, "calibration": calibration}), classes=rows)
