"""Labels: partial plans extended stage by stage, and the fronts that keep only the useful ones.

A label is a partial plan (the first stages, or with `backward` the last ones) that ends at a node (an
op boundary 0..n), summarised by its components (`problem.Component`: the largest stage time, sums of
serialized shares, bus times, stage times, one-offs, devices used ...). A label that another label at the
same node beats or equals in every component is dropped: nothing that grows with every component (the
objective, the caps, a tie-break that prefers less of each) can be lost that way. Every label also keeps
its parent and its choice, so a whole plan is read back from its last label. `planner.search.reference`
builds its exact searches on these.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tpuplan.compat import pairwise
from tpuplan.planner.search.problem import BIG, I64, Choices, Mask
from tpuplan.profiles.pricing.tables import OutOfTime

SearchTimeout = OutOfTime  # the deadline passed (while pricing stages or searching)
_PAIRWISE_CHUNK = 256  # labels of one node compared at once (with each other and the front so far), 3+ components
_SWEEPS = 8  # front labels found one at a time before the rest goes block by block
Join = Callable[[I64, I64], I64]


@dataclass
class Labels:
    """Labels after one layer: the node each ends at, its components, its parent label in the layer
    before, and the choice of this layer it took."""

    node: I64
    comps: I64  # [labels, components]
    parent: I64
    choice: I64

    def take(self, keep: Mask | I64) -> Labels:
        return Labels(self.node[keep], self.comps[keep], self.parent[keep], self.choice[keep])

    def __len__(self) -> int:
        return len(self.node)


def join_all(joins: Sequence[Join], x: I64, y: I64) -> I64:
    """Components of two consecutive pieces of a plan joined (per component: the larger, or the sum)."""
    if not joins:
        return np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=np.int64)
    out: I64 = np.stack([np.minimum(f(x[..., j], y[..., j]), BIG) for j, f in enumerate(joins)], axis=-1)
    return out


def _pairs(labels: Labels, src: I64, order: I64, ptr: I64) -> tuple[I64, I64]:
    """Every (label, choice) with the choice leaving the label's node: choices sorted by source node
    (`order`, with ptr[x] the first of node x)."""
    count = ptr[labels.node + 1] - ptr[labels.node]
    lab = np.repeat(np.arange(len(labels)), count)
    first = np.repeat(ptr[labels.node], count)
    offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    return lab, order[first + offset]


def run_labels(
    layers: Sequence[Choices],
    mats: Sequence[I64],
    joins: Sequence[Join],
    n: int,
    *,
    backward: bool = False,
    keep: Callable[[I64], Mask] | None = None,
    tails: Sequence[I64] | None = None,
    deadline: float | None = None,
    until: Callable[[Labels], bool] | None = None,
) -> list[Labels]:
    """All labels, layer by layer (forward from node 0, or backward from node n); `keep` says which to
    keep of the whole plans' bounds (a label's components joined with tails[s][node], the least the
    other layers can add; its own components without tails). Returns one Labels per layer, in the order
    searched (backward: the last layer's first), stopping after the first layer `until` accepts.
    SearchTimeout when the deadline passes."""
    d = len(joins)
    cur = Labels(np.array([n if backward else 0]), np.zeros((1, d), dtype=np.int64), np.array([-1]), np.array([-1]))
    out = []
    order_layers = range(len(layers) - 1, -1, -1) if backward else range(len(layers))
    for step, s in enumerate(order_layers):
        if deadline is not None and time.monotonic() > deadline:
            raise SearchTimeout
        c, mat = layers[s], mats[s]
        src, dst = (c.e + 1, c.p + 1) if backward else (c.p + 1, c.e + 1)
        order = np.argsort(src, kind="stable")
        ptr = np.searchsorted(src[order], np.arange(n + 2))
        lab, ch = _pairs(cur, src, order, ptr)
        comps = join_all(joins, cur.comps[lab], mat[ch])
        nxt = Labels(dst[ch], comps, lab, ch)
        if keep is not None and len(nxt):
            whole = comps if tails is None else join_all(joins, comps, tails[step][nxt.node])
            nxt = nxt.take(keep(whole))
        cur = front(nxt)
        out.append(cur)
        if until is not None and until(cur):
            break
    return out


def front(labels: Labels) -> Labels:
    """Keep, at every node, only the labels that no other label there beats or equals in every component
    (of equal labels, the first: labels come in the order of their parents, then their choices)."""
    if len(labels) == 0:
        return labels
    d = labels.comps.shape[1]
    order = np.lexsort([labels.comps[:, j] for j in reversed(range(d))] + [labels.node])
    node, comps = labels.node[order], labels.comps[order]
    new_group = np.r_[True, node[1:] != node[:-1]]
    if d <= 1:
        keep = new_group
    elif d == 2:
        span = int(comps[:, 1].max()) - int(comps[:, 1].min()) + 1
        shifted = comps[:, 1] - np.cumsum(new_group) * span
        running = np.minimum.accumulate(shifted)
        before = np.r_[np.iinfo(np.int64).max, running[:-1]]
        keep = new_group | (shifted < before)
    else:
        keep = np.ones(len(node), dtype=np.bool_)
        bounds = np.r_[np.flatnonzero(new_group), len(node)]
        for lo, hi in pairwise(bounds):
            keep[lo:hi] = ~_dominated(comps[lo:hi])
    return labels.take(order[keep])


def _dominated(c: I64) -> Mask:
    """For lexicographically sorted rows: each row that an earlier row matches or beats in every column.

    A row that an earlier dominated row beats is beaten by whatever beat that one (domination is
    transitive), so each row is compared with the front kept so far, not with every earlier row. The
    first undominated row is always kept: it sweeps the rows after it in one step, which settles the
    common case of a front of a few labels; what is left is cut block by block."""
    out = np.zeros(len(c), dtype=np.bool_)
    kept = []
    i = 0
    for _ in range(_SWEEPS):
        kept.append(i)
        out[i + 1 :] |= (c[i] <= c[i + 1 :]).all(axis=1)
        rest = np.flatnonzero(~out[i + 1 :])
        if len(rest) == 0:
            return out
        i += 1 + int(rest[0])
    front_rows = c[kept]
    left = i + np.flatnonzero(~out[i:])
    for lo in range(0, len(left), _PAIRWISE_CHUNK):
        rows = left[lo : lo + _PAIRWISE_CHUNK]
        block = c[rows]
        dom: Mask = np.asarray((front_rows[:, None, :] <= block[None, :, :]).all(axis=2).any(axis=0))
        idx = np.flatnonzero(~dom)
        cand = block[idx]
        le = (cand[:, None, :] <= cand[None, :, :]).all(axis=2)  # [earlier j, later i]
        dom[idx] = (le & np.tri(len(cand), k=-1, dtype=np.bool_).T).any(axis=0)
        out[rows] = dom
        front_rows = np.concatenate([front_rows, block[~dom]])
    return out


def backtrack(layers: Sequence[Labels], index: int) -> list[int]:
    """The choice of every layer (in search order) of the plan whose last label is `index` of the last
    of `layers`."""
    picks = []
    for labels in reversed(layers):
        picks.append(int(labels.choice[index]))
        index = int(labels.parent[index])
    picks.reverse()
    return picks
