"""Exact reference for every objective of `planner.costs`, independent of CP-SAT, plus a brute force.

A label is a partial plan (stages 0..k, the last ending at op b) summarised by what the objective needs
of it: the largest stage time M, the sum of serialized shares S, the sum of bus times V, and the sum W
of beta x stage time + gamma x one-off. Labels are extended stage by stage; one that another label at
the same b beats (or equals) in every component is dropped, which never loses the optimum because J
grows with every component. The least period alone (the default objective) is found faster by binary
search on the period t: is there a plan with every stage time, S and V at most t? That needs the
(S, V) labels only, none above t. A least latency needs W alone: a plain shortest path.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tpuplan.planner.costs import Goal, totals
from tpuplan.profiles.stagecost import StageCostTable, start_us

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
INF = 2**62
_PAIRWISE_CHUNK = 2048  # candidates of one end compared at once when labels have 3 or more components


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


def steps_for(tables: Sequence[StageCostTable], masks: Sequence[Mask], cap: int, kinds: Sequence[str],
              beta_gamma: tuple[int, int] = (0, 0)) -> list[Step]:
    """The steps of the objective components `kinds`: M (largest stage time), S and V (sums of the
    serialized and bus times), T and O (sums of stage times and one-offs), W (sum of beta x stage time +
    gamma x one-off); stages at most `cap` us."""
    cache: dict[int, Step] = {}
    out = []
    for t, m in zip(tables, masks, strict=True):
        key = id(t) * 31 + id(m)
        if key not in cache:
            mats = {"M": ("max", t.time_us), "S": ("sum", t.serial_us), "V": ("sum", t.bus_us),
                    "T": ("sum", t.time_us), "O": ("sum", t.oneoff_us)}
            parts = tuple(mats[k] if k in mats else ("sum", beta_gamma[0] * t.time_us + beta_gamma[1] * t.oneoff_us)
                          for k in kinds)
            cache[key] = Step(m & (t.time_us <= cap), parts)
        out.append(cache[key])
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
    comps = np.stack([np.maximum(prev.comps[lab, j], mat[a, b]) if op == "max" else prev.comps[lab, j] + mat[a, b]
                      for j, (op, mat) in enumerate(step.parts)], axis=1)
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
    """For lexicographically sorted rows: each row that an earlier row matches or beats in every column."""
    out = np.zeros(len(c), dtype=np.bool_)
    for lo in range(0, len(c), _PAIRWISE_CHUNK):
        block = c[lo : lo + _PAIRWISE_CHUNK]
        earlier = c[: lo + len(block)]
        le = (earlier[:, None, :] <= block[None, :, :]).all(axis=2)  # [earlier j, block i]
        j = np.arange(len(earlier))[:, None]
        i = np.arange(lo, lo + len(block))[None, :]
        out[lo : lo + len(block)] = (le & (j < i)).any(axis=0)
    return out


def _backtrack(layers: list[Layer], index: int) -> list[int]:
    ends = []
    for layer in reversed(layers):
        ends.append(int(layer.end[index]))
        index = int(layer.parent[index])
    ends.reverse()
    return ends[:-1]


class SearchTimeout(Exception):
    """The deadline passed during a search."""


def run_labels(steps: Sequence[Step], n: int, prune: Callable[[I64], Mask] | None = None,
               deadline: float | None = None, open_end: bool = False) -> list[Layer] | None:
    """All labels, stage by stage (one step each); `prune` says which labels to keep (an objective
    already over a bound is dropped). None when no plan exists; SearchTimeout when the deadline passes.
    With `open_end` a plan may end after any stage (its label ends at op n-1) and the layers are
    returned as they are, for plans of every length up to len(steps)."""
    k = len(steps)
    d = len(steps[0].parts)
    layers = [_first(d)]
    tails = _tails(steps, n) if prune is not None and not open_end and d >= 2 else None
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


def _tails(steps: Sequence[Step], n: int) -> list[I64]:
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
    out: I64 = np.stack([np.maximum(layer.comps[:, j], add[:, j]) if op == "max" else layer.comps[:, j] + add[:, j]
                         for j, (op, _) in enumerate(step.parts)], axis=1)
    return out


def backtrack(layers: Sequence[Layer], index: int) -> list[int]:
    """The cuts of the plan whose last stage is label `index` of the last of `layers`."""
    return _backtrack(list(layers), index)


def _run(tables: Sequence[StageCostTable], masks: Sequence[Mask], cap: int, kinds: Sequence[str],
         beta_gamma: tuple[int, int], prune: tuple[int, int] | None, deadline: float | None) -> list[Layer] | None:
    """`run_labels` on the objective components `kinds`; `prune` (alpha, bound) keeps the labels whose
    alpha x largest of (M, S, V) + W is at most the bound."""
    keep = None
    if prune is not None:
        alpha, bound = prune
        peak = [j for j, x in enumerate(kinds) if x != "W"]
        summed = kinds.index("W") if "W" in kinds else None

        def keep(comps: I64) -> Mask:
            low = alpha * comps[:, peak].max(axis=1) if peak else np.zeros(len(comps), dtype=np.int64)
            if summed is not None:
                low = low + comps[:, summed]
            out: Mask = low <= bound
            return out

    return run_labels(steps_for(tables, masks, cap, kinds, beta_gamma), tables[0].n, keep, deadline)


def _sums(tables: Sequence[StageCostTable]) -> list[str]:
    """The summed components that can be non-zero: S, V."""
    return [kind for kind, attr in (("S", "serial_us"), ("V", "bus_us"))
            if any(bool(np.any(getattr(t, attr))) for t in tables)]


@dataclass(frozen=True)
class ReferenceResult:
    objective: int
    cuts: list[int]
    proven: bool  # False when the deadline stopped the search early
    probes: int


def _least_period(tables: Sequence[StageCostTable], masks: Sequence[Mask], deadline: float | None
                  ) -> ReferenceResult | None:
    kinds = _sums(tables)
    found = _run(tables, masks, INF, kinds, (0, 0), None, None)  # one pass, always: some plan to fall back on
    if found is None:
        return None
    best = _backtrack(found, 0)
    hi = totals(tables, best, Goal()).period_us
    lo, probes, proven = 0, 1, True
    while lo < hi:
        mid = (lo + hi) // 2
        probes += 1
        try:
            got = _run(tables, masks, mid, kinds, (0, 0), (1, mid), deadline)
        except SearchTimeout:
            proven = False
            break
        if got is None:
            lo = mid + 1
        else:
            best = _backtrack(got, 0)
            hi = totals(tables, best, Goal()).period_us
    return ReferenceResult(hi, best, proven, probes)


def reference_solve(tables: Sequence[StageCostTable], goal: Goal, *, onchip: bool, deadline: float | None = None
                    ) -> ReferenceResult | None:
    """The least objective J over K = len(tables) stages and one plan reaching it; None if no plan exists
    (or the deadline passed before any plan was found)."""
    masks = stage_masks(tables, onchip)
    alpha, beta, gamma = goal.weights
    if beta == 0 and gamma == 0:
        return _least_period(tables, masks, deadline)
    if alpha == 0:  # latency: a shortest path on W alone
        cuts = _shortest(tables, masks, beta, gamma)
        return None if cuts is None else ReferenceResult(totals(tables, cuts, goal).objective, cuts, True, 1)
    return _least_batch_time(tables, masks, goal, deadline)


def _shortest(tables: Sequence[StageCostTable], masks: Sequence[Mask], beta: int, gamma: int) -> list[int] | None:
    """The plan of least sum of beta x stage time + gamma x one-off (None: no plan). One pass of a
    shortest path: it runs to the end whatever the deadline, so there is always a plan to fall back on."""
    found = _run(tables, masks, INF, ["W"], (beta, gamma), None, None)
    return None if found is None else _backtrack(found, 0)


def _least_batch_time(tables: Sequence[StageCostTable], masks: Sequence[Mask], goal: Goal, deadline: float | None
                      ) -> ReferenceResult | None:
    """J = alpha P + W: labels (M, S, V, W), pruned by the better of the least-period and the
    least-latency plans."""
    alpha, beta, gamma = goal.weights
    fastest = _least_period(tables, masks, deadline)
    candidates = [c for c in (fastest.cuts if fastest else None, _shortest(tables, masks, beta, gamma))
                  if c is not None]
    if not candidates:
        return None
    incumbent = min(candidates, key=lambda c: totals(tables, c, goal).objective)
    bound = totals(tables, incumbent, goal).objective
    constant = gamma * start_us(tables)
    kinds = ["M", *_sums(tables), "W"]
    try:
        layers = _run(tables, masks, INF, kinds, (beta, gamma), (alpha, bound - constant), deadline)
    except SearchTimeout:
        return ReferenceResult(bound, incumbent, False, 1)
    if layers is None:
        return ReferenceResult(bound, incumbent, True, 1)
    final = layers[-1]
    scores = alpha * final.comps[:, :-1].max(axis=1) + final.comps[:, -1] + constant
    cuts = _backtrack(layers, int(np.argmin(scores)))
    return ReferenceResult(totals(tables, cuts, goal).objective, cuts, True, 1)


def least_secondary(tables: Sequence[StageCostTable], masks: Sequence[Mask], goal: Goal, objective: int,
                    at_most: int, deadline: float | None = None) -> list[int] | None:
    """Among plans of objective J <= `objective` whose stage k is allowed by masks[k]: one of least
    secondary number (latency for a throughput goal, period for a latency goal), exactly, by labels
    (largest stage, S, V, sum of T, sum of O) kept while J can still be met and the secondary number
    stay at most `at_most` (that of a plan known to meet J). None if no plan meets both; SearchTimeout
    when the deadline passes."""
    alpha, beta, gamma = goal.weights
    steady = beta == 0 and gamma == 0
    kinds = [*([] if steady else ["M"]), *_sums(tables), "T", *(["O"] if gamma else [])]
    cap = objective // alpha if steady else INF
    base = gamma * start_us(tables)

    def period(comps: I64) -> I64:
        cols = [j for j, x in enumerate(kinds) if x in ("M", "S", "V")]
        out: I64 = comps[:, cols].max(axis=1) if cols else np.zeros(len(comps), dtype=np.int64)
        return out

    def score(comps: I64) -> I64:
        oneoff = comps[:, kinds.index("O")] if gamma else 0
        out: I64 = alpha * period(comps) + beta * comps[:, kinds.index("T")] + gamma * oneoff + base
        return out

    def second(comps: I64) -> I64:
        out: I64 = comps[:, kinds.index("T")] if goal.objective == "throughput" else period(comps)
        return out

    def keep(comps: I64) -> Mask:
        out: Mask = (score(comps) <= objective) & (second(comps) <= at_most)
        return out

    layers = run_labels(steps_for(tables, masks, cap, kinds), tables[0].n, keep, deadline)
    if layers is None:
        return None
    return _backtrack(layers, int(np.argmin(second(layers[-1].comps))))


def _any(m: Mask, axis: int) -> Mask:
    out: Mask = np.asarray(m.any(axis=axis), dtype=np.bool_)
    return out


def _shift(end: Mask) -> Mask:
    """Starts of the next stage: one op after each end."""
    out: Mask = np.concatenate([np.zeros(1, dtype=np.bool_), end[:-1]])
    return out


def reachable_ends(tables: Sequence[StageCostTable], masks: Sequence[Mask], cap: int) -> list[I64] | None:
    """For each cut k < K-1, the ends that lie on some plan whose every stage takes at most `cap`."""
    n, k = tables[0].n, len(tables)
    allowed = [m & (t.time_us <= cap) for m, t in zip(masks, tables, strict=True)]
    fwd: list[Mask] = []
    start = np.zeros(n, dtype=np.bool_)
    start[0] = True
    for s in range(k):
        end = _any(allowed[s][start], 0)
        if s == k - 1:
            end[: n - 1] = False
        else:
            end[n - (k - 1 - s) :] = False  # leave one op for each later stage
        fwd.append(end)
        start = _shift(end)
    if not fwd[-1][n - 1]:
        return None
    out: list[I64] = []
    need = np.zeros(n, dtype=np.bool_)
    need[n - 1] = True
    for s in range(k - 1, 0, -1):
        starts = _any(allowed[s][:, need], 1)
        need = np.concatenate([starts[1:], np.zeros(1, dtype=np.bool_)]) & fwd[s - 1]
        out.append(np.flatnonzero(need).astype(np.int64))
    out.reverse()
    return out


def fewest_onchip_stages(tables: Sequence[StageCostTable]) -> int | None:
    """Fewest stages with every stage valid and on chip (stage s on tables[min(s, len-1)]); None if none."""
    n = tables[0].n
    start = np.zeros(n, dtype=np.bool_)
    start[0] = True
    seen = np.zeros(n, dtype=np.bool_)
    for count in range(1, n + 1):
        t = tables[min(count - 1, len(tables) - 1)]
        end = _any((t.valid & t.onchip)[start], 0)
        if end[n - 1]:
            return count
        start = _shift(end) & ~seen
        seen |= start
        if not start.any():
            return None
    return None


def brute_force(tables: Sequence[StageCostTable], goal: Goal, *, onchip: bool) -> tuple[int, int, list[int]] | None:
    """(J, secondary, cuts): the least such triple over every cut set (tiny n only). The secondary is the
    latency for a throughput objective and the period for a latency one, as the solver breaks ties."""
    n, k = tables[0].n, len(tables)
    masks = stage_masks(tables, onchip)
    best: tuple[int, int, list[int]] | None = None
    for cuts in itertools.combinations(range(n - 1), k - 1):
        bounds = zip([0, *(c + 1 for c in cuts)], [*cuts, n - 1], strict=True)
        if not all(masks[s][a, b] for s, (a, b) in enumerate(bounds)):
            continue
        tot = totals(tables, cuts, goal)
        second = tot.latency_us if goal.objective == "throughput" else tot.period_us
        key = (tot.objective, second, list(cuts))
        if best is None or key < best:
            best = key
    return best
