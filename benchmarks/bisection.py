"""libcoral's profiling partitioner (`partition_with_profiling`), as it searches, on a simulated device.

The search of libcoral's `BisectPartition` and `ProfilingBasedPartitioner` (coral/tools/partitioner),
step for step, with one hardware run where it compiles and benchmarks a candidate:

- bounds: the compiler's `--num_segments` split (equal parameter bytes), benchmarked once: the fastest and
  the slowest segment's latency;
- while slowest - fastest > the threshold: target = the middle; re-partition for it (`PartitionOnTargetLatency`:
  segment 0 starts with every op but one per later segment, the last segment holding every output op,
  and gives an op to the next segment until its latency is within the target, then the same for
  segment 1, ..., backtracking when the rest cannot meet it); a candidate whose segment was benchmarked
  before is not run again (libcoral caches every segment of every candidate it benchmarked); the last
  segment's latency moves the target's bounds, and a partition that met it becomes the best one.

A segment's latency is its invoke on the simulated device (`Simulator`-priced, as `edgetpu-sim` times it).
`runs` counts the candidates benchmarked; `history` the best partition after each run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tpuplan.planner.baselines import param_balanced_cuts
from tpuplan.profiles.model import Profile

Latency = Callable[[int, int], float]  # segment latency of ops a..b (one hardware run measures them all)


def first_output_op(profile: Profile) -> int:
    """The first op (execution order) whose outputs no op reads: the last segment must start at or before it."""
    read = {t for op in profile.ops for t in op.inputs}
    return next(op.index for op in profile.ops if not any(t in read for t in op.outputs))


@dataclass
class Bisection:
    """The search's state: the cache of benchmarked segments, runs so far, the best partition after each."""

    profile: Profile
    k: int
    latency: Latency
    step: int = 1
    cache: dict[tuple[int, int], float] = field(default_factory=dict)
    runs: int = 0
    best: list[int] | None = None  # ops per segment
    history: list[list[int] | None] = field(default_factory=list)  # the best after each run

    def __post_init__(self) -> None:
        self.n = len(self.profile.ops)
        self.first_output = first_output_op(self.profile)

    def _benchmark(self, num_ops: Sequence[int]) -> list[float]:
        starts = [sum(num_ops[:i]) for i in range(len(num_ops))]
        out = [self.latency(a, a + m - 1) for a, m in zip(starts, num_ops, strict=True)]
        for a, m, t in zip(starts, num_ops, out, strict=True):
            self.cache[(a, m)] = t
        self.runs += 1
        self.history.append(list(self.best) if self.best else None)
        return out

    def analyze(self, num_ops: Sequence[int], index: int) -> float:
        """PartitionCompileAndAnalyze: segment `index`'s latency, from the cache or one run."""
        start = sum(num_ops[:index])
        found = self.cache.get((start, num_ops[index]))
        if found is not None:
            return found
        return self._benchmark(num_ops)[index]

    def bounds(self) -> tuple[float, float]:
        """GetBounds: the compiler's parameter-balanced split, benchmarked (kept as the answer when its
        segments are already within the threshold: libcoral then runs no search)."""
        cuts = param_balanced_cuts([op.param_bytes for op in self.profile.ops], self.k)
        ends = [*cuts, self.n - 1]
        self.initial = [b - a + 1 for a, b in zip([0, *(c + 1 for c in cuts)], ends, strict=True)]
        got = self._benchmark(self.initial)
        return min(got), max(got)

    def search(self, cand: list[int], target: float, index: int) -> bool:
        """SearchPartition: segment `index` and the rest within `target`, shrinking it one step at a time."""
        if index == len(cand) - 1:
            return True
        total = sum(cand[index:])
        cand[-1] = max(self.n - self.first_output, self.step)
        for i in range(index + 1, len(cand) - 1):
            cand[i] = self.step
        cand[index] = total - (len(cand) - 2 - index) * self.step - cand[-1]
        if cand[index] <= 0:
            return False
        tmp = list(cand)
        while tmp[index] > 0:
            lat = self.analyze(tmp, index)
            if 0 < lat <= target and self.search(tmp, target, index + 1):
                cand[:] = tmp
                return True
            delta = min(tmp[index], self.step)
            tmp[index] -= delta
            tmp[index + 1] += delta
        return False

    def on_target(self, target: float) -> tuple[float, list[int] | None]:
        """PartitionOnTargetLatency: the last segment's latency of a partition for `target` (inf: none)."""
        num_ops = [self.step] * self.k
        num_ops[0] = self.n - (self.k - 1) * self.step
        if num_ops[0] <= 0 or not self.search(num_ops, target, 0):
            return float("inf"), None
        return self.analyze(num_ops, self.k - 1), num_ops

    def run(self, threshold_us: float, max_runs: int = 100_000) -> list[int] | None:
        """BisectPartition: the best partition (ops per segment) found before the bounds meet."""
        lower, upper = self.bounds()
        if abs(upper - lower) <= threshold_us:
            self.best = self.history[-1] = list(self.initial)
        while abs(upper - lower) > threshold_us and self.runs < max_runs:
            target = (lower + upper) / 2
            last, part = self.on_target(target)
            if part is not None and last < target:
                self.best, upper = part, target
            else:
                if part is not None and last < upper:
                    self.best, upper = part, last
                lower = target
            if self.history:
                self.history[-1] = list(self.best) if self.best else None
        return self.best


def cuts_of(num_ops: Sequence[int]) -> list[int]:
    """Ops per segment -> the cut list (the last op of every segment but the last)."""
    out, end = [], -1
    for m in num_ops[:-1]:
        end += m
        out.append(end)
    return out
