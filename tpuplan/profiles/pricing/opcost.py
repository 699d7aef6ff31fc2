"""Per-op prices: the Edge TPU compiler's parameter layout, device time, streaming, host CPU time.

The layout is fitted to the compiler's reports; the price formulas are those of
`profiles.pricing.formula`. Results are integers (us, bytes); how a segment caches its layers is in
`tpuplan.profiles.pricing.stagecost`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.formula import (
    DEVICE_OP_PRICE,
    HOST_OP_PRICE,
    KIB,
    STREAM_OP_PRICE,
    op_price,
    stream_passes,
    whole_us,
)
from tpuplan.profiles.pricing.host import HostSpec

WEIGHTED_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"})


def pad(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple if multiple > 1 else n


def _out_axis(op_type: str, dims: Sequence[int]) -> int:
    return len(dims) - 1 if op_type == "DEPTHWISE_CONV_2D" else 0


def cached_layout_bytes(
    op_type: str, param_shapes: Sequence[Sequence[int]], param_bytes: int, per_channel: bool, device: DeviceSpec
) -> int:
    """Bytes the compiler reserves on chip for an op's parameters.

    Matched byte for byte to the compiler's reports below 1 MiB: each int8 weight tensor is laid out
    with its output channels padded to `channel_pad` and its innermost input depth to `input_pad` (FC
    [units, in]: pad(units) x pad(in); conv [cout, kh, kw, cin]: pad(cout) x kh x kw x pad(cin)), plus
    `per_channel_bytes` per padded output channel when the kernel is quantised per channel (conv F=32:
    78,592 B = 76,032 + 5 x 8 x 64). Biases of FC/conv layers are not counted; constants of other ops
    count as stored.
    """
    if device.backend == "cpu" or param_bytes == 0:
        return param_bytes
    total, raw = 0, 0
    for shape in param_shapes:
        dims = [max(int(d), 1) for d in shape]
        if len(dims) < 2:
            continue
        raw += math.prod(dims)
        axis = _out_axis(op_type, dims)
        dims[axis] = pad(dims[axis], device.channel_pad)
        if axis != len(dims) - 1:
            dims[-1] = pad(dims[-1], device.input_pad)
        total += math.prod(dims)
        if per_channel and op_type in WEIGHTED_OPS:
            total += device.per_channel_bytes * dims[axis]
    if op_type not in WEIGHTED_OPS:
        total += max(0, param_bytes - raw)  # other constants, as stored
    return total


def padded_macs(op_type: str, macs: int, param_shapes: Sequence[Sequence[int]], device: DeviceSpec) -> int:
    """MACs of the padded layout the Edge TPU computes: the compute sweeps step where the padding steps
    (conv F = 72, 132, 202, ...), which raw MACs cannot show."""
    if device.backend == "cpu" or op_type not in WEIGHTED_OPS or not param_shapes or len(param_shapes[0]) < 2:
        return macs
    dims = [max(int(d), 1) for d in param_shapes[0]]
    axis = _out_axis(op_type, dims)
    scale = pad(dims[axis], device.channel_pad) / dims[axis]
    if axis != len(dims) - 1:
        scale *= pad(dims[-1], device.input_pad) / dims[-1]
    return round(macs * scale)


def device_op_us(op_class: str, tpu_macs: int, output_bytes: int, device: DeviceSpec) -> int:
    """Predicted time of one op on the device (inside its invoke), when the device runs it."""
    cost = device.cost(op_class)
    q = {"count": 1.0, "mmac": tpu_macs / 1e6, "out_kib": output_bytes / KIB}
    return whole_us(op_price(DEVICE_OP_PRICE, lambda f: getattr(cost, f), q))


def stream_us(op_class: str, cached_bytes: int, out_pixels: int, device: DeviceSpec) -> int:
    """Extra device time per inference when this op's parameters are streamed instead of cached: its
    weights fetched once per tile of its `out_pixels` output positions (formula.stream_passes)."""
    if device.backend == "cpu" or cached_bytes == 0:
        return 0
    cost = device.cost(op_class)
    kib = cached_bytes / KIB * stream_passes(out_pixels, device.stream_tile_pixels)
    return whole_us(op_price(STREAM_OP_PRICE, lambda f: getattr(cost, f), {"stream_kib": kib}))


def out_pixels(shapes: Sequence[Sequence[int]]) -> int:
    """Output positions of an op: the spatial size of its first output (1 for a vector)."""
    if not shapes or len(shapes[0]) < 3:
        return 1
    return max(1, math.prod(max(int(d), 1) for d in shapes[0][1:-1]))


def host_op_us(op_class: str, op_type: str, macs: int, act_bytes: int, host: HostSpec) -> int:
    """Predicted host CPU time of one op run by the host (an op the Edge TPU does not take)."""
    cost = host.op_cost(op_class, op_type)
    q = {"count": 1.0, "act_kib": act_bytes / KIB, "mmac": macs / 1e6}
    return whole_us(op_price(HOST_OP_PRICE, lambda f: getattr(cost, f), q))
