"""Which devices a plan may use: in stage order, or a pool the planner assigns, with or without copies.

- in order (today's `--device a,b,c` with `--in-order`, or one device for every stage): stage s runs
  on devices[s] (the one device when one is given); K stages at most.
- a pool (`--device "2x edgetpu-usb, 1x edgetpu-pci"`): every stage may run on any kind, at most
  counts[kind] devices of a kind in all; the planner chooses the assignment and proves it best over all
  of them (CP-SAT sees one boolean per stage, end and kind).
- copies (`--replicate`): a stage may run on several devices of its kind taking its inputs in turn; one
  stage on every device is data parallelism, the whole model on each TPU.
`DeviceSet.problem(tables, k)` is the search problem of at most k TPUs (`planner.search.problem`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tpuplan.compat import zip_strict
from tpuplan.planner.search.problem import Option, Problem, table_loops
from tpuplan.planner.search.replicate import MAX_REPLICATED_TPUS
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.profiles.pricing.tables import StageCostTable, stage_table

POOL_RANK = ("stages",)  # then the goal's secondary number


class Tables:
    """One stage table per distinct device (built once, grown by every search that reads it)."""

    def __init__(self, profile: Profile, host: HostSpec) -> None:
        self.profile, self.host = profile, host
        self._cache: dict[str, StageCostTable] = {}

    def of(self, device: DeviceSpec) -> StageCostTable:
        key = device.model_dump_json()
        if key not in self._cache:
            self._cache[key] = self.new(device)
        return self._cache[key]

    def new(self, device: DeviceSpec) -> StageCostTable:
        """A new table of the device (planner.robust's tables price every scenario too)."""
        return stage_table(self.profile, device, self.host)

    def all(self) -> list[StageCostTable]:
        """The tables built so far."""
        return list(self._cache.values())


@dataclass(frozen=True)
class DeviceSet:
    """The devices of a plan: `kinds` with `counts` (a pool), or `kinds` in stage order (counts None:
    stage s on kinds[s], or on kinds[0] when there is one), with or without copies."""

    kinds: tuple[DeviceSpec, ...]
    counts: tuple[int, ...] | None = None
    copies: bool = False

    @staticmethod
    def pool(devices: Sequence[tuple[DeviceSpec, int]], copies: bool = False) -> DeviceSet:
        """A pool from (device, count) items; the same device given twice adds up."""
        kinds: list[DeviceSpec] = []
        counts: list[int] = []
        for dev, n in devices:
            if n < 1:
                raise TpuplanError(f"a pool holds at least one of each device ({n}x {dev.name})")
            same = next((i for i, k in enumerate(kinds) if k == dev), None)
            if same is None:
                kinds.append(dev)
                counts.append(n)
            else:
                counts[same] += n
        names = [k.name for k in kinds]
        if len(set(names)) != len(names):
            raise TpuplanError(f"two different devices are both named {_twice(names)!r}: name them apart")
        return DeviceSet(tuple(kinds), tuple(counts), copies)

    @property
    def is_pool(self) -> bool:
        return self.counts is not None

    @property
    def total(self) -> int | None:
        """Devices in the pool (None: as many as asked)."""
        return None if self.counts is None else sum(self.counts)

    def describe(self) -> str:
        if self.counts is None:
            return ", ".join(k.name for k in self.kinds)
        return ", ".join(f"{n}x {k.name}" for k, n in zip_strict(self.kinds, self.counts))

    def problem(self, tables: Tables, k: int) -> Problem:
        """At most k TPUs (stages, or copies in all with `copies`)."""
        if self.copies and k > MAX_REPLICATED_TPUS:
            raise TpuplanError(f"copies are planned for 1 to {MAX_REPLICATED_TPUS} TPUs (got {k})")
        if self.counts is None and not self.copies:
            if 1 < len(self.kinds) < k:
                raise TpuplanError(f"{len(self.kinds)} devices given for {k} TPUs (give one for all, or one per TPU)")
            devs = list(self.kinds[:k]) if len(self.kinds) > 1 else [self.kinds[0]] * k
            return _layered(tables, devs, [None] * k, None, False)
        counts = self.counts if self.counts is not None else (k,)
        kinds = self.kinds if self.counts is not None else self.kinds[:1]
        stages = min(k, sum(counts), tables.profile.ops.__len__())
        return _layered(tables, list(kinds), [tuple(range(len(kinds)))] * stages, tuple(counts), self.copies, k)


def _layered(
    tables: Tables,
    devs: list[DeviceSpec],
    layers: list[tuple[int, ...] | None],
    counts: tuple[int, ...] | None,
    copies: bool,
    budget: int | None = None,
) -> Problem:
    """A problem whose plans may stop after any stage; layer s allows the options `layers[s]` (None: the
    s-th device's own); with counts, `budget` caps the devices of all kinds together."""
    options: list[Option] = []
    index: dict[int, int] = {}
    own = []
    for kind, dev in enumerate(devs):
        t = tables.of(dev)
        if id(t) not in index:
            index[id(t)] = len(options)
            options.append(Option(t, kind if counts is not None else 0))
        own.append(index[id(t)])
    shaped = [layer if layer is not None else (own[s],) for s, layer in enumerate(layers)]
    loops = table_loops([o.table for o in options])
    cap = budget if counts is not None and budget is not None and budget < sum(counts) else None
    return Problem(tuple(options), tuple(shaped), True, counts, copies, False, loops, cap)


def _twice(names: list[str]) -> str:
    return next(n for n in names if names.count(n) > 1)
