"""A coefficient of a device or host spec by path, read and set: `invoke_overhead_us`,
`link.in_us_per_kib`, `op_costs.conv.us_per_mmac` (a device), `stage_us` (a host). Its own module (it
imports only the cost formula) so that the specs can check their scenarios when they are read."""

from __future__ import annotations

from typing import Any, TypeVar

from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.pricing.formula import OpClassCost

S = TypeVar("S", bound=StrictModel)


def get_coefficient(spec: Any, path: str) -> float:
    """A coefficient of a spec by path."""
    parts = path.split(".")
    if parts[0] == "op_costs":
        return float(getattr(spec.cost(parts[1]), parts[2]))
    obj: object = spec
    for p in parts:
        obj = getattr(obj, p)
    return float(obj)  # type: ignore[arg-type]


def set_coefficient(spec: S, path: str, value: float, *, calibrated: bool = True) -> S:
    """The spec with one coefficient set (`op_costs.CLASS.FIELD` and `link.FIELD` mark theirs calibrated)."""
    parts = path.split(".")
    if parts[0] == "op_costs":
        costs = dict(spec.op_costs)  # type: ignore[attr-defined]
        cost = costs.get(parts[1]) or spec.cost(parts[1]) or OpClassCost()  # type: ignore[attr-defined]
        update = {parts[2]: value, **({"calibrated": True} if calibrated else {})}
        costs[parts[1]] = cost.model_copy(update=update)
        out: S = spec.model_copy(update={"op_costs": costs})
        return out
    if parts[0] == "link":
        link = spec.link.model_copy(update={parts[1]: value, **({"calibrated": True} if calibrated else {})})  # type: ignore[attr-defined]
        return spec.model_copy(update={"link": link})
    return spec.model_copy(update={parts[0]: value})


def check_scenarios(spec: S) -> S:
    """Every scenario of a spec's calibration names coefficients of it and keeps each inside its field's
    bounds (what the spec itself would accept): a scenario is used to price, so it is checked like a spec."""
    cal = getattr(spec, "calibration", None)
    for scenario in cal.scenarios if cal is not None else []:
        variant = spec.model_copy(update={"calibration": None})
        for path, value in scenario.values.items():
            try:
                get_coefficient(spec, path)
            except (AttributeError, IndexError, TypeError):
                raise ValueError(f"scenario {scenario.name!r}: {path} is not a coefficient of this spec") from None
            variant = set_coefficient(variant, path, value)
        try:
            type(spec).model_validate(variant.model_dump())
        except ValueError as exc:
            first = str(exc).splitlines()[1:3]
            raise ValueError(f"scenario {scenario.name!r} sets a coefficient out of range: {' '.join(first)}") from None
    return spec
