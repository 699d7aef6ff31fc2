"""Integer stage-time tables: the plain data the solver, the baselines and the reference share.

A stage covers ops a..b (inclusive) on one device. Its predicted time in microseconds is

    overhead
  + C[b+1] - C[a]                           compute of its ops
  + max(0, S[b+1] - S[last_cached[a] + 1])   streaming of layers after the cached prefix
  + link_in[a] + link_out[b]                host link: tensors crossing its two cuts
  + MO[b+1] - MO[a]                         host link: model outputs produced inside it

where C, S and MO are prefix sums (length n+1). `last_cached[a]` is the last op whose parameters the
Edge TPU compiler caches when a segment starts at a (it caches whole layers in execution order until
one does not fit; that layer and every later one stream), so at most a - 1 when nothing is cached.
`mem[a..b]` = P[b+1] - P[a] are the stage's cached-layout parameter bytes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageCostTable:
    """Everything the planner needs about one (profile, device) pair, as integers."""

    device_name: str
    n: int
    overhead_us: int
    compute_prefix: list[int]  # C, len n+1
    stream_prefix: list[int]  # S, len n+1
    param_prefix: list[int]  # P: cached-layout parameter bytes, len n+1
    raw_param_prefix: list[int]  # parameter bytes as stored in the model, len n+1
    last_cached: list[int]  # len n, values in [a-1, n-1]
    link_in_us: list[int]  # len n: link time of what crosses into a stage starting at a
    link_out_us: list[int]  # len n: link time of what crosses out of a stage ending at b
    model_out_prefix_us: list[int]  # MO, len n+1
    bytes_in: list[int]  # len n: bytes crossing into a stage starting at a
    bytes_out: list[int]  # len n: bytes crossing out of a stage ending at b
    onchip_capacity: int  # cached bytes one device holds (for reporting and the default rule)

    def stage_time_us(self, a: int, b: int) -> int:
        """Predicted time of a stage over ops a..b; the one definition every algorithm must match."""
        return self.stage_parts(a, b)["total_us"]

    def stage_parts(self, a: int, b: int) -> dict[str, int]:
        if not 0 <= a <= b < self.n:
            raise ValueError(f"bad stage {a}..{b} for {self.n} ops")
        c, s, p = self.compute_prefix, self.stream_prefix, self.param_prefix
        lc = self.last_cached[a]
        cached_end = min(lc, b)
        spill_us = max(0, s[b + 1] - s[lc + 1])
        onchip = p[cached_end + 1] - p[a]
        offchip = p[b + 1] - p[a] - onchip
        link = self.link_in_us[a] + self.link_out_us[b] + self.model_out_prefix_us[b + 1]
        link -= self.model_out_prefix_us[a]
        compute = c[b + 1] - c[a]
        total = self.overhead_us + compute + spill_us + link
        return {
            "total_us": total,
            "compute_us": compute,
            "spill_us": spill_us,
            "link_us": link,
            "overhead_us": self.overhead_us,
            "onchip_bytes": onchip,
            "offchip_bytes": offchip,
            "param_bytes": self.raw_param_prefix[b + 1] - self.raw_param_prefix[a],
            "bytes_in": self.bytes_in[a],
            "bytes_out": self.bytes_out[b],
        }

    def fits_on_chip(self, a: int, b: int) -> bool:
        return self.last_cached[a] >= b
