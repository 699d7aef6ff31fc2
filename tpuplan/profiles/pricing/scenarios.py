"""Coefficients of a spec by path, and the plausible variants of a device and host its calibration keeps.

A path names one coefficient of the cost formula on a spec: `invoke_overhead_us`, `link.in_us_per_kib`,
`op_costs.conv.us_per_mmac` (a device), `stage_us` (a host). A calibrated spec keeps, in its calibration,
scenarios: the fit made again without one source at a time. The same scenario of a device and a host
belong together (they come from one refit); a spec without that scenario keeps its own values.
"""

from __future__ import annotations

from typing import TypeVar

from tpuplan.profiles.pricing.coefficients import set_coefficient
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec

S = TypeVar("S", DeviceSpec, HostSpec)
NOMINAL = "nominal"


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
