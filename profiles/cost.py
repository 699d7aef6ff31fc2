"""Edge TPU cost model: op time, the compiler's parameter caching, streaming and the host link.

The compiler caches parameters on chip whole layer by layer in execution order; the first layer that
does not fit, and every layer after it, is streamed from host memory on every inference (the
measurements show on-chip use dropping when that starts). All results are integers (us, bytes).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from tpuplan.profiles.device import DeviceSpec


def _pad(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


_BIAS_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"})


def cached_layout_bytes(op_type: str, param_shapes: Sequence[Sequence[int]], param_bytes: int,
                        device: DeviceSpec) -> int:
    """Bytes the compiler reserves on chip for an op's parameters.

    Fitted to the compiler's reports (shared/edgetpu-measurements): each int8 weight tensor is laid
    out with its output channels padded to `channel_pad` and its innermost input depth padded to
    `input_pad` (FC [units, in]: pad(units) * pad(in); conv [cout, kh, kw, cin]: pad(cout) * kh * kw *
    pad(cin)); the biases of FC/conv layers are not counted (the reports match exactly without them).
    Constants of other ops count as stored.
    """
    if device.backend == "cpu" or param_bytes == 0:
        return param_bytes
    total = 0
    raw_weights = 0
    for shape in param_shapes:
        dims = [max(int(d), 1) for d in shape]
        if len(dims) < 2:
            continue
        raw_weights += math.prod(dims)
        out_axis = len(dims) - 1 if op_type == "DEPTHWISE_CONV_2D" else 0
        dims[out_axis] = _pad(dims[out_axis], device.channel_pad)
        if out_axis != len(dims) - 1:
            dims[-1] = _pad(dims[-1], device.input_pad)
        total += math.prod(dims)
    if op_type not in _BIAS_OPS:
        total += max(0, param_bytes - raw_weights)  # other constants, as stored
    return total


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
