"""From `plan verify` reports to a refitted device and host, and to stage times a new plan keeps.

A verify report times every stage of a plan alone (`StageCheck.measured_us`): one invoke of a known
segment on the plan's device and host, the formula's invoke part. Those times are calibration rows of
the calibration's own fit (`profiles.calibration.stagefit`): duplicates count once, a parameter moves
only when the times identify it, never more parameters than one fewer than the points, and what they
cannot identify keeps its value and is named. The same times, kept as measured, are what a new plan
uses for the stages it shares with a verified one (`Profile.measured_stages`, `formula.measured_parts`).

Reports of our own threads runner also measured its host work with empty stages (`runtime.verify.hostcost`):
the `tpuplan` host takes its per-stage time and serialized share from them, as measured numbers.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import Field

from tpuplan.compat import zip_strict
from tpuplan.planner.plan import Plan, plan_digest
from tpuplan.profiles.calibration.stagefit import (
    StageFit,
    StageTime,
    TimedSegment,
    TooFewPoints,
    distinct_points,
    fit_stage_times,
)
from tpuplan.profiles.docio import StrictModel, checked_json, dump_json
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_PIPELINE_US, Real
from tpuplan.profiles.model import MeasuredStage, Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.runtime.verify.report import VerifyReport, check_report_matches

FIT_KIND: Final = "tpuplan.verify-fit"
FIT_VERSION: Final = 2
OUR_RUNNER = "tpuplan"  # the host preset of our own threads runner, whose numbers verify measures


class FitPoint(StrictModel):
    """One distinct stage: measured (median of its reports), predicted by the planner before and after."""

    model: str = Field(max_length=10_000)
    first_op: int = Field(ge=0, le=1 << 31)
    last_op: int = Field(ge=0, le=1 << 31)
    device: str = Field(max_length=200)
    host: str = Field(max_length=200)
    measured_us: float = Field(ge=0, le=MAX_PIPELINE_US, description="MEASURED (simulated when the fit says so)")
    times: int = Field(ge=1, le=1 << 20, description="how many report stages timed it (counted once)")
    before_us: int = Field(ge=0, le=MAX_PIPELINE_US, description="predicted by the specs before the refit")
    after_us: int = Field(ge=0, le=MAX_PIPELINE_US, description="predicted by the refitted specs")


class FitParam(StrictModel):
    name: str = Field(max_length=200)
    before: Real
    after: Real
    low: Real
    high: Real
    status: Literal["fitted", "not identified", "no data"]
    at_edge: Literal["", "low", "high"] = ""


class VerifyFit(StrictModel):
    """The refit of `plan calibrate --verify` (and of `plan solve --measured`): the specs, every parameter's
    fate, every distinct stage before and after."""

    kind: Literal["tpuplan.verify-fit"] = FIT_KIND
    schema_version: Literal[2] = FIT_VERSION
    simulated: bool = Field(description="some report was made on a simulated device: no real measurement")
    devices: dict[str, DeviceSpec]
    hosts: dict[str, HostSpec]
    params: list[FitParam]
    points: list[FitPoint]
    median_error_before: Real
    median_error_after: Real
    notes: list[str]


@dataclass(frozen=True)
class Reported:
    """A report read from `where`, and the host its plan ran on (the plan's, else the report's own)."""

    report: VerifyReport
    where: str
    host: str | None = None


def stage_times(profile: Profile, reported: Sequence[Reported], devices: set[str], host: str) -> list[StageTime]:
    """Every stage time of the reports of this profile's model, on the devices named and the host; any
    report of another model, another host, an unknown device or not comparable is refused by name."""
    out = []
    for r in reported:
        rep, where = r.report, r.where
        if rep.model_sha256 != profile.model.sha256:
            raise TpuplanError(
                f"{where}: a report of model sha256 {rep.model_sha256[:12]}, not of {profile.model.path} "
                f"({profile.model.sha256[:12]})"
            )
        if not rep.comparable:
            raise TpuplanError(f"{where}: measured on {rep.backend}, which its plan does not predict; no stage time")
        ran_on = r.host or rep.host
        if ran_on is not None and ran_on != host:
            raise TpuplanError(f"{where}: its plan ran on host {ran_on!r}, not {host!r}; give --host {ran_on}")
        for s in rep.stages:
            if s.device not in devices:
                raise TpuplanError(
                    f"{where}: stage {s.index} ran on device {s.device!r}, which is not given here "
                    f"({', '.join(sorted(devices))}); give --device {s.device}"
                )
            out.append(
                StageTime(profile, s.first_op, s.last_op, s.device, host, s.measured_us, f"{where} stage {s.index}")
            )
    return out


def refit(
    times: Sequence[StageTime],
    devices: Mapping[str, DeviceSpec],
    hosts: Mapping[str, HostSpec],
    reported: Sequence[Reported],
) -> VerifyFit:
    """The specs refitted to the stage times (TooFewPoints below two distinct ones), our runner's host
    numbers from the reports' empty-stage runs, and the whole as a document."""
    reported = distinct_reports(reported)
    simulated = any(r.report.simulated for r in reported)
    label = f"{len(reported)} plan verify report(s)" + (" made on a SIMULATED Edge TPU" if simulated else "")
    fit = fit_stage_times(times, devices, hosts, label)
    hosts_out = {n: _runner_numbers(h, [r.report for r in reported]) for n, h in fit.hosts.items()}
    return _document(fit, hosts_out, simulated)


