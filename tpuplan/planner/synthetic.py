"""Stage tables from plain integers, for tests and benchmarks: the solver's inputs without a model.

Stage a..b costs  overhead + sum of compute + streaming of the layers after its cached prefix
+ link_in[a] + link_out[b] + model outputs made inside it; its serialized share, bus time and one-off
are sums of per-op integers (plus a fixed part each); a stage is valid when it holds a `tpu` op and on
chip when every layer fits `capacity`, cached whole in order from its start.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tpuplan.profiles.pricing.tables import StageCostTable

I64 = npt.NDArray[np.int64]


def _prefix(xs: Sequence[int] | None, n: int) -> I64:
    values = [0] * n if xs is None else [int(x) for x in xs]
    return np.array([0, *itertools.accumulate(values)], dtype=np.int64)


def _last_cached(cached: Sequence[int], capacity: int) -> I64:
    """For every start a, the last op of the prefix from a whose layers fit `capacity` (a - 1: none)."""
    n = len(cached)
    out, p, total = [], -1, 0
    for a in range(n):
        if p < a - 1:
            p, total = a - 1, 0
        while p + 1 < n and total + cached[p + 1] <= capacity:
            p += 1
            total += cached[p]
        out.append(p)
        if p >= a:
            total -= cached[a]
    return np.array(out, dtype=np.int64)


def _span(prefix: I64, a: I64, b: I64) -> I64:
    out: I64 = prefix[b + 1] - prefix[a]
    return out


def synthetic_table(
    compute: Sequence[int],
    stream: Sequence[int],
    cached: Sequence[int],
    link: Sequence[int],
    *,
    capacity: int,
    overhead: int = 100,
    model_out: Sequence[int] | None = None,
    input_link: int | None = None,
    serial: Sequence[int] | None = None,
    serial_fixed: int = 0,
    bus: Sequence[int] | None = None,
    oneoff: Sequence[int] | None = None,
    tpu: Sequence[bool] | None = None,
    cut_serial: Sequence[int] | None = None,
    cut_bus: Sequence[int] | None = None,
    name: str = "synthetic",
    loops: Sequence[tuple[int, int]] = (),
) -> StageCostTable:
    """A table from plain integers: link[i] is the link time of the cut after op i (the last one: the
    model's output), input_link that of the model's input (default link[-1] // 2). cut_serial[i] and
    cut_bus[i] add to the serialized and bus time of both stages beside cut i, as copying a cut's tensors
    does, so that where the cuts fall changes those sums too. `loops`: op spans of state loops; a stage
    holding one of their ops has its time as its `loop` value (formula.GATED_VALUES)."""
    n = len(compute)
    a, b = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    upper = b >= a
    a_, b_ = np.where(upper, a, 0), np.where(upper, b, 0)
    lc = _last_cached(cached, capacity)
    s = _prefix(stream, n)
    first = int(link[-1]) // 2 if input_link is None else input_link
    link_in = np.array([first, *(int(x) for x in link[:-1])], dtype=np.int64)
    link_out = np.array([int(x) for x in link], dtype=np.int64)
    spill = np.maximum(0, s[b_ + 1] - s[lc[a_] + 1])
    time = (
        overhead
        + _span(_prefix(compute, n), a_, b_)
        + spill
        + link_in[a_]
        + link_out[b_]
        + _span(_prefix(model_out, n), a_, b_)
    )
    tpu_count = _span(_prefix([int(x) for x in tpu] if tpu is not None else [1] * n, n), a_, b_)

    def summed(xs: Sequence[int] | None, fixed: int = 0, per_cut: Sequence[int] | None = None) -> I64:
        cut = np.array([0] * n if per_cut is None else [int(x) for x in per_cut], dtype=np.int64)
        around = np.where(a_ > 0, cut[np.maximum(a_ - 1, 0)], 0) + np.where(b_ < n - 1, cut[b_], 0)
        out: I64 = np.where(upper, fixed + _span(_prefix(xs, n), a_, b_) + around, 0)
        return out

    held = np.zeros_like(upper)
    for lo, hi in loops:
        held |= upper & (a <= hi) & (b >= lo)
    return StageCostTable.dense(
        device_name=name,
        backend="edgetpu",
        n=n,
        loops=loops,
        values={
            "loop": np.where(held, time, 0).astype(np.int64),
            "time": np.where(upper, time, 0).astype(np.int64),
            "serial": summed(serial, serial_fixed, cut_serial),
            "bus_in": summed(bus, 0, cut_bus),
            "bus_out": np.zeros_like(time) * upper,
            "oneoff": summed(oneoff),
        },
        valid=upper & (tpu_count > 0),
        onchip=upper & (b <= lc[a]),
    )


def random_table(rng: np.random.Generator, n: int, *, tpus: int = 4, name: str = "random") -> StageCostTable:
    """A random table whose memory binds: the parameters need about `tpus` devices."""
    compute = rng.integers(1, 1000, n)
    cached = rng.integers(0, 1_000_000, n) * (rng.random(n) < 0.7)
    stream = cached // 400
    link = rng.integers(0, 600, n)
    capacity = max(int(cached.max()), int(cached.sum()) // max(tpus, 1))
    return synthetic_table(
        compute.tolist(), stream.tolist(), cached.tolist(), link.tolist(), capacity=capacity, name=name
    )
