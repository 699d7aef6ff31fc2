"""Integer stage-time tables: the cost model of one contiguous segment, as plain data for the planner.

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

from tpuplan.profiles.build import reprice
from tpuplan.profiles.cost import last_cached, link_time_us
from tpuplan.profiles.device import DeviceSpec
from tpuplan.profiles.model import Profile


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


def _prefix(values: list[int]) -> list[int]:
    out = [0]
    for v in values:
        out.append(out[-1] + v)
    return out


def stage_table(profile: Profile, device: DeviceSpec | None = None) -> StageCostTable:
    """Build the integer table of a profile for one device (the profile's own when None).

    A measured profile uses its measured op times; a static one the cost model's predictions.
    """
    dev = device or profile.device
    prof = reprice(profile, dev) if device is not None and profile.source == "static" else profile
    ops = prof.ops
    n = len(ops)
    compute = [round(op.measured_us) if op.measured_us is not None else op.predicted_us for op in ops]
    cut_bytes = [c.bytes for c in prof.cuts]
    bytes_in = [prof.input_bytes, *cut_bytes]
    bytes_out = [*cut_bytes, 0]
    out_names = {t.name: t.bytes for t in prof.outputs}
    model_out = [link_time_us(sum(out_names.get(name, 0) for name in op.outputs), dev) for op in ops]
    overhead = prof.measurement.get("invoke_overhead_us") if prof.measurement else None
    return StageCostTable(
        device_name=dev.name,
        n=n,
        overhead_us=round(float(overhead))
        if isinstance(overhead, (int, float))
        else round(dev.invoke_overhead_us),
        compute_prefix=_prefix(compute),
        stream_prefix=_prefix([op.stream_us for op in ops]),
        param_prefix=_prefix([op.cached_bytes for op in ops]),
        raw_param_prefix=_prefix([op.param_bytes for op in ops]),
        last_cached=last_cached(
            [op.cached_bytes for op in ops], [op.max_activation_bytes for op in ops], dev
        ),
        link_in_us=[link_time_us(b, dev) for b in bytes_in],
        link_out_us=[link_time_us(b, dev) for b in bytes_out],
        model_out_prefix_us=_prefix(model_out),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        onchip_capacity=dev.onchip_bytes,
    )
