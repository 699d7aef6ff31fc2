"""Labels: partial plans extended stage by stage, and the fronts that keep only the useful ones.

A label is a partial plan (stages 0..k, the last ending at op b) summarised by a few numbers (its
components: the largest stage time, sums of serialized shares, bus times, stage times, one-offs ...).
A label that another label at the same b beats or equals in every component is dropped: no objective
that grows with every component can be lost that way. `planner.search.reference` builds its searches on
these; so does `planner.search.replicate`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from tpuplan.profiles.pricing.formula import PERIOD_BOUNDS
from tpuplan.profiles.pricing.tables import StageCostTable

I64 = npt.NDArray[np.int64]
STAGE = PERIOD_BOUNDS[0].name  # the bound of the slowest stage: a component of its own, or a cap on stage times
OTHER_BOUNDS = tuple(b.name for b in PERIOD_BOUNDS[1:])
G = TypeVar("G", bound=np.generic)
Mask = npt.NDArray[np.bool_]
INF = 2**62
_PAIRWISE_CHUNK = 256  # labels of one end compared at once (with each other and the front so far), 3+ components
_SWEEPS = 8  # front labels found one at a time before the rest goes block by block


def stage_masks(tables: Sequence[StageCostTable], onchip: bool) -> list[Mask]:
    """Allowed stages a..b per table: a stage with an Edge TPU op, and on chip when that is imposed."""
    return [t.valid & t.onchip if onchip else t.valid for t in tables]


@dataclass
class Layer:
    """Labels after one stage: where each ends, its components, and the label of the stage before."""

    end: I64
    comps: I64  # [labels, components]
    parent: I64


def _first(d: int) -> Layer:
    return Layer(np.array([-1], dtype=np.int64), np.zeros((1, d), dtype=np.int64), np.array([-1], dtype=np.int64))


@dataclass(frozen=True)
class Step:
    """One stage as the search sees it: the segments a..b it may take, and what each adds to a label:
    per component, ("max", matrix) or ("sum", matrix) indexed [a, b]."""

    allowed: Mask
    parts: tuple[tuple[str, I64], ...]


def steps_for(
    tables: Sequence[StageCostTable],
    masks: Sequence[Mask],
    cap: int,
    kinds: Sequence[str],
    beta_gamma: tuple[int, int] = (0, 0),
) -> list[Step]:
    """The steps of the objective components `kinds`: a period bound of the cost formula by its name
    (`PERIOD_BOUNDS`: the largest stage time, the sums of serialized and bus times), T and O (sums of
    stage times and one-offs), W (sum of beta x stage time + gamma x one-off); stages at most `cap` us."""
    cache: dict[int, Step] = {}
    out = []
    for t, m in zip(tables, masks, strict=True):
        key = id(t) * 31 + id(m)
        if key not in cache:
            mats = {b.name: (b.combine, t.value(b.value)) for b in PERIOD_BOUNDS}
            mats |= {"T": ("sum", t.time_us), "O": ("sum", t.value("oneoff"))}
            parts = tuple(
                mats[k] if k in mats else ("sum", beta_gamma[0] * t.time_us + beta_gamma[1] * t.value("oneoff"))
                for k in kinds
            )
            cache[key] = Step(m & (t.time_us <= cap), parts)
        out.append(cache[key])
    return out


def reversed_steps(steps: Sequence[Step]) -> list[Step]:
    """The same stages read from the last op back: the last stage first, and segment a..b of n ops as
    n-1-b..n-1-a, so that `run_labels` on them builds plans from their end (every label a suffix)."""
    flipped: dict[int, npt.NDArray[np.generic]] = {}

    def flip(m: npt.NDArray[G]) -> npt.NDArray[G]:
        if id(m) not in flipped:
            flipped[id(m)] = _flip(m)
        out: npt.NDArray[G] = flipped[id(m)]  # type: ignore[assignment]
        return out

    return [Step(flip(step.allowed), tuple((op, flip(mat)) for op, mat in step.parts)) for step in reversed(steps)]


def _flip(m: npt.NDArray[G]) -> npt.NDArray[G]:
    """[a, b] -> [n-1-b, n-1-a]."""
    return np.ascontiguousarray(m[::-1, ::-1].T)


def combine(step: Step, x: I64, y: I64) -> I64:
    """Components of two consecutive pieces of a plan joined (per component: the larger, or the sum)."""
    out: I64 = np.stack(
        [
            np.maximum(x[..., j], y[..., j]) if op == "max" else x[..., j] + y[..., j]
            for j, (op, _) in enumerate(step.parts)
        ],
        axis=-1,
    )
    return out


def _extend(prev: Layer, step: Step, last_end: int, only_last: bool) -> Layer:
    """Every stage a..b after every label (a = its end + 1) that the step allows, ending at most at
    `last_end` (exactly there when `only_last`)."""
    n = step.allowed.shape[0]
    starts = prev.end + 1
    ok_start = starts < n
    rows = np.zeros((len(starts), n), dtype=np.bool_)
    rows[ok_start] = step.allowed[starts[ok_start]]
    cols = np.arange(n)
    rows &= (cols == last_end) if only_last else (cols <= last_end)
    if len(step.parts) <= 1:
        return _best_per_end(prev, step, rows, np.where(ok_start, starts, 0))
    lab, b = np.nonzero(rows)
    a = starts[lab]
    comps = np.stack(
        [
            np.maximum(prev.comps[lab, j], mat[a, b]) if op == "max" else prev.comps[lab, j] + mat[a, b]
            for j, (op, mat) in enumerate(step.parts)
        ],
        axis=1,
    )
    return Layer(b.astype(np.int64), comps.astype(np.int64), lab.astype(np.int64))


def _best_per_end(prev: Layer, step: Step, rows: Mask, starts: I64) -> Layer:
    """With at most one component a front is one label per end: take it column by column, no sort.
    Ties go to the earliest label, as the sorted front keeps them."""
    if not step.parts:
        b = np.flatnonzero(rows.any(axis=0))
        return Layer(b.astype(np.int64), np.zeros((len(b), 0), dtype=np.int64), rows.argmax(axis=0)[b])
    op, mat = step.parts[0]
    old = prev.comps[:, :1]
    value = np.maximum(old, mat[starts]) if op == "max" else old + mat[starts]
    value = np.where(rows, value, INF)
    lab = value.argmin(axis=0)
    best = value[lab, np.arange(rows.shape[1])]
    b = np.flatnonzero(best < INF)
    return Layer(b.astype(np.int64), best[b][:, None].astype(np.int64), lab[b].astype(np.int64))


def _front(layer: Layer) -> Layer:
    """Keep, at every end, only the labels that no other label there beats or equals in every component."""
    if len(layer.end) == 0:
        return layer
    d = layer.comps.shape[1]
    order = np.lexsort([layer.comps[:, j] for j in reversed(range(d))] + [layer.end])
    end, comps = layer.end[order], layer.comps[order]
    new_group = np.r_[True, end[1:] != end[:-1]]
    if d <= 1:
        keep = new_group
    elif d == 2:
        span = int(comps[:, 1].max()) + 1
        shifted = comps[:, 1] - np.cumsum(new_group) * span
        running = np.minimum.accumulate(shifted)
        before = np.r_[np.iinfo(np.int64).max, running[:-1]]
        keep = new_group | (shifted < before)
    else:
        keep = np.ones(len(end), dtype=np.bool_)
        bounds = np.r_[np.flatnonzero(new_group), len(end)]
        for lo, hi in itertools.pairwise(bounds):
            keep[lo:hi] = ~_dominated(comps[lo:hi])
    sel = order[keep]
    return Layer(layer.end[sel], layer.comps[sel], layer.parent[sel])


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
    front = c[kept]
    left = i + np.flatnonzero(~out[i:])
    for lo in range(0, len(left), _PAIRWISE_CHUNK):
        rows = left[lo : lo + _PAIRWISE_CHUNK]
        block = c[rows]
        dom: Mask = np.asarray((front[:, None, :] <= block[None, :, :]).all(axis=2).any(axis=0))
        idx = np.flatnonzero(~dom)
        cand = block[idx]
        le = (cand[:, None, :] <= cand[None, :, :]).all(axis=2)  # [earlier j, later i]
        dom[idx] = (le & np.tri(len(cand), k=-1, dtype=np.bool_).T).any(axis=0)
        out[rows] = dom
        front = np.concatenate([front, block[~dom]])
    return out


class SearchTimeout(Exception):
    """The deadline passed during a search."""


def run_labels(
    steps: Sequence[Step],
    n: int,
    prune: Callable[[I64], Mask] | None = None,
    deadline: float | None = None,
    open_end: bool = False,
    tails: list[I64] | None = None,
) -> list[Layer] | None:
    """All labels, stage by stage (one step each); `prune` says which labels to keep (an objective
    already over a bound is dropped). None when no plan exists; SearchTimeout when the deadline passes.
    With `open_end` a plan may end after any stage (its label ends at op n-1) and the layers are
    returned as they are, for plans of every length up to len(steps). `tails`: those of `tails_of` for
    these steps or for looser ones (a search repeated under several caps computes them once)."""
    k = len(steps)
    d = len(steps[0].parts)
    layers = [_first(d)]
    if prune is None or open_end or d < 2:
        tails = None
    elif tails is None:
        tails = tails_of(steps, n)
    for s, step in enumerate(steps):
        if deadline is not None and time.monotonic() > deadline:
            raise SearchTimeout
        layer = _extend(layers[-1], step, n - 1 if open_end else n - (k - s), s == k - 1 and not open_end)
        if prune is not None and len(layer.end):
            whole = layer.comps if tails is None else _with_tail(layer, step, tails[s])
            keep = prune(whole)
            layer = Layer(layer.end[keep], layer.comps[keep], layer.parent[keep])
        layer = _front(layer)
        if len(layer.end) == 0 and not open_end:
            return None
        layers.append(layer)
    return layers[1:]


_TAIL_NONE = 2**40  # no way to finish: above any real sum, and alpha x it stays inside int64


def tails_of(steps: Sequence[Step], n: int) -> list[I64]:
    """For each stage s and end e: per component, the least that the stages after s can add to a plan
    whose stage s ends at e (each component on its own: a lower bound, exact for one component). A label
    that cannot finish within the bound even so is dropped early (the search stays exact)."""
    k, d = len(steps), len(steps[0].parts)
    tail = np.full((n, d), _TAIL_NONE, dtype=np.int64)
    tail[n - 1] = 0
    out = [tail]
    for step in reversed(steps[1:]):
        prev = np.full((n, d), _TAIL_NONE, dtype=np.int64)
        for j, (op, mat) in enumerate(step.parts):
            joined = np.maximum(mat, tail[None, :, j]) if op == "max" else mat + tail[None, :, j]
            best = np.where(step.allowed, np.minimum(joined, _TAIL_NONE), _TAIL_NONE).min(axis=1)
            prev[: n - 1, j] = best[1:]  # a stage ending at e is followed by one starting at e + 1
        tail = prev
        out.append(tail)
    out.reverse()
    return out[:k]


def _with_tail(layer: Layer, step: Step, tail: I64) -> I64:
    add = tail[layer.end]
    out: I64 = np.stack(
        [
            np.maximum(layer.comps[:, j], add[:, j]) if op == "max" else layer.comps[:, j] + add[:, j]
            for j, (op, _) in enumerate(step.parts)
        ],
        axis=1,
    )
    return out


def backtrack(layers: Sequence[Layer], index: int) -> list[int]:
    """The cuts of the plan whose last stage is label `index` of the last of `layers`."""
    ends = []
    for layer in reversed(layers):
        ends.append(int(layer.end[index]))
        index = int(layer.parent[index])
    ends.reverse()
    return ends[:-1]