def _runner_numbers(host: HostSpec, reports: Sequence[VerifyReport]) -> HostSpec:
    """Our threads runner's per-stage time and serialized share as these reports measured them."""
    ours = [r.runner_host for r in reports if r.runner_host.runner == "threads"]
    if host.name != OUR_RUNNER or not ours:
        return host
    update: dict[str, object] = {"stage_us": round(statistics.median(h.empty_stage_us for h in ours), 3)}
    shares = [h.serialized for h in ours if h.serialized is not None]
    if shares:
        update["serialized"] = round(statistics.median(shares), 3)
    text = checked_json(host.model_copy(update=update), f"the host {host.name!r} refitted to the reports' runner")
    return HostSpec.model_validate_json(text)


def _document(fit: StageFit, hosts: dict[str, HostSpec], simulated: bool) -> VerifyFit:
    held = [p.name for p in fit.params if p.status == "not identified"]
    notes = [
        f"fitted: {', '.join(fit.fitted) or 'nothing (no parameter is informed enough by these times)'}",
        *([f"not identified by these stage times, kept at their values: {', '.join(held)}"] if held else []),
    ]
    if simulated:
        notes.insert(0, "SIMULATED: the stage times come from a simulated Edge TPU, not from hardware")
    return VerifyFit(
        simulated=simulated,
        devices=fit.devices,
        hosts=hosts,
        params=[
            FitParam(
                name=p.name,
                before=round(p.before, 6),
                after=round(p.after, 6),
                low=p.low,
                high=p.high,
                status=p.status,
                at_edge=p.at_edge,
            )
            for p in fit.params
        ],
        points=[
            FitPoint(
                model=q.profile.model.path,
                **_segment(q),
                measured_us=round(q.measured_us, 1),
                times=len(q.sources),
                before_us=b,
                after_us=a,
            )
            for q, b, a in zip_strict(fit.points, fit.before_us, fit.after_us)
        ],
        median_error_before=round(fit.median_error(fit.before_us), 4),
        median_error_after=round(fit.median_error(fit.after_us), 4),
        notes=notes,
    )


def _segment(p: TimedSegment) -> dict[str, Any]:
    """Which stage a distinct stage time is of, as the fit's points and the profile's stages name it."""
    return {"first_op": p.first_op, "last_op": p.last_op, "device": p.device, "host": p.host}


def measured_stages(times: Sequence[StageTime], source: str) -> list[MeasuredStage]:
    """The distinct stage times as a profile keeps them (median of each segment's times)."""
    return [
        MeasuredStage(
            **_segment(p),
            invoke_us=round(p.measured_us, 1),
            reports=len(p.sources),
            source=source[:2000],
        )
        for p in distinct_points(times)
    ]


