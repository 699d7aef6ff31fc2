"""The cost model, written once: its coefficients, what a stage's time is made of, and the bounds of a
pipeline's period; `pipeline_formula` holds the other half, how the period, latency and one-off cost
follow from the stages and what the planner minimises.

Every consumer reads these definitions instead of spelling them out: the stage pricer
(`profiles.pricing.stagecost`) evaluates the terms on arrays of candidate stages; the plan document
(`planner.plan_check`) evaluates the composition again on a plan's integers; the exact search, its bounds
and CP-SAT (`planner.search`) take the period's bounds from `PERIOD_BOUNDS`; the calibration
(`profiles.calibration.timing`) evaluates the same terms on linear forms and dual numbers; verify and its
refit read the terms and parts by name. A new term is an entry in `TIME_TERMS` (and, for a new
coefficient, a field below and a value in a preset); a new period bound an entry in `PERIOD_BOUNDS`
(tests/profiles/test_formula.py does both). Units: microseconds, bytes, KiB, millions of MACs (MMAC).
Evaluation is generic: a value may be an int, float, numpy array, linear form or dual number.

    op prices     device op = us_per_op + us_per_mmac x MMAC (padded) + us_per_kib_act x KiB out
                  streaming = stream_us_per_kib x KiB cached; host op = us_per_op + us_per_kib x KiB + ...
    stage terms   TIME_TERMS, each in one part: device (inside the accelerator's invoke), host (ops left
                  to the host CPU) or runner (the pipeline runner's host work outside invoke)
    stage values  T = sum of the time terms; S = sum of SERIALIZED coefficient x part; V, O = sums of
                  BUS_TERMS and ONEOFF_TERMS; W = T when the stage is in a state loop (GATED_VALUES); a
                  stage whose invoke was measured (`plan verify`) has the measured time in place of its
                  device and host parts (`measured_parts`)
    pipeline      P = max over PERIOD_BOUNDS (the slowest stage, sums of S, V and W); L = sum T;
                  O = start + sum copies x O_k
                  batch of N: (O + L + (N - 1) P) / N;  objective J = alpha P + beta L + gamma O
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import MAX_RATE, MAX_US

Num = Any  # an int, float, numpy array or linear form: anything that adds and multiplies
KIB = 1024

OpClass = Literal["fc", "conv", "depthwise", "elementwise", "reduce", "resize", "custom", "other"]
OP_CLASSES: tuple[OpClass, ...] = ("fc", "conv", "depthwise", "elementwise", "reduce", "resize", "custom", "other")
ON_CHIP_CLASSES: tuple[OpClass, ...] = tuple(c for c in OP_CLASSES if c != "custom")  # a custom op stays on the host


# ---------------------------------------------------------------------------------------------------
# Coefficients: the numbers a device or host spec gives the formula (DeviceSpec and HostSpec inherit
# these models, so a new coefficient is a field here and a value in a preset).


class OpClassCost(StrictModel):
    """Time of one op of a class on the device: fixed + per million MACs (of the padded layout on an
    Edge TPU) + per KiB of its output activation; streaming cost per KiB of parameters."""

    us_per_op: float = Field(0.0, ge=0, le=MAX_US)
    us_per_mmac: float = Field(0.0, ge=0, le=MAX_RATE)
    us_per_kib_act: float = Field(0.0, ge=0, le=MAX_RATE)
    stream_us_per_kib: float = Field(0.0, ge=0, le=MAX_RATE)
    calibrated: bool = Field(False, description="fitted to real measurements; else an uncalibrated default")


class LinkCost(StrictModel):
    """Moving tensors between the host and the device, per KiB; the first inference's parameter upload."""

    in_us_per_kib: float = Field(0.0, ge=0, le=1e6, description="host -> device tensor copy and transfer")
    out_us_per_kib: float = Field(0.0, ge=0, le=1e6, description="device -> host")
    upload_us_per_kib: float = Field(0.0, ge=0, le=1e6, description="cached parameters, first inference")
    calibrated: bool = False


