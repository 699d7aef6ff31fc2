"""Dense stage tables for the planner: every stage a..b of one profile on one device and host.

The tables stack the rows of `StagePricer.row` (one start, every end) into n x n integer matrices, one
per stage value of the cost formula (`profiles.pricing.formula.STAGE_VALUES`: time T, serial S, bus V,
one-off O), and two masks: valid (the stage holds an op its device runs) and onchip (nothing streams).
`stage_parts` reads one stage back with its terms; `pipeline_cost` prices a cut list with the formula's
pipeline, the one definition every part of the planner uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tpuplan.compat import zip_strict
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing import formula
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.stagecost import StagePricer

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class StageParts:
    """One stage: its terms and values (whole microseconds) and what it holds (bytes, op counts)."""

    terms: dict[str, int]
    values: dict[str, int]
    uncalibrated_us: int
    tpu_ops: int
    host_ops: int
    onchip_bytes: int
    offchip_bytes: int
    param_bytes: int
    bytes_in: int
    bytes_out: int
    valid: bool
    fits: bool
    measured_us: int | None = None  # its invoke as measured (plan verify), kept in place of the prediction

    @property
    def total_us(self) -> int:
        return self.values["time"]

    @property
    def invoke_us(self) -> int:
        """The stage's interpreter run alone: what one invoke() of its segment takes (device + host ops),
        as measured where it was."""
        return int(formula.invoke_part(self.terms, self.measured_us))


@dataclass(frozen=True)
class StageCostTable:
    """Everything the planner needs about one (profile, device, host), as n x n integer matrices indexed
    [a, b] for the stage of ops a..b (entries with b < a are never valid), one per stage value."""

    device_name: str
    backend: str
    n: int
    values: Mapping[str, I64]
    valid: Mask
    onchip: Mask
    start_us: int = 0
    pricer: StagePricer | None = field(default=None, compare=False, repr=False)

    @property
    def time_us(self) -> I64:
        """T of every stage (the value the `max` bound reads, and what caps a stage)."""
        return self.values["time"]

    def value(self, name: str) -> I64:
        return self.values[name]

    def copied_time_us(self, a: int, b: int, copies: int) -> int:
        """The stage's time between results with `copies` devices taking inputs in turn (formula.interval)."""
        return formula.interval(int(self.time_us[a, b]), int(self.values["serial"][a, b]), copies)

    def stage_time_us(self, a: int, b: int) -> int:
        self._check(a, b)
        return int(self.time_us[a, b])

    def fits_on_chip(self, a: int, b: int) -> bool:
        self._check(a, b)
        return bool(self.onchip[a, b])

    def stage_values(self, a: int, b: int) -> dict[str, int]:
        return {k: int(v[a, b]) for k, v in self.values.items()}

    def _check(self, a: int, b: int) -> None:
        if not 0 <= a <= b < self.n:
            raise ValueError(f"bad stage {a}..{b} for {self.n} ops")

    def stage_parts(self, a: int, b: int) -> StageParts:
        """The breakdown of stage a..b, read from the same row the tables were built from (a table made
        of plain integers, without a pricer, has its time as its only term)."""
        self._check(a, b)
        values = self.stage_values(a, b)
        if self.pricer is None:
            terms = {name: 0 for name in formula.TERM_NAMES} | {"compute": values["time"]}
            return StageParts(
                terms, values, 0, b - a + 1, 0, 0, 0, 0, 0, 0, bool(self.valid[a, b]), bool(self.onchip[a, b])
            )
        r, k = self.pricer.row(a), b - a

        def at(key: str) -> int:
            return int(r[key][k])

        measured = r.get("measured")

        return StageParts(
            terms={name: int(v[k]) for name, v in r["terms"].items()},
            values={name: int(v[k]) for name, v in r["values"].items()},
            uncalibrated_us=at("uncal"),
            tpu_ops=at("tpu_ops"),
            host_ops=b - a + 1 - at("tpu_ops"),
            onchip_bytes=at("on"),
            offchip_bytes=at("off"),
            param_bytes=at("params"),
            bytes_in=at("seg_in"),
            bytes_out=at("seg_out"),
            valid=bool(r["valid"][k]),
            fits=bool(r["fits"][k]),
            measured_us=None if measured is None or np.isnan(measured[k]) else int(measured[k]),
        )


@dataclass(frozen=True)
class PipelineCost:
    """The pipeline-level numbers of one cut list (all integer us); see formula.pipeline."""

    period_us: int
    latency_us: int
    oneoff_us: int
    bound: str  # the period bound that sets the period (formula.PERIOD_BOUNDS)
    bounds: dict[str, int]

    def per_input_us(self, batch: int) -> float:
        """Time per input of a batch pushed at once into a fresh pipeline (formula.per_input)."""
        out: float = formula.per_input(self.period_us, self.latency_us, self.oneoff_us, batch)
        return out


def stage_pairs(cuts: Sequence[int], n: int) -> list[tuple[int, int]]:
    """(first op, last op) of every stage of a cut list over n ops."""
    return list(zip_strict([0, *(c + 1 for c in cuts)], [*cuts, n - 1]))


def pipeline_cost(
    tables: Sequence[StageCostTable], cuts: Sequence[int], copies: Sequence[int] | None = None
) -> PipelineCost:
    """The plan `cuts` (stage k on tables[k], with copies[k] devices taking its inputs in turn) priced by
    the formula's pipeline: one input still goes through one copy of each stage (the latency), the
    serialized and bus work of every input is still done, and each copy pays the stage's one-off."""
    stages = [t.stage_values(a, b) for t, (a, b) in zip_strict(tables, stage_pairs(cuts, tables[0].n))]
    got = formula.pipeline(stages, copies, tables[0].start_us)
    return PipelineCost(
        int(got.period), int(got.latency), int(got.oneoff), got.bound, {k: int(v) for k, v in got.bounds.items()}
    )


def stage_table(profile: Profile, device: DeviceSpec | None = None, host: HostSpec | None = None) -> StageCostTable:
    """The dense tables of a profile on one device and host (the profile's own when None)."""
    dev = device or profile.device
    spec_host = host or resolve_host(profile.host)
    pricer = StagePricer(profile, dev, spec_host)
    n = pricer.n
    mats = {k: np.zeros((n, n), dtype=np.int64) for k in formula.STAGE_VALUES}
    masks = {k: np.zeros((n, n), dtype=np.bool_) for k in ("valid", "fits")}
    for a in range(n):
        r = pricer.row(a)
        for k, mat in mats.items():
            mat[a, a:] = r["values"][k]
        for k, msk in masks.items():
            msk[a, a:] = r[k]
    start = int(formula.pipeline_start(pricer.coef, lambda _, x: formula.whole_us(x)))
    return StageCostTable(dev.name, dev.backend, n, mats, masks["valid"], masks["fits"], start, pricer)
