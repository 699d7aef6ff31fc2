"""Stage tables from plain integers, for tests and benchmarks: the solver's inputs without a model."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from tpuplan.profiles.stagecost import StageCostTable


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
    name: str = "synthetic",
) -> StageCostTable:
    """A table from plain integers (tests and benchmarks): link[i] is the link time of the cut after
    op i (the last one: the model's output), input_link that of the model's input (default link[-1]//2).

    Parameters are cached whole op by op in order until the next one does not fit `capacity`.
    """
    n = len(compute)
    lc: list[int] = []
    p, total = -1, 0
    for a in range(n):
        if p < a - 1:
            p, total = a - 1, 0
        while p + 1 < n and total + cached[p + 1] <= capacity:
            p += 1
            total += cached[p]
        lc.append(p)
        if p >= a:
            total -= cached[a]

    def prefix(xs: Sequence[int]) -> list[int]:
        return [0, *itertools.accumulate(int(x) for x in xs)]

    first = int(link[-1]) // 2 if input_link is None else input_link
    link_in = [first, *(int(x) for x in link[:-1])]
    return StageCostTable(
        device_name=name,
        n=n,
        overhead_us=overhead,
        compute_prefix=prefix(compute),
        stream_prefix=prefix(stream),
        param_prefix=prefix(cached),
        raw_param_prefix=prefix(cached),
        last_cached=lc,
        link_in_us=link_in,
        link_out_us=[int(x) for x in link],
        model_out_prefix_us=prefix(model_out if model_out is not None else [0] * n),
        bytes_in=[x * 300 for x in link_in],
        bytes_out=[int(x) * 300 for x in link],
        onchip_capacity=capacity,
    )


def random_table(rng: np.random.Generator, n: int, *, tpus: int = 4, name: str = "random") -> StageCostTable:
    """A random regular table whose memory binds: the parameters need about `tpus` devices."""
    compute = rng.integers(1, 1000, n)
    cached = rng.integers(0, 1_000_000, n) * (rng.random(n) < 0.7)
    stream = cached // 400
    link = rng.integers(0, 600, n)
    capacity = max(int(cached.max()), int(cached.sum()) // max(tpus, 1))
    return synthetic_table(
        compute.tolist(), stream.tolist(), cached.tolist(), link.tolist(), capacity=capacity, name=name
    )
