"""Fit a device spec (and our runner's host numbers) to `plan verify` reports made on the user's machine.

A verify report holds, per stage, the time of the stage's interpreter run alone, measured, next to the
plan's prediction of it, whose parts the plan keeps: the invoke overhead, the compute and streaming of
the ops the device runs, the tensor transfers, and the ops left to the host. The fit finds

    measured ~ o + a x (compute + streaming) + c x transfers + h x host ops

by non-negative least squares on relative error, over every stage of every report: o is the new invoke
overhead, and a, c and h scale the device's op costs, its link and the host's op costs. A part that is
zero in every stage cannot be fitted and keeps its scale of 1. With fewer stages than unknowns, one
common scale of the whole prediction is fitted instead. On a CPU device every op is priced by the
host's op costs, so there the compute scale goes to the host. Ops whose time a measured profile holds
keep it: the fit describes the priced ones. The reports' own runner measurements (empty
stages, `runtime.verify.hostcost`) give our runner's per-stage time and serialized share.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
from pydantic import Field

from tpuplan.planner.plan import Plan, StagePlan, plan_digest
from tpuplan.profiles.calibration.timing import nnls
from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import Calibration, DeviceSpec
from tpuplan.profiles.pricing.formula import HostOpCost, OpClassCost
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.runtime.verify.report import VerifyReport

FIT_KIND: Final = "tpuplan.verify-fit"
FIT_VERSION: Final = 1
PARTS = ("overhead", "compute", "link", "host_ops")


class FitPoint(StrictModel):
    """One stage of one report: measured, predicted before and after the fit (us)."""

    report: int = Field(ge=0)
    stage: int = Field(ge=0)
    measured_us: float = Field(ge=0)
    before_us: float = Field(ge=0)
    after_us: float = Field(ge=0)


class VerifyFit(StrictModel):
    kind: Literal["tpuplan.verify-fit"] = FIT_KIND
    schema_version: Literal[1] = FIT_VERSION
    device: DeviceSpec
    host: HostSpec
    fitted: dict[str, float] = Field(description="overhead (us) and the scales of compute, link and host ops")
    points: list[FitPoint]
    median_error_before: float
    median_error_after: float


def _parts(stage: StagePlan) -> list[float]:
    """The plan's prediction of the stage's interpreter run, by part: [1, compute + streaming, link, host]."""
    terms = stage.predicted_terms
    return [1.0, float(terms["compute"] + terms["spill"]), float(terms["link"]), float(terms["host_ops"])]


def _check(pairs: Sequence[tuple[Plan, VerifyReport]]) -> DeviceSpec:
    """Every report must be of its plan, comparable, and all on one device: that device."""
    if not pairs:
        raise TpuplanError("calibrating from verify reports needs at least one plan and its report")
    devices = {d.model_dump_json(): d for plan, _ in pairs for d in plan.devices}
    for i, (plan, report) in enumerate(pairs):
        if report.plan_sha256 != plan_digest(plan):
            raise TpuplanError(
                f"verify report {i + 1} is of another plan (plan sha256 {report.plan_sha256[:12]}, "
                f"given plan {plan_digest(plan)[:12]})"
            )
        if not report.comparable:
            raise TpuplanError(f"verify report {i + 1} measured on {report.backend}, which the plan does not predict")
    if len(devices) != 1:
        raise TpuplanError(f"the plans use {len(devices)} different device specs: fit one device at a time")
    return next(iter(devices.values()))


def _solve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """NNLS on relative error over the parts that vary; the rest keep their current value (scale 1)."""
    theta = np.ones(x.shape[1])
    used = [j for j in range(x.shape[1]) if np.any(x[:, j] > 0)]
    w = 1 / np.maximum(y, 1.0)
    if len(y) < len(used):  # too few stages: one common scale of the whole prediction
        before = x @ theta
        scale = float(np.sum(w * w * before * y) / max(np.sum(w * w * before * before), 1e-12))
        return theta * scale
    colscale = np.maximum(x[:, used].max(axis=0), 1e-12)
    theta[used] = nnls(x[:, used] / colscale * w[:, None], y * w) / colscale
    return theta


def fit_from_verify(pairs: Sequence[tuple[Plan, VerifyReport]], host: HostSpec | None = None) -> VerifyFit:
    """The device of the plans, refitted to what their verify reports measured; the host (the plans' own
    by default) with its host-op prices scaled and, from reports of our threads runner, its runner numbers."""
    device = _check(pairs)
    rows = [
        (i, sp, chk) for i, (plan, rep) in enumerate(pairs) for sp, chk in zip(plan.stages, rep.stages, strict=True)
    ]
    x = np.array([_parts(sp) for _, sp, _ in rows])
    x[:, 0] = 1.0
    y = np.array([chk.measured_us for _, _, chk in rows])
    base = np.array([max(float(device.invoke_overhead_us), 1.0), 1.0, 1.0, 1.0])  # the overhead column in us
    theta = _solve(x * base, y) * base
    after = x @ theta
    before = np.array([chk.predicted_us for _, _, chk in rows])
    points = [
        FitPoint(
            report=i,
            stage=sp.index,
            measured_us=round(float(m), 1),
            before_us=round(float(b), 1),
            after_us=round(float(a), 1),
        )
        for (i, sp, _), m, b, a in zip(rows, y, before, after, strict=True)
    ]
    err_before = float(statistics.median(np.abs(before - y) / np.maximum(y, 1.0)))
    err_after = float(statistics.median(np.abs(after - y) / np.maximum(y, 1.0)))
    fitted = dict(zip(PARTS, (round(float(v), 6) for v in theta), strict=True))
    note = (
        f"plan verify reports ({len(pairs)}, {len(rows)} stages): overhead {fitted['overhead']:g} us, compute x"
        f"{fitted['compute']:g}, link x{fitted['link']:g}, host ops x{fitted['host_ops']:g}; median stage error "
        f"{err_before:.1%} before, {err_after:.1%} after"
    )
    on_cpu = device.backend == "cpu"  # a CPU device's ops are priced by the host's op costs
    new_device = _scaled_device(device, theta, note, len(rows), err_after, ops=not on_cpu)
    new_host = _scaled_host(
        host or pairs[0][0].host, float(theta[1] if on_cpu else theta[3]), [rep for _, rep in pairs], note
    )
    return VerifyFit(
        device=new_device,
        host=new_host,
        fitted=fitted,
        points=points,
        median_error_before=round(err_before, 4),
        median_error_after=round(err_after, 4),
    )


def _scaled_device(
    device: DeviceSpec, theta: np.ndarray, note: str, points: int, err: float, *, ops: bool
) -> DeviceSpec:
    a, c = (float(theta[1]) if ops else 1.0), float(theta[2])
    costs = {
        k: OpClassCost(
            us_per_op=v.us_per_op * a,
            us_per_mmac=v.us_per_mmac * a,
            us_per_kib_act=v.us_per_kib_act * a,
            stream_us_per_kib=v.stream_us_per_kib * a,
            calibrated=v.calibrated or ops,
        )
        for k, v in device.op_costs.items()
    }
    link = device.link.model_copy(
        update={
            "in_us_per_kib": device.link.in_us_per_kib * c,
            "out_us_per_kib": device.link.out_us_per_kib * c,
            "upload_us_per_kib": device.link.upload_us_per_kib * c,
            "calibrated": True,
        }
    )
    cal = Calibration(source=note[:4000], points=points, median_rel_error={"verify": round(err, 4)})
    return device.model_copy(
        update={"invoke_overhead_us": round(float(theta[0]), 3), "op_costs": costs, "link": link, "calibration": cal}
    )


def _scaled_host(host: HostSpec, h: float, reports: Sequence[VerifyReport], note: str) -> HostSpec:
    ops = {
        k: HostOpCost(
            us_per_op=v.us_per_op * h, us_per_kib=v.us_per_kib * h, us_per_mmac=v.us_per_mmac * h, calibrated=True
        )
        for k, v in host.host_ops.items()
    }
    update: dict[str, object] = {"host_ops": ops}
    ours = [r.runner_host for r in reports if r.runner_host.runner == "threads"]
    if ours:
        update["stage_us"] = round(statistics.median(r.empty_stage_us for r in ours), 3)
        shares = [r.serialized for r in ours if r.serialized is not None]
        if shares:
            update["serialized"] = round(statistics.median(shares), 3)
    cal = (host.calibration or Calibration(source="")).model_copy(update={"source": note[:4000]})
    update["calibration"] = cal
    return host.model_copy(update=update)
