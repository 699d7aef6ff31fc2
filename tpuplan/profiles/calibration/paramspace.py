"""The space a calibration fits in: its parameters in a fixed order over the base specs in use, and the
formula's coefficients of a stage as linear forms of them.

Apart from the declarations (`profiles.calibration.params`: what each parameter sets and its range) so
that those read as a table; this module is how the fit evaluates the formula with them (`fit`, `timing`,
`segments` and `specs` read it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from tpuplan.profiles.calibration.forms import Lin
from tpuplan.profiles.calibration.params import CHIP, Param
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.coefficients import get_coefficient
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec

F64 = npt.NDArray[np.float64]


class ParamSpace:
    """The parameters of one fit, in a fixed order, over the base specs in use (devices and hosts by name);
    what no parameter sets keeps the base spec's value."""

    def __init__(
        self, params: Sequence[Param], devices: Mapping[str, DeviceSpec], hosts: Mapping[str, HostSpec]
    ) -> None:
        self.devices, self.hosts = dict(devices), dict(hosts)
        used = {f"device:{d}" for d in devices} | {f"host:{h}" for h in hosts} | {CHIP}
        self.params = [p for p in params if any(spec in used for spec, _ in p.targets)]
        self.n = len(self.params)
        self.index = {p.name: i for i, p in enumerate(self.params)}
        self._where: dict[tuple[str, str], int] = {}
        for i, p in enumerate(self.params):
            for target in p.targets:
                if target in self._where:
                    raise TpuplanError(f"internal error: {target} is set by two calibration parameters")
                self._where[target] = i

    def _lookup(self, spec: str, path: str, base: float, device: bool) -> Lin | float:
        i = self._where.get((spec, path))
        if i is None and device and self.devices[spec.removeprefix("device:")].backend == "edgetpu":
            i = self._where.get((CHIP, path))
        return base if i is None else Lin.unit(self.n, i)

    def coefficients(self, device: str, host: str) -> formula.Coefficients:
        """The formula's coefficients of a stage on `device` run by `host`: fitted ones as linear forms."""
        dev, spec = self.devices[device], self.hosts[host]

        def coef(name: str) -> Lin | float:
            owner, _, field = name.partition(".")
            if owner == "host":
                return self._lookup(f"host:{host}", field, formula.coefficient(name, dev, spec), False)
            path = field if owner == "device" else name
            return self._lookup(f"device:{device}", path, formula.coefficient(name, dev, spec), True)

        return coef

    def op_coefficients(self, device: str, op_class: str) -> formula.Coefficients:
        """An op class's device coefficients on `device`."""
        dev = self.devices[device]
        return lambda field: self._lookup(
            f"device:{device}",
            f"op_costs.{op_class}.{field}",
            get_coefficient(dev, f"op_costs.{op_class}.{field}"),
            True,
        )

    def base_theta(self) -> F64:
        """Each parameter's value in the base specs (its first target's): what an unused one keeps."""
        out = []
        for p in self.params:
            spec, path = p.targets[0]
            kind, _, name = spec.partition(":")
            owner: DeviceSpec | HostSpec
            if kind == "host":
                owner = self.hosts[name]
            else:
                owner = next(iter(self.devices.values())) if name == "*" else self.devices[name]
            out.append(get_coefficient(owner, path))
        return np.array(out)

    def bounds(self) -> tuple[F64, F64]:
        return np.array([p.low for p in self.params]), np.array([p.high for p in self.params])

    def init(self) -> F64:
        return np.array([p.init for p in self.params])