@dataclass(frozen=True)
class Remeasured:
    """What `plan solve --measured` plans with: the profile keeping the stage times, the refitted specs
    (the given ones when no refit was possible), and what the plan's notes say about both."""

    profile: Profile
    devices: list[DeviceSpec]
    host: HostSpec
    fit: VerifyFit | None
    notes: list[str]


def with_measurements(
    profile: Profile, devices: Sequence[DeviceSpec], host: HostSpec, reported: Sequence[Reported]
) -> Remeasured:
    """The profile with the reports' stage times kept, and the devices and host refitted to them."""
    if not reported:
        raise TpuplanError("--measured needs at least one plan verify report")
    reported = distinct_reports(reported)
    by_name: dict[str, DeviceSpec] = {}
    for d in devices:
        if by_name.setdefault(d.name, d) != d:
            raise TpuplanError(f"two different device specs are named {d.name!r}: name them apart")
    times = stage_times(profile, reported, set(by_name), host.name)
    digests = ", ".join(_short(r.report) for r in reported)
    simulated = any(r.report.simulated for r in reported)
    kind = "SIMULATED " if simulated else ""
    source = f"{kind}plan verify report(s) sha256 {digests}"
    kept = profile.model_copy(update={"measured_stages": measured_stages(times, source)})
    notes = [f"measured: {len(kept.measured_stages)} distinct stage time(s) from {len(reported)} {source}"]
    try:
        fit = refit(times, by_name, {host.name: host}, reported)
    except TooFewPoints as exc:
        return Remeasured(kept, list(devices), host, None, [*notes, f"no refit: {exc}"])
    notes += [
        f"refit ({fit.median_error_before:.1%} -> {fit.median_error_after:.1%} median stage error): {n}"
        for n in fit.notes
        if not n.startswith("SIMULATED")
    ]
    new_devices = [fit.devices[d.name] for d in devices]
    return Remeasured(kept, new_devices, fit.hosts[host.name], fit, notes)


def _short(report: VerifyReport) -> str:
    return hashlib.sha256(dump_json(report).encode()).hexdigest()[:12]


def distinct_reports(reported: Sequence[Reported]) -> list[Reported]:
    """Each report once: the same report given twice is the same evidence (R19)."""
    seen: dict[str, Reported] = {}
    for r in reported:
        seen.setdefault(hashlib.sha256(dump_json(r.report).encode()).hexdigest(), r)
    return list(seen.values())


def from_pairs(
    pairs: Sequence[tuple[Plan, VerifyReport, str]], profiles: Mapping[str, Profile]
) -> tuple[dict[str, DeviceSpec], dict[str, HostSpec], list[StageTime], list[Reported]]:
    """Plans and their reports (`plan calibrate --verify`): the devices and hosts they ran on (one spec per
    name), every stage time, each report with its plan's host; `profiles` by model sha256."""
    devices: dict[str, DeviceSpec] = {}
    hosts: dict[str, HostSpec] = {}
    times: list[StageTime] = []
    reported: list[Reported] = []
    for plan, report, where in pairs:
        check_pair(plan, report, where)
        for d in plan.devices:
            if devices.setdefault(d.name, d) != d:
                raise TpuplanError(
                    f"{where}: its plan's device {d.name!r} differs from an earlier plan's: one at a time"
                )
        if hosts.setdefault(plan.host.name, plan.host) != plan.host:
            raise TpuplanError(f"{where}: its plan's host {plan.host.name!r} differs from an earlier plan's")
        profile = profiles.get(plan.model.sha256)
        if profile is None:
            raise TpuplanError(
                f"{where}: of a plan of model sha256 {plan.model.sha256[:12]}: give that model with --model"
            )
        r = Reported(report, where, plan.host.name)
        times += stage_times(profile, [r], {d.name for d in plan.devices}, plan.host.name)
        reported.append(r)
    return devices, hosts, times, reported


def check_pair(plan: Plan, report: VerifyReport, where: str) -> None:
    """A report must be of this plan (its digest, its model, its very stages) to be read with it."""
    if report.plan_sha256 != plan_digest(plan):
        raise TpuplanError(
            f"{where}: a report of another plan (plan sha256 {report.plan_sha256[:12]}, given plan "
            f"{plan_digest(plan)[:12]})"
        )
    check_report_matches(report, plan, where)
