"""One segment of a profiled model as the fit sees it: the cost formula's terms of the stage as linear
forms in the fitted parameters (`calibration.timing.stage_terms`), from the planner's own pricer.

A measured row of a study file (`calibration.fit`) and a stage timed by `plan verify` (`calibration.stagefit`)
are both segments of a profile run on one device and host; both go through `segment_forms`, so that a fit
describes exactly what the planner prices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tpuplan.compat import zip_strict
from tpuplan.profiles.build import price
from tpuplan.profiles.calibration.memory import cached_mask
from tpuplan.profiles.calibration.paramspace import ParamSpace
from tpuplan.profiles.calibration.timing import stage_terms
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import OpProfile, Profile
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec
from tpuplan.profiles.pricing.opcost import out_pixels
from tpuplan.profiles.pricing.stagecost import StagePricer

PricedOps = list[tuple[OpProfile, int]]  # every op priced, with its output pixels (streaming passes)


def priced(profile: Profile, device: DeviceSpec, host: HostSpec) -> tuple[StagePricer, PricedOps]:
    """The planner's pricer of a profile on a device and host, and its priced ops with their output pixels."""
    done = price(profile, device, host)
    shapes = {t.name: t.shape for t in done.tensors}
    ops = [(op, out_pixels([shapes[t] for t in op.outputs])) for op in done.ops]
    return StagePricer(profile.model_copy(update={"measured_stages": []}), device, host), ops


def segment_forms(
    pricer: StagePricer,
    ops: PricedOps,
    space: ParamSpace,
    names: tuple[str, str],
    bounds: tuple[int, int],
    tile: int,
    where: str,
) -> dict[str, Any]:
    """The terms of stage a..b (`bounds`) on the device and host `names` as linear forms; the layers it
    streams are the caching rule's, checked against the pricer's own on- and off-chip bytes."""
    a, b = bounds
    device = pricer.device
    full = pricer.row(a)
    k = b - a
    tpu = [bool(t) for t in pricer.placement(a)[: k + 1]]
    sizes = [ops[a + j][0].cached_bytes if t else 0 for j, t in enumerate(tpu)]
    budget = int(np.floor(device.onchip_bytes - device.io_reserve_frac * (full["tpu_in"][k] + full["tpu_out"][k])))
    kept = cached_mask(sizes, budget, device.max_cached_layer_bytes)
    on = sum(s for s, keep in zip_strict(sizes, kept) if keep)
    if (on, sum(sizes) - on) != (int(full["on"][k]), int(full["off"][k])):
        raise TpuplanError(f"calibrate: caching of {where} differs from the pricer's")
    streamed = [s > 0 and not keep for s, keep in zip_strict(sizes, kept)]
    q = {key: float(v[k]) for key, v in full["q"].items()}
    return stage_terms(space, names[0], names[1], ops[a : b + 1], tpu, streamed, q, tile)


def check_segment(n: int, bounds: Sequence[int], where: str) -> None:
    if not 0 <= bounds[0] <= bounds[1] < n:
        raise TpuplanError(f"{where}: ops {bounds[0]}..{bounds[1]} are not a stage of a {n}-op model")
