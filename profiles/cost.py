"""Edge TPU cost model: op time, the compiler's parameter caching, streaming and the host link.

The compiler caches parameters on chip whole layer by layer in execution order; the first layer that
does not fit, and every layer after it, is streamed from host memory on every inference (the
measurements show on-chip use dropping when that starts). All results are integers (us, bytes).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from profiles.device import DeviceSpec


def _pad(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


def cached_layout_bytes(op_type: str, param_shapes: Sequence[Sequence[int]], param_bytes: int,
                        device: DeviceSpec) -> int:
    """Bytes the compiler reserves on chip for an op's parameters (output channels padded)."""
    if device.backend == "cpu" or param_bytes == 0:
        return param_bytes
    if device.channel_pad <= 1:
        return param_bytes
    total = 0
    for shape in param_shapes:
        dims = [max(int(d), 1) for d in shape]
        if not dims:
            total += 4
            continue
        elem = 1
        for d in dims:
            elem *= d
        # int8 weights: 1 byte each; a 1-D tensor is a bias (int32, 4 bytes each)
        itemsize = 4 if len(dims) == 1 else 1
        if len(dims) >= 2:
            out_axis = len(dims) - 1 if op_type == "DEPTHWISE_CONV_2D" else 0
            dims[out_axis] = _pad(dims[out_axis], device.channel_pad)
            elem = 1
            for d in dims:
                elem *= d
        total += elem * itemsize
    return max(total, param_bytes) if total else param_bytes


def op_time_us(op_class: str, edgetpu: bool, macs: int, act_bytes: int, device: DeviceSpec) -> int:
    """Predicted time of one op, on the device, or on the host when the device cannot run it."""
    key = op_class if (edgetpu or device.backend == "cpu") else "host"
    cost = device.op_costs.get(key) or device.op_costs.get("other")  # type: ignore[call-overload]
    if cost is None:
        return 0
    t = cost.us_per_op + cost.us_per_mmac * macs / 1e6 + cost.us_per_kib_act * act_bytes / 1024
    return max(0, round(t))


def stream_time_us(op_class: str, edgetpu: bool, cached_bytes: int, device: DeviceSpec) -> int:
    """Extra time per inference when this op's parameters are streamed instead of cached."""
    if device.backend == "cpu" or not edgetpu or cached_bytes == 0:
        return 0
    cost = device.op_costs.get(op_class) or device.op_costs.get("other")  # type: ignore[call-overload]
    if cost is None:
        return 0
    return max(0, round(cost.stream_us_per_kib * cached_bytes / 1024))


def link_time_us(nbytes: int, device: DeviceSpec) -> int:
    if device.link_bytes_per_us <= 0 or nbytes <= 0:
        return 0
    return math.ceil(nbytes / device.link_bytes_per_us)


def capacity_for(max_activation: int, device: DeviceSpec) -> int:
    """On-chip bytes left for parameters when the largest activation of the segment is this big."""
    return max(0, device.onchip_bytes - round(device.activation_reserve_frac * max_activation))


def last_cached(cached: Sequence[int], max_act: Sequence[int], device: DeviceSpec) -> list[int]:
    """For every start a, the last op whose parameters stay on chip in a segment starting at a.

    Two pointers: a later start never caches less (fewer bytes before, a smaller largest activation).
    """
    n = len(cached)
    if device.backend == "cpu":
        return [n - 1] * n
    out: list[int] = []
    p = -1  # last cached op for the current start
    total = 0
    window: deque[int] = deque()  # indices a..p with decreasing max_act

    def fits(i: int, a: int) -> bool:
        if cached[i] > device.max_cached_layer_bytes:
            return False
        peak = max(max_act[i], max_act[window[0]] if window else 0)
        return total + cached[i] <= capacity_for(peak, device)

    for a in range(n):
        if p < a - 1:
            p, total = a - 1, 0
            window.clear()
        while window and window[0] < a:
            window.popleft()
        while p + 1 < n and fits(p + 1, a):
            p += 1
            total += cached[p]
            while window and max_act[window[-1]] <= max_act[p]:
                window.pop()
            window.append(p)
        out.append(p)
        if p >= a:
            total -= cached[a]
    return out
