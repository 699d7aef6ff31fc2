"""The Edge TPU compiler's caching of a stage's layers, as the pricer models it.

Fitted to all 635 segments of ../shared/edgetpu-measurements within 0.1 MiB: the budget is onchip_bytes -
io_reserve_frac x (bytes into and out of the Edge TPU part); layers are taken largest first (ties in
execution order), each cached when it is no larger than max_cached_layer_bytes and still fits, else
streamed, and the next one is tried. Kept apart from the pricer (`stagecost`) because it is the one part
of a stage's quantities that is a model of the compiler rather than a count of what the stage holds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
Caching = tuple[I64, I64, I64, I64]  # on-chip bytes, off-chip bytes, streaming us, bytes streamed per input


def greedy_caching(sizes: I64, stream: I64, sbytes: I64, budget: I64, limit: int) -> Caching:
    """(on-chip bytes, off-chip bytes, streaming us, bytes streamed per input) per end b of a row whose
    layers (0 for an op the Edge TPU does not run) have the cached `sizes`, streaming times `stream` and
    streamed bytes `sbytes`: largest layer first, skip what does not fit. Layers of one size are taken in
    execution order, so a size's layers are counted at once."""
    m = len(sizes)
    total = np.cumsum(sizes)
    fits = (total <= budget) & (np.maximum.accumulate(sizes) <= limit)
    on, off, spill = np.where(fits, total, 0), np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64)
    streamed = np.zeros(m, dtype=np.int64)
    cols = np.flatnonzero(~fits)
    if not cols.size:
        return on, off, spill, streamed
    nz = np.flatnonzero(sizes[: cols[-1] + 1] > 0)
    order = nz[np.lexsort((nz, -sizes[nz]))]
    starts = np.flatnonzero(np.r_[True, np.diff(sizes[order]) != 0]).tolist() if order.size else []
    room = budget[cols].copy()
    cum, off_c, spill_c = np.zeros(cols.size, dtype=np.int64), np.zeros_like(room), np.zeros_like(room)
    streamed_c = np.zeros_like(room)
    rest: list[I64] = []  # layers streamed at every end: counted together at the end
    for lo, hi in zip(starts, [*starts[1:], len(order)]):
        members = np.sort(order[lo:hi])
        v = int(sizes[members[0]])
        if v > limit or int(room.max()) < v:
            rest.append(members)
            continue
        count = np.searchsorted(members, cols, side="right")
        take = np.minimum(count, np.maximum(room, 0) // v)
        cum += take * v
        room -= take * v
        off_c += (count - take) * v
        for acc, x in ((spill_c, stream), (streamed_c, sbytes)):
            csum = np.r_[0, np.cumsum(x[members])]
            acc += csum[count] - csum[take]
    if rest:
        members = np.sort(np.concatenate(rest))
        count = np.searchsorted(members, cols, side="right")
        for acc, x in ((off_c, sizes), (spill_c, stream), (streamed_c, sbytes)):
            acc += np.r_[0, np.cumsum(x[members])][count]
    on[cols], off[cols], spill[cols], streamed[cols] = cum, off_c, spill_c, streamed_c
    return on, off, spill, streamed