class DeviceTimes(StrictModel):
    """The time coefficients of one accelerator (`DeviceSpec` adds what it holds and where it came from)."""

    invoke_overhead_us: float = Field(0.0, ge=0, le=MAX_US)
    stream_tile_pixels: int = Field(
        0, ge=0, le=1 << 30, description="output pixels per pass over a streamed layer's weights (0: one pass)"
    )
    link: LinkCost = Field(default_factory=lambda: LinkCost())
    op_costs: dict[OpClass, OpClassCost] = Field(default_factory=dict)

    def cost(self, op_class: str) -> OpClassCost:
        """The class's cost, `other`'s when the class has none of its own, zero when neither exists."""
        return self.op_costs.get(op_class) or self.op_costs.get("other") or OpClassCost()  # type: ignore[call-overload]


class HostOpCost(StrictModel):
    """Host CPU time of one op of a class: fixed + per KiB of its input and output tensors + per million
    MACs. `calibrated`: fitted to ops measured on a real CPU (`plan profile --measure`)."""

    us_per_op: float = Field(0.0, ge=0, le=MAX_US)
    us_per_kib: float = Field(0.0, ge=0, le=MAX_RATE)
    us_per_mmac: float = Field(0.0, ge=0, le=MAX_RATE)
    calibrated: bool = False


class HostTimes(StrictModel):
    """The time coefficients of a host and its pipeline runner (`HostSpec` adds its name and host ops)."""

    invoke_us: float = Field(0.0, ge=0, le=MAX_US, description="host-side work per Edge TPU invoke (driver, binding)")
    io_us_per_kib: float = Field(
        0.0, ge=0, le=MAX_RATE, description="host-side handling per KiB into and out of an Edge TPU (copies)"
    )
    tpu_op_us: float = Field(0.0, ge=0, le=MAX_US, description="host-side driver work per op an Edge TPU runs")
    stream_io_us_per_kib: float = Field(0.0, ge=0, le=MAX_RATE, description="host-side work per KiB streamed")
    host_ops_scale: float = Field(
        1.0, ge=0, le=1e3, description="the ops left to the host CPU take this times their prices on this machine"
    )
    stage_us: float = Field(0.0, ge=0, le=MAX_US)
    stage_us_per_kib: float = Field(0.0, ge=0, le=MAX_RATE)
    serialized: float = Field(0.0, ge=0, le=1, description="share of the stage's host work under one lock")
    serialized_device: float = Field(0.0, ge=0, le=1, description="share of the device time that serializes too")
    start_us: float = Field(0.0, ge=0, le=MAX_US)
    stream_extra_us: float = Field(0.0, ge=0, le=1e7, description="per inference, for each stage that streams")
    stream_cold_us: float = Field(0.0, ge=0, le=1e7, description="once per run, for each stage that streams")
    fresh_upload: bool = Field(False, description="each run starts new interpreters: the first input uploads")
    bus_shared: bool = Field(True, description="the devices share one host controller")
    bus_bytes_per_us: float = Field(376.0, gt=0.001, le=1e6, description="raw rate of that controller")

    @property
    def bus_us_per_kib(self) -> float:
        """Time per KiB over the shared controller (zero when the devices do not share one)."""
        return KIB / self.bus_bytes_per_us if self.bus_shared else 0.0


def coefficient(name: str, device: DeviceTimes, host: HostTimes) -> float:
    """The value of a coefficient named `device.FIELD`, `link.FIELD` or `host.FIELD`; a flag is 0 or 1."""
    owner, _, field = name.partition(".")
    source = {"device": device, "link": device.link, "host": host}.get(owner)
    if source is None or not hasattr(source, field):
        raise TpuplanError(f"internal error: unknown cost coefficient {name!r}")
    return float(getattr(source, field))


Coefficients = Callable[[str], Num]  # a coefficient's value by name (`coefficient`, or a fit's parameters)


def spec_coefficients(device: DeviceTimes, host: HostTimes) -> Coefficients:
    return lambda name: coefficient(name, device, host)


# ---------------------------------------------------------------------------------------------------
# Op prices: one op's time, from its class's (or op type's) coefficients and its own quantities.

