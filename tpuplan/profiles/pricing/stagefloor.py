"""Lower bounds of a stage's time, so that the planner prices only the stages it can use.

`floor(a, hi)` is a lower bound of T that never decreases with b: the formula evaluated on quantities
that only grow as a stage grows (the op-price sums, one, and what must stream however the compiler
caches: layers larger than any it caches, and bytes beyond the chip), every other quantity 0 (all
coefficients are >= 0). The planner extends a row until its floor passes the period it is looking at
(`reach`): every stage left out is slower than that. Kept apart from the pricer (`stagecost`), which
prices what a stage holds exactly; this module only needs to stay below it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tpuplan.profiles.limits import MAX_STAGE_US
from tpuplan.profiles.pricing import formula

if TYPE_CHECKING:
    from tpuplan.profiles.pricing.stagecost import StagePricer

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
KIB = formula.KIB


class StageFloors:
    """The floors of one pricer's stages (`StagePricer.floors`), with the rows placed on their own kept."""

    def __init__(self, p: StagePricer) -> None:
        self.p = p
        small = (p.cached > 0) & ~p._big
        # the least streaming time per cached byte of a layer that could be cached: a floor of what
        # streaming the bytes beyond the chip costs, whichever layers the compiler streams
        self._stream_rate = float(np.min(p.stream_us[small] / p.cached[small])) if small.any() else 0.0
        self._host_sum = np.concatenate([[0], np.cumsum(p.host_us)]).astype(np.int64)
        self._own: dict[int, tuple[dict[str, F64], Mask]] = {}

    def floor(self, a: int, hi: int) -> tuple[I64, Mask]:
        """(floor of T, may fit on chip) for b = a..hi, both monotone in b: T(a, b) >= floor[b - a], and a
        stage past the first False of the mask streams for sure (a layer too large to cache, or more
        bytes than the chip holds)."""
        b = np.arange(a, hi + 1, dtype=np.int64)
        return self.floor_at(np.full(len(b), a, dtype=np.int64), b)

    def floor_at(self, a: I64, b: I64) -> tuple[I64, Mask]:
        """`floor` at arbitrary arcs (a start before the last barrier is placed on its own)."""
        p = self.p
        q: dict[str, Any] = {name: np.zeros(len(a)) for name in formula.STAGE_QUANTITIES}
        q["one"] = np.ones(len(a))
        if p.cpu:
            q["compute"] = (self._host_sum[b + 1] - self._host_sum[a]).astype(np.float64)
            may_fit = np.ones(len(a), dtype=np.bool_)
        else:
            grow, may_fit = p.steady.floor_quantities(a, b, p.device.onchip_bytes, self._stream_rate)
            for k in np.flatnonzero(a <= p.last_barrier).tolist():
                own, fit = self.own_floor(int(a[k]))
                j = int(b[k] - a[k])
                for key in grow:
                    grow[key][k] = own[key][j]
                may_fit[k] = fit[j]
            q |= grow
        whole = lambda name, x: np.maximum(np.ceil(np.asarray(x, dtype=np.float64) - 1e-9), 0)  # noqa: E731
        terms = formula.stage_terms(p.coef, q, whole)
        time = formula.stage_values(terms, p.coef, whole)["time"]
        for (first, last), us in p.measured.items():  # a stage timed faster than priced: below it, and
            time = np.where((a == first) & (b <= last), np.minimum(time, us), time)  # every end before it
        out: I64 = np.minimum(time, float(MAX_STAGE_US) + 1).astype(np.int64)
        return out, may_fit

    def own_floor(self, a: int) -> tuple[dict[str, F64], Mask]:
        """The growing quantities of every stage a..b placed on its own (a start before the last barrier),
        for b = a..n-1, kept: the planner asks for them again and again while it looks for a row's end."""
        p = self.p
        if a not in self._own:
            tpu = p.placement(a)
            sl = slice(a, p.n)
            big = tpu & p._big[sl]
            beyond = np.maximum(np.cumsum(np.where(tpu & ~big, p.cached[sl], 0)) - p.device.onchip_bytes, 0)
            big_bytes = np.cumsum(np.where(big, p.cached[sl], 0))
            spill = np.cumsum(np.where(big, p.stream_us[sl], 0)) + np.floor(beyond * self._stream_rate * (1 - 1e-9))
            streamed = np.cumsum(np.where(big, p.stream_bytes[sl], 0)) + beyond  # beyond: at least one pass
            count = np.cumsum(tpu).astype(np.float64)
            own = {
                "compute": np.cumsum(np.where(tpu, p.tpu_us[sl], 0)).astype(np.float64),
                "host_ops": np.cumsum(np.where(tpu, 0, p.host_us[sl])).astype(np.float64),
                "spill": spill.astype(np.float64),
                "tpu_ops": count,
                "edgetpu": (count > 0).astype(np.float64),
                "stream_kib": streamed / KIB,
                "bus_in_kib": streamed / KIB,
                "streams": ((big_bytes + beyond) > 0).astype(np.float64),
            }
            self._own[a] = (own, (big_bytes == 0) & (beyond == 0))
        return self._own[a]

    def reach(self, starts: I64, cap: int, onchip: bool) -> I64:
        """For each start a: the last end b whose floor is at most `cap` (and that may fit on chip, when
        `onchip`); every stage a..b' past it takes more than `cap` (or streams). a - 1 when none."""
        p = self.p
        lo = starts - 1  # known to pass (a - 1: the empty stage)
        hi = np.full(len(starts), p.n, dtype=np.int64)  # known to fail (past the last op)
        while True:
            open_ = hi - lo > 1
            if not open_.any():
                return lo
            mid = (lo + hi) // 2
            k = np.flatnonzero(open_)
            fl, fit = self.floor_at(starts[k], mid[k])
            ok = (fl <= cap) & (fit | (not onchip))
            lo[k[ok]] = mid[k[ok]]
            hi[k[~ok]] = mid[k[~ok]]
