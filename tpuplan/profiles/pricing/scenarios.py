"""Coefficients of a spec by path, and the plausible variants of a device and host its calibration keeps
(and, for simulations, a device and host with chosen terms of the formula off by known factors).

A path names one coefficient of the cost formula on a spec: `invoke_overhead_us`, `link.in_us_per_kib`,
`op_costs.conv.us_per_mmac` (a device), `stage_us` (a host). A calibrated spec keeps, in its calibration,
scenarios: the fit made again without one source at a time. The same scenario of a device and a host
belong together (they come from one refit); a spec without that scenario keeps its own values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.coefficients import get_coefficient, set_coefficient
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


# Terms of the device whose quantity is an op-price sum: the op prices (formula.*_OP_PRICE) that make it up.
_OP_PRICES = {"compute": formula.DEVICE_OP_PRICE, "spill": formula.STREAM_OP_PRICE}


def perturbed(device: DeviceSpec, host: HostSpec, factors: Mapping[str, float]) -> tuple[DeviceSpec, HostSpec]:
    """The device and host with every term of the formula named in `factors` scaled by its factor: the
    coefficients it reads (an op-price sum's op prices, on every op class) multiplied."""
    names = {t.name for t in formula.ALL_TERMS}
    for term, factor in factors.items():
        if term not in names:
            raise ValueError(f"no term {term!r} in the cost formula")
        spec = next(t for t in formula.ALL_TERMS if t.name == term)
        for coef, _ in spec.products:
            if coef:
                device, host = _scaled(device, host, coef, factor)
            elif term in _OP_PRICES:
                for op_class in device.op_costs:
                    for field, _ in _OP_PRICES[term]:
                        path = f"op_costs.{op_class}.{field}"
                        device = set_coefficient(device, path, get_coefficient(device, path) * factor, calibrated=False)
            else:
                raise ValueError(f"term {term!r} has no coefficient to scale")
    return DeviceSpec.model_validate(device.model_dump()), HostSpec.model_validate(host.model_dump())


def _scaled(device: DeviceSpec, host: HostSpec, coef: str, factor: float) -> tuple[DeviceSpec, HostSpec]:
    owner, _, field = coef.partition(".")
    if owner == "host":
        return device, host.model_copy(update={field: getattr(host, field) * factor})
    path = field if owner == "device" else coef
    return set_coefficient(device, path, get_coefficient(device, path) * factor, calibrated=False), host
