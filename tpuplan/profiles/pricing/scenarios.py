"""Coefficients of a spec by path, and the plausible variants of a device and host its calibration keeps.

A path names one coefficient of the cost formula on a spec: `invoke_overhead_us`, `link.in_us_per_kib`,
`op_costs.conv.us_per_mmac` (a device), `stage_us` (a host). A calibrated spec keeps, in its calibration,
scenarios: the fit made again without one source at a time. The same scenario of a device and a host
belong together (they come from one refit); a spec without that scenario keeps its own values.
"""

from __future__ import annotations

from typing import TypeVar

from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.formula import OpClassCost
from tpuplan.profiles.pricing.host import HostSpec

S = TypeVar("S", DeviceSpec, HostSpec)
NOMINAL = "nominal"


def get_coefficient(spec: DeviceSpec | HostSpec, path: str) -> float:
    """A coefficient of a spec by path."""
    parts = path.split(".")
    if parts[0] == "op_costs" and isinstance(spec, DeviceSpec):
        return float(getattr(spec.cost(parts[1]), parts[2]))
    obj: object = spec
    for p in parts:
        obj = getattr(obj, p)
    return float(obj)  # type: ignore[arg-type]


def set_coefficient(spec: S, path: str, value: float, *, calibrated: bool = True) -> S:
    """The spec with one coefficient set (`op_costs.CLASS.FIELD` and `link.FIELD` mark theirs calibrated)."""
    parts = path.split(".")
    if parts[0] == "op_costs" and isinstance(spec, DeviceSpec):
        costs = dict(spec.op_costs)
        cost = costs.get(parts[1]) or spec.cost(parts[1]) or OpClassCost()  # type: ignore[call-overload]
        update = {parts[2]: value, **({"calibrated": True} if calibrated else {})}
        costs[parts[1]] = cost.model_copy(update=update)  # type: ignore[index]
        out: S = spec.model_copy(update={"op_costs": costs})
        return out
    if parts[0] == "link" and isinstance(spec, DeviceSpec):
        link = spec.link.model_copy(update={parts[1]: value, **({"calibrated": True} if calibrated else {})})
        return spec.model_copy(update={"link": link})
    return spec.model_copy(update={parts[0]: value})


def with_scenario(spec: S, name: str) -> S:
    """The spec in one of its calibration's scenarios (as it is when it has none of that name)."""
    cal = spec.calibration
    found = next((s for s in cal.scenarios if s.name == name), None) if cal is not None else None
    if found is None:
        return spec
    for path, value in found.values.items():
        spec = set_coefficient(spec, path, value, calibrated=False)
    return spec


def scenario_names(*specs: DeviceSpec | HostSpec) -> list[str]:
    """Every scenario any of the specs keeps, in order, after the nominal one."""
    names = [s.name for spec in specs if spec.calibration is not None for s in spec.calibration.scenarios]
    return [NOMINAL, *dict.fromkeys(names)]
