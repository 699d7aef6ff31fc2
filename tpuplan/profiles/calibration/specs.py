"""Fitted parameter values written into device and host specs, each at the coefficients it sets."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.profiles.calibration.params import CHIP
from tpuplan.profiles.calibration.paramspace import ParamSpace
from tpuplan.profiles.pricing.coefficients import set_coefficient
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec


def apply_params(
    theta: np.ndarray,
    space: ParamSpace,
    used: np.ndarray,
    devices: Mapping[str, DeviceSpec],
    hosts: Mapping[str, HostSpec],
) -> tuple[dict[str, DeviceSpec], dict[str, HostSpec]]:
    """The specs with every parameter some row depends on written at its targets (the chip's at every Edge
    TPU device); the others keep the base values."""
    out_devices = dict(devices)
    out_hosts = dict(hosts)
    for p, value, u in zip_strict(space.params, theta, used):
        if not u:
            continue
        v = round(float(value), 4)
        for spec, path in p.targets:
            kind, _, name = spec.partition(":")
            if kind == "host":
                if name in out_hosts:
                    out_hosts[name] = set_coefficient(out_hosts[name], path, v)
                continue
            names = [n for n, d in out_devices.items() if d.backend == "edgetpu"] if spec == CHIP else [name]
            for n in names:
                if n in out_devices:
                    out_devices[n] = set_coefficient(out_devices[n], path, v)
    return out_devices, out_hosts