# (coefficient field, op quantity): count is 1, mmac the MACs / 1e6 (padded on an Edge TPU), out_kib
# its output KiB, act_kib its input and output KiB, stream_kib its parameters as the compiler lays them out
# times the passes over them (`stream_passes`).
Products = tuple[tuple[str, str], ...]
DEVICE_OP_PRICE: Products = (("us_per_op", "count"), ("us_per_mmac", "mmac"), ("us_per_kib_act", "out_kib"))
STREAM_OP_PRICE: Products = (("stream_us_per_kib", "stream_kib"),)
HOST_OP_PRICE: Products = (("us_per_op", "count"), ("us_per_kib", "act_kib"), ("us_per_mmac", "mmac"))


def op_price(products: Products, cost: Callable[[str], Num], q: Mapping[str, Num]) -> Num:
    """Sum of coefficient x quantity over `products` (a price above, linear in both)."""
    total: Num = 0.0
    for field, quantity in products:
        total = total + cost(field) * q[quantity]
    return total


def stream_passes(out_pixels: int, tile_pixels: int) -> int:
    """Passes over a streamed layer's weights: one per tile of output pixels (weights that stay off chip
    are fetched again for every tile of the output the accelerator computes at once)."""
    return max(1, -(-out_pixels // tile_pixels)) if tile_pixels > 0 else 1


def whole_us(x: float) -> int:
    """Microseconds rounded up (a hair of float noise below a whole number does not round it up)."""
    return max(0, math.ceil(x - 1e-9))


# ---------------------------------------------------------------------------------------------------
# Stage terms. Stage quantities the pricer provides for every candidate stage:
STAGE_QUANTITIES: dict[str, str] = {
    "one": "1",
    "edgetpu": "1 when the stage has an Edge TPU part, else 0",
    "tpu_ops": "ops the Edge TPU runs",
    "edgetpu_io_kib": "KiB into and out of the Edge TPU part (0 on a CPU device)",
    "compute": "sum of the device prices of the ops the accelerator runs (us)",
    "spill": "sum of the streaming prices of the layers it does not cache (us)",
    "host_ops": "sum of the host prices of the ops left to the host CPU (us; measured where measured)",
    "tpu_in_kib": "KiB into the accelerator's part (on a CPU device: into the stage)",
    "tpu_out_kib": "KiB out of the accelerator's part (on a CPU device: out of the stage)",
    "seg_kib": "KiB of the stage's boundary tensors, in and out",
    "onchip_kib": "KiB of parameters cached on chip",
    "bus_in_kib": "KiB to the device over the host controller per input: tensors in, streamed parameters",
    "bus_out_kib": "KiB from the device over the host controller per input: tensors out",
    "streams": "1 when some layer streams its parameters, else 0",
    "stream_kib": "KiB of parameters streamed per input (a layer's once per pass over it)",
    "in_loop": "1 when the stage holds an op of a state loop (the next input needs this one's state), else 0",
}

Part = Literal["device", "host", "runner"]
PARTS: tuple[Part, ...] = ("device", "host", "runner")


@dataclass(frozen=True)
class Term:
    """A named part of a stage's cost: the sum of coefficient x stage quantity over `products` (a
    coefficient "" is 1), rounded up to whole microseconds, and 0 unless the flag `when` is set."""

    name: str
    part: Part | None  # which part of the stage's time T it is in (None: not in T)
    products: Products
    when: str | None = None
    doc: str = ""


TIME_TERMS: tuple[Term, ...] = (
    Term("overhead", "device", (("device.invoke_overhead_us", "one"),), doc="the accelerator's invoke overhead"),
    Term("compute", "device", (("", "compute"),), doc="the accelerator's ops"),
    Term("spill", "device", (("", "spill"),), doc="streaming the parameters it does not cache"),
    Term(
        "link",
        "device",
        (("link.in_us_per_kib", "tpu_in_kib"), ("link.out_us_per_kib", "tpu_out_kib")),
        doc="tensors into and out of the accelerator",
    ),
    Term("host_ops", "host", (("host.host_ops_scale", "host_ops"),), doc="ops the compiler leaves to the host CPU"),
    Term("host_invoke", "host", (("host.invoke_us", "edgetpu"),), doc="the host's side of an invoke"),
    Term("host_io", "host", (("host.io_us_per_kib", "edgetpu_io_kib"),), doc="the host's side of the transfers"),
    Term("host_tpu_ops", "host", (("host.tpu_op_us", "tpu_ops"),), doc="the host's driver work per Edge TPU op"),
    Term("host_stream", "host", (("host.stream_io_us_per_kib", "stream_kib"),), doc="the host's side of streaming"),
    Term(
        "runner",
        "runner",
        (("host.stage_us", "one"), ("host.stage_us_per_kib", "seg_kib")),
        doc="the runner's host work outside invoke: dispatch, copies of the boundary tensors",
    ),
    Term("stream_extra", "runner", (("host.stream_extra_us", "streams"),), doc="the runner's extra to stream"),
)
BUS_TERMS: tuple[Term, ...] = (  # USB 3.0 and PCIe carry each direction at full rate at once
    Term("bus_in", None, (("host.bus_us_per_kib", "bus_in_kib"),), doc="bytes to the devices over one controller"),
    Term("bus_out", None, (("host.bus_us_per_kib", "bus_out_kib"),), doc="bytes from the devices"),
)
ONEOFF_TERMS: tuple[Term, ...] = (
    Term("stream_cold", None, (("host.stream_cold_us", "streams"),), doc="first run of a streaming stage"),
    Term("upload", None, (("link.upload_us_per_kib", "onchip_kib"),), when="host.fresh_upload", doc="first upload"),
)
ALL_TERMS: tuple[Term, ...] = TIME_TERMS + BUS_TERMS + ONEOFF_TERMS
TERM_NAMES: tuple[str, ...] = tuple(t.name for t in TIME_TERMS)

# The stage's share that no other stage can overlap: coefficient x the sum of a part's terms.
SERIALIZED: tuple[tuple[str, Part], ...] = (("host.serialized", "runner"), ("host.serialized_device", "device"))

# Stage values: what the pipeline reads of a stage; besides T and S, each a sum of some terms.
STAGE_VALUES: dict[str, str] = {
    "time": "T: one input through the stage",
    "serial": "S: its share under one lock, which adds up across stages",
    "bus_in": "V_in: its time on a shared host controller, to the device",
    "bus_out": "V_out: its time on a shared host controller, from the device",
    "oneoff": "O: once per run (each copy pays it)",
    "loop": "W: its time when it holds an op of a state loop, else 0 (the next input waits for it)",
}
SUMS: dict[str, tuple[str, ...]] = {
    "bus_in": ("bus_in",),
    "bus_out": ("bus_out",),
    "oneoff": ("stream_cold", "upload"),
}
# Stage values that are another value while a stage quantity (a 0/1 flag) is set, else 0.
GATED_VALUES: dict[str, tuple[str, str]] = {"loop": ("time", "in_loop")}


def term_value(term: Term, coef: Coefficients, q: Mapping[str, Num]) -> Num:
    """One term, not rounded: sum of coefficient x quantity, times the `when` flag."""
    total: Num = 0.0
    for name, quantity in term.products:
        total = total + (coef(name) if name else 1.0) * q[quantity]
    return total * coef(term.when) if term.when else total


Round = Callable[[str, Num], Num]  # (what, value) -> the value in whole microseconds, or as it is


def as_is(name: str, value: Num) -> Num:  # no rounding: a fit's linear forms and dual numbers
    return value


def stage_terms(coef: Coefficients, q: Mapping[str, Num], round_up: Round = as_is) -> dict[str, Num]:
    """Every term of `ALL_TERMS` of the stages whose quantities are `q`, each passed through `round_up`
    with its name (whole microseconds for the planner; as it is for a fit)."""
    return {t.name: round_up(t.name, term_value(t, coef, q)) for t in ALL_TERMS}


def part_sums(terms: Mapping[str, Num]) -> dict[Part, Num]:
    """The time terms summed per part."""
    out: dict[Part, Num] = {p: 0 for p in PARTS}
    for t in TIME_TERMS:
        if t.part is not None:
            out[t.part] = out[t.part] + terms[t.name]
    return out


# The parts a stage timed on its own measures: its interpreter's invoke, without the runner around it.
INVOKE_PARTS: tuple[Part, ...] = ("device", "host")


def measured_parts(parts: Mapping[Part, Num], measured: Num | None) -> tuple[dict[Part, Num], Num]:
    """The parts and the invoke time (the sum of INVOKE_PARTS) of a stage whose invoke was measured:
    the measured time replaces the predicted invoke, shared between the invoke's parts as predicted (all
    on the device when nothing was predicted), so that a serialized share still reads its part. `measured`
    None keeps the prediction; in an array, NaN marks the stages not measured."""
    invoke = sum(parts[p] for p in INVOKE_PARTS)
    if measured is None:
        return dict(parts), invoke
    m = np.asarray(measured, dtype=np.float64)
    given = ~np.isnan(m)
    total = np.asarray(invoke, dtype=np.float64)
    out: dict[Part, Num] = dict(parts)
    for p in INVOKE_PARTS:
        first = p == INVOKE_PARTS[0]
        share = np.where(total > 0, np.asarray(parts[p], dtype=np.float64) / np.where(total > 0, total, 1.0), first)
        out[p] = _plain(np.where(given, m * share, parts[p]))
    return out, _plain(np.where(given, m, total))


def _plain(x: Any) -> Num:
    """A 0-d array as a float (a plan's scalars), any other array as it is."""
    return float(x) if np.ndim(x) == 0 else x


def stage_values(
    terms: Mapping[str, Num],
    coef: Coefficients,
    round_up: Round = as_is,
    measured: Num | None = None,
    q: Mapping[str, Num] | None = None,
) -> dict[str, Num]:
    """T, S, V, O, ... of a stage from its terms (`round_up` applies to S, a product of two numbers, and
    to the gated values, read with the stage quantities `q`: 0 without them); with `measured`, its invoke
    measured (`measured_parts`)."""
    parts, invoke = measured_parts(part_sums(terms), measured)
    serial: Num = 0.0
    for name, part in SERIALIZED:
        serial = serial + coef(name) * parts[part]
    rest = sum(parts[p] for p in PARTS if p not in INVOKE_PARTS)
    out = {
        "time": invoke + rest,
        "serial": round_up("serialized", serial),
        **{value: sum(terms[name] for name in names) for value, names in SUMS.items()},
    }
    for name, (value, flag) in GATED_VALUES.items():
        out[name] = round_up(name, out[value] * q[flag]) if q is not None and flag in q else 0 * out[value]
    return out


def invoke_part(terms: Mapping[str, Num], measured: Num | None = None) -> Num:
    """The stage's interpreter run alone (what a stage timed on its own measures): device and host parts,
    or the measured time where one is given."""
    return measured_parts(part_sums(terms), measured)[1]


# ---------------------------------------------------------------------------------------------------
# The period's bounds (the pipeline that reads them is `pipeline_formula`).


@dataclass(frozen=True)
class PeriodBound:
    """One lower bound of the period: the largest (`max`) or the sum (`sum`) over the stages of a stage
    value (`time` is read with copies, as `interval`)."""

    name: str
    value: str
    combine: Literal["max", "sum"]
    doc: str


PERIOD_BOUNDS: tuple[PeriodBound, ...] = (
    PeriodBound("stage", "time", "max", "the slowest stage (with copies: its time between results)"),
    PeriodBound("serialized", "serial", "sum", "host work that does not overlap (summed over the stages)"),
    PeriodBound("bus_in", "bus_in", "sum", "the shared USB controller, to the devices (all stages' bytes)"),
    PeriodBound("bus_out", "bus_out", "sum", "the shared USB controller, from the devices (all stages' bytes)"),
    PeriodBound("state", "loop", "sum", "a state loop (the next input waits for this one's state through it)"),
)
BOUND_NAMES: tuple[str, ...] = tuple(b.name for b in PERIOD_BOUNDS)
