"""Stage quantities of many segments at once, for the starts whose placement does not depend on the start.

When a segment starts after the last host op that feeds a supported op (`StagePricer.last_barrier`), the
Edge TPU runs exactly its supported ops, wherever it starts. Every quantity of segment a..b is then a
difference of prefix sums over the model (op prices, op counts, layer bytes), plus a correction for the
few tensors made before a that are still live inside it (the tensors across cut a - 1):

  seg_in    tensors made before a whose first reader at or after a is at most b
  seg_out   tensors made in a..b still needed after b: L(b) (over the whole model) less those made before a
  tpu_in    tensors a TPU op reads, made before a or by a host op of the segment: H(a..b) for the host-made
            ones, plus the tensors made before a, at their first TPU reader at or after a
  tpu_out   tensors a TPU op makes in a..b still needed after b or by a host op: K(b) less those made
            before a

A tensor that is needed to the end (a model output, or read by a host op) is counted by a prefix too; the
others give one (start, position) pair per start they are live at, as many as the profile's cut entries.
The caching greedy (largest layer first) is counted one layer size at a time over every segment that does
not fit at once. The results are exactly `StagePricer.row`'s (tests/profiles/test_stagecost.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


def prefix(x: npt.NDArray[Any]) -> I64:
    """P[j] = x[0] + ... + x[j-1], so that the sum over a..b is P[b + 1] - P[a]."""
    out: I64 = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(x, dtype=np.int64)])
    return out


@dataclass(frozen=True)
class Pairs:
    """(start a, position, bytes): a tensor live into segments starting at a, felt from `position` on."""

    row: I64
    pos: I64
    size: I64

    @staticmethod
    def of(rows: Sequence[I64], pos: Sequence[I64], size: Sequence[I64]) -> Pairs:
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return Pairs(empty, empty, empty)
        r, p, s = np.concatenate(rows), np.concatenate(pos), np.concatenate(size)
        order = np.argsort(r, kind="stable")
        return Pairs(r[order], p[order], s[order])


def _ranges(lo: I64, hi: I64) -> tuple[I64, I64]:
    """Every (k, r) with lo[k] < r <= hi[k]: the owner k of each row r, and r."""
    count = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(len(lo)), count)
    first = np.repeat(np.cumsum(count) - count, count)
    rows = lo[owner] + 1 + np.arange(int(count.sum())) - first
    return owner, rows


@dataclass
class Block:
    """Flat arcs: for each k, the stages starts[k]..b for b = los[k]..his[k], together and in order."""

    starts: I64
    los: I64
    his: I64
    a: I64
    b: I64
    first: I64  # index of each start's first arc
    count: I64  # arcs per start

    @staticmethod
    def of(starts: I64, los: I64, his: I64) -> Block:
        count = his - los + 1
        first = np.cumsum(count) - count
        total = int(count.sum())
        a = np.repeat(starts, count)
        b = np.repeat(los, count) + np.arange(total) - np.repeat(first, count)
        return Block(starts, los, his, a, b, first, count)

    def row_sums(self, pairs: Pairs) -> I64:
        """For every arc: the bytes of the pairs of its start whose position is at most its end."""
        starts = self.starts
        pos_of = np.full(int(starts.max(initial=-1)) + 2, -1, dtype=np.int64)
        pos_of[starts] = np.arange(len(starts))
        lo, hi = np.searchsorted(pairs.row, [int(starts.min()), int(starts.max()) + 1])
        row, pos, size = pairs.row[lo:hi], pairs.pos[lo:hi], pairs.size[lo:hi]
        k = pos_of[np.minimum(row, len(pos_of) - 1)]
        ok = k >= 0
        row, pos, size, k = row[ok], pos[ok], size[ok], k[ok]
        inside = pos <= self.his[k]
        diff = np.zeros(len(self.a) + 1, dtype=np.int64)
        np.add.at(diff, self.first[k[inside]] + np.maximum(pos[inside] - self.los[k[inside]], 0), size[inside])
        cs = np.cumsum(diff[:-1])
        base = np.concatenate([np.zeros(1, dtype=np.int64), cs])[self.first]
        out: I64 = cs - np.repeat(base, self.count)
        return out


class SteadyPlacement:
    """What every segment starting after the last barrier holds, from prefix sums (see the module doc)."""

    def __init__(self, p: Any) -> None:
        n, self.n = p.n, p.n
        self.tpu = np.zeros(n, dtype=np.bool_) if p.cpu else np.array(p.supported, dtype=np.bool_)
        tpu = self.tpu
        self.comp = prefix(p.host_us if p.cpu else np.where(tpu, p.tpu_us, 0))
        self.host = prefix(np.zeros(n, dtype=np.int64) if p.cpu else np.where(tpu, 0, p.host_us))
        self.count = prefix(tpu)
        self.params = prefix(p.params)
        host_uncal = p.host_us * p.host_uncal
        self.uncal = prefix(host_uncal if p.cpu else np.where(tpu, p.tpu_us * p.tpu_uncal, host_uncal))
        self.sizes = np.where(tpu, p.cached, 0)
        self.stream = np.where(tpu, p.stream_us, 0)
        self.sbytes = np.where(tpu, p.stream_bytes, 0)  # bytes over the link per input when streamed
        self.big = tpu & p._big
        self.size_sum = prefix(self.sizes)
        self.small_sum = prefix(np.where(self.big, 0, self.sizes))
        self.big_bytes = prefix(np.where(self.big, self.sizes, 0))
        self.big_stream = prefix(np.where(self.big, self.stream, 0))
        self.big_sbytes = prefix(np.where(self.big, self.sbytes, 0))
        self._groups()
        self._tensors(p)

    def _groups(self) -> None:
        """Layers by size, largest first: (size, positions in order, prefixes of their streaming us and of
        the bytes they stream)."""
        nz = np.flatnonzero(self.sizes > 0)
        order = nz[np.lexsort((nz, -self.sizes[nz]))]
        cut = np.flatnonzero(np.r_[True, np.diff(self.sizes[order]) != 0]).tolist() if order.size else []
        self.groups = []
        for lo, hi in zip(cut, [*cut[1:], len(order)]):
            members = np.sort(order[lo:hi])
            size = int(self.sizes[members[0]])
            self.groups.append((size, members, prefix(self.stream[members]), prefix(self.sbytes[members])))

    def _tensors(self, p: Any) -> None:
        n, tpu = self.n, self.tpu
        prod, size, last, out = p.t_prod, p.t_bytes, p.t_last, p.t_out
        made_tpu = (prod >= 0) & tpu[np.maximum(prod, 0)]
        host_made = (prod >= 0) & ~made_tpu
        ec, et = p.e_c, p.e_t
        by_tensor = np.lexsort((ec, et))
        ec, et = ec[by_tensor], et[by_tensor]
        read_by_host = np.zeros(len(prod), dtype=np.bool_)
        read_by_host[et[~tpu[ec]]] = True
        # seg_in: every reader; tpu_in: TPU readers, for host-made tensors after their first TPU reader
        self.seg_in = self._first_reader_pairs(prod, size, ec, et, None)
        t_ec, t_et = ec[tpu[ec]], et[tpu[ec]]
        self.tpu_in = self._first_reader_pairs(prod, size, t_ec, t_et, host_made)
        first_tpu = np.full(len(prod), -1, dtype=np.int64)
        starts = np.r_[True, t_et[1:] != t_et[:-1]] if len(t_et) else np.zeros(0, dtype=np.bool_)
        first_tpu[t_et[starts]] = t_ec[starts]
        hm = host_made & (first_tpu >= 0)
        self.host_in = prefix(np.bincount(first_tpu[hm], weights=size[hm], minlength=n).astype(np.int64))
        # seg_out and tpu_out: live from the producer to `end` (n - 1: needed to the end)
        self.seg_out, self.out_end, self.seg_out_pairs = self._live(
            prod, size, np.where(out, n - 1, last - 1), prod >= 0
        )
        forever = out | read_by_host
        self.tpu_out, self.tpu_end, self.tpu_out_pairs = self._live(
            prod, size, np.where(forever, n - 1, last - 1), made_tpu
        )

    @staticmethod
    def _first_reader_pairs(prod: I64, size: I64, ec: I64, et: I64, skip_first: Mask | None) -> Pairs:
        """For readers (ec, et) sorted by tensor then reader: starts a in (previous reader, reader] see the
        tensor first read at `reader`; the first range starts after the producer (skipped for `skip_first`)."""
        if not len(ec):
            return Pairs.of([], [], [])
        new = np.r_[True, et[1:] != et[:-1]]
        lo = np.where(new, prod[et], np.r_[0, ec[:-1]])
        if skip_first is not None:
            lo = np.where(new & skip_first[et], ec, lo)
        owner, rows = _ranges(lo, ec)
        return Pairs.of([rows], [ec[owner]], [size[et[owner]]])

    def _live(self, prod: I64, size: I64, end: I64, mask: Mask) -> tuple[I64, I64, Pairs]:
        """(live bytes at every b, bytes needed to the end made before a, pairs of the others): the
        bytes of `mask` tensors live at b made in a..b are live[b] - forever[a] - pairs of a up to b."""
        n = self.n
        ok = mask & (end >= prod)
        diff = np.zeros(n + 1, dtype=np.int64)
        np.add.at(diff, prod[ok], size[ok])
        np.add.at(diff, end[ok] + 1, -size[ok])
        live = np.cumsum(diff[:n])
        forever = ok & (end == n - 1)
        before = prefix(np.bincount(prod[forever], weights=size[forever], minlength=n).astype(np.int64))
        rest = ok & ~forever
        owner, rows = _ranges(prod[rest], end[rest])
        idx = np.flatnonzero(rest)[owner]
        # a start a in (prod, end] sees the tensor from a to end: a pair felt from a, less one felt past end
        pairs = Pairs.of([rows, rows], [rows, end[idx] + 1], [size[idx], -size[idx]])
        return live, before, pairs

    def boundary(self, blk: Block) -> dict[str, I64]:
        """seg_in, seg_out, tpu_in, tpu_out of every arc of the block."""
        a, b = blk.a, blk.b
        return {
            "seg_in": blk.row_sums(self.seg_in),
            "seg_out": self.seg_out[b] - self.out_end[a] - blk.row_sums(self.seg_out_pairs),
            "tpu_in": self.host_in[b + 1] - self.host_in[a] + blk.row_sums(self.tpu_in),
            "tpu_out": self.tpu_out[b] - self.tpu_end[a] - blk.row_sums(self.tpu_out_pairs),
        }

    def caching(self, a: I64, b: I64, budget: I64, limit: int) -> tuple[I64, I64, I64, I64]:
        """(on-chip bytes, off-chip bytes, streaming us, bytes streamed) of every arc: the greedy of
        `StagePricer._caching`, one layer size at a time (a size's layers are taken in execution order)."""
        total = self.size_sum[b + 1] - self.size_sum[a]
        nobig = self.big_bytes[b + 1] == self.big_bytes[a]
        fits = (total <= budget) & nobig
        on, off, spill = np.where(fits, total, 0), np.zeros(len(a), dtype=np.int64), np.zeros(len(a), dtype=np.int64)
        streamed = np.zeros(len(a), dtype=np.int64)
        cols = np.flatnonzero(~fits)
        if not cols.size:
            return on, off, spill, streamed
        ca, cb = a[cols], b[cols]
        room = budget[cols].copy()
        cum, off_c, spill_c = np.zeros(cols.size, dtype=np.int64), np.zeros_like(room), np.zeros_like(room)
        streamed_c = np.zeros_like(room)
        rest: list[I64] = []
        for v, members, csum, bsum in self.groups:
            if v > limit or int(room.max()) < v:
                rest.append(members)
                continue
            lo = np.searchsorted(members, ca)
            count = np.searchsorted(members, cb, side="right") - lo
            take = np.minimum(count, np.maximum(room, 0) // v)
            cum += take * v
            room -= take * v
            off_c += (count - take) * v
            spill_c += csum[lo + count] - csum[lo + take]
            streamed_c += bsum[lo + count] - bsum[lo + take]
        if rest:
            members = np.sort(np.concatenate(rest))
            lo, hi = np.searchsorted(members, ca), np.searchsorted(members, cb, side="right")
            for acc, x in ((off_c, self.sizes), (spill_c, self.stream), (streamed_c, self.sbytes)):
                p = prefix(x[members])
                acc += p[hi] - p[lo]
        on[cols], off[cols], spill[cols], streamed[cols] = cum, off_c, spill_c, streamed_c
        return on, off, spill, streamed

    def floor_quantities(self, a: I64, b: I64, onchip_bytes: int, stream_rate: float) -> tuple[dict[str, Any], Mask]:
        """The growing quantities of `StageFloors.floor` at arcs (a, b), and whether each may fit on chip."""
        beyond = np.maximum(self.small_sum[b + 1] - self.small_sum[a] - onchip_bytes, 0)
        big = self.big_bytes[b + 1] - self.big_bytes[a]
        streamed = (self.big_sbytes[b + 1] - self.big_sbytes[a] + beyond) / 1024  # beyond: at least one pass
        count = (self.count[b + 1] - self.count[a]).astype(np.float64)
        q = {
            "compute": (self.comp[b + 1] - self.comp[a]).astype(np.float64),
            "host_ops": (self.host[b + 1] - self.host[a]).astype(np.float64),
            "spill": self.big_stream[b + 1] - self.big_stream[a] + np.floor(beyond * stream_rate * (1 - 1e-9)),
            "tpu_ops": count,
            "edgetpu": (count > 0).astype(np.float64),
            "stream_kib": streamed,
            "bus_in_kib": streamed,
            "streams": ((big + beyond) > 0).astype(np.float64),
        }
        return q, (big == 0) & (beyond == 0)
