"""What the calibration fits: every parameter, the coefficients it sets, its plausible physical range.

A parameter sets one or more coefficients of the cost formula (`profiles.pricing.formula`) on one or more
specs: `device:*` is the Edge TPU chip itself, shared by every Edge TPU device (its compute, its per-op
and activation costs, its invoke overhead); `device:edgetpu-usb` and `device:edgetpu-pci` are its links
(USB 3.0, PCIe Gen2 x1); `host:NAME` a host preset (the machine's side of an invoke, a runner's work).
Two hosts that ran on one machine share its parameters (the study's Python-threads and pycoral runners).

Every parameter has a plausible range, written next to it with where it comes from; the fit never leaves
it (a value at an edge is reported as such). A weak prior pulls the parameters the data cannot separate
towards a physical guess (or towards another parameter: the same bytes over the same link).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tpuplan.profiles.pricing.formula import ON_CHIP_CLASSES
from tpuplan.profiles.pricing.host import HostSpec

F64 = npt.NDArray[np.float64]
CHIP = "device:*"
USB3_US_PER_KIB = 1024 / 500.0  # 5 Gbit/s, 8b/10b coded: at most 500 MB/s each way
PCIE2_US_PER_KIB = 1024 / 500.0  # PCIe Gen2 x1: 5 GT/s, 8b/10b: 500 MB/s each way
PEAK_US_PER_MMAC = 0.5  # 4 TOPS = 2 TMAC/s
ON_CHIP = ON_CHIP_CLASSES
MISC = ("elementwise", "reduce", "resize", "other")


@dataclass(frozen=True)
class Param:
    """One fitted number: the (spec, coefficient path) it sets, its start value, its plausible range and
    why, and an optional weak prior (value, scale), towards another parameter's value when `tie` names it."""

    name: str
    targets: tuple[tuple[str, str], ...]
    init: float
    low: float
    high: float
    why: str
    prior: tuple[float, float] | None = None
    tie: str | None = None


def _classes(field: str, classes: Sequence[str], spec: str = CHIP) -> tuple[tuple[str, str], ...]:
    return tuple((spec, f"op_costs.{c}.{field}") for c in classes)


def _link(spec: str) -> tuple[tuple[str, str], ...]:
    return ((spec, "link.in_us_per_kib"), (spec, "link.out_us_per_kib"))


CHIP_PARAMS = (
    Param(
        "chip.overhead",
        ((CHIP, "invoke_overhead_us"),),
        100.0,
        5.0,
        2000.0,
        "one inference's start and end: a round trip over the link and the chip's start, tens to hundreds of us",
        prior=(50.0, 50.0),
    ),
    Param(
        "chip.op",
        _classes("us_per_op", ON_CHIP),
        5.0,
        0.0,
        100.0,
        "switching the chip to the next layer: a few us of instructions, no more than a small layer's time",
        prior=(0.0, 50.0),
    ),
    Param(
        "chip.conv",
        _classes("us_per_mmac", ("conv",)),
        0.8,
        PEAK_US_PER_MMAC,
        20.0,
        "at most the chip's peak of 4 TOPS (0.5 us per million MACs); a few % of it at worst",
    ),
    Param(
        "chip.fc",
        _classes("us_per_mmac", ("fc",)),
        10.0,
        PEAK_US_PER_MMAC,
        100.0,
        "one weight per MAC: bound by reading the cached weights, not by the peak",
    ),
    Param(
        "chip.depthwise",
        _classes("us_per_mmac", ("depthwise",)),
        5.0,
        PEAK_US_PER_MMAC,
        200.0,
        "one input channel per output: a small part of the systolic array is busy",
        prior=(5.0, 50.0),
    ),
    Param(
        "chip.misc",
        _classes("us_per_mmac", MISC),
        1.0,
        0.0,
        50.0,
        "elementwise and pooling MACs, vector unit",
        prior=(1.0, 10.0),
    ),
    Param(
        "chip.act",
        _classes("us_per_kib_act", ON_CHIP),
        0.1,
        0.0,
        0.5,
        "activations moved on chip: at least ~2 GB/s of on-chip memory",
        prior=(0.0, 0.5),
    ),
)
LINK_PARAMS = (
    Param(
        "usb.link",
        _link("device:edgetpu-usb"),
        3.0,
        USB3_US_PER_KIB,
        50.0,
        "USB 3.0: at most 500 MB/s each way (2.048 us/KiB)",
        prior=(2.5, 5.0),
    ),
    Param(
        "usb.stream",
        _classes("stream_us_per_kib", ON_CHIP, "device:edgetpu-usb"),
        3.0,
        USB3_US_PER_KIB,
        50.0,
        "parameters streamed over USB 3.0: at most 500 MB/s",
    ),
    Param(
        "usb.upload",
        (("device:edgetpu-usb", "link.upload_us_per_kib"),),
        3.0,
        USB3_US_PER_KIB,
        50.0,
        "the first inference's upload: the same bytes over the same link as streaming",
        prior=(0.0, 1.0),
        tie="usb.stream",
    ),
    Param(
        "pci.link",
        _link("device:edgetpu-pci"),
        3.0,
        PCIE2_US_PER_KIB,
        50.0,
        "PCIe Gen2 x1: at most 500 MB/s each way",
        prior=(0.0, 2.0),
        tie="usb.link",
    ),
    Param(
        "pci.stream",
        _classes("stream_us_per_kib", ON_CHIP, "device:edgetpu-pci"),
        3.0,
        PCIE2_US_PER_KIB,
        50.0,
        "parameters streamed over PCIe Gen2 x1: at most 500 MB/s",
        prior=(0.0, 3.0),
        tie="usb.stream",
    ),
    Param(
        "pci.upload",
        (("device:edgetpu-pci", "link.upload_us_per_kib"),),
        3.0,
        PCIE2_US_PER_KIB,
        50.0,
        "the first inference's upload over PCIe",
        prior=(0.0, 1.0),
        tie="pci.stream",
    ),
)
STUDY = ("host:python-threads", "host:pycoral")  # the study's machine: one host, two runners


MACHINE_WHY = {  # where each machine parameter's range comes from
    "study.invoke": "the study machine's side of an invoke (libedgetpu driver, the Python call)",
    "study.io": "the study machine's side of the transfers (copies into and out of the driver's buffers)",
    "study.tpu_op": "the study machine's driver work per Edge TPU layer",
    "study.stream_io": "the study machine's side of streaming the parameters (its USB stack)",
    "a53.tpu_op": "the Dev Board's Arm Cortex-A53 driver work per Edge TPU layer",
    "a53.io": "the Dev Board's copies into and out of the driver's buffers (LPDDR4, in-order cores)",
}


def _machine(hosts: Sequence[str], name: str, path: str, init: float, high: float, scale: float) -> Param:
    """A host machine's number (at least 0), the same on each of its `hosts`, with a weak prior towards 0."""
    return Param(name, tuple((h, path) for h in hosts), init, 0.0, high, MACHINE_WHY[name], prior=(0.0, scale))


A53 = ("host:arm-a53",)  # the Dev Board
MACHINE_PARAMS = (
    _machine(STUDY, "study.invoke", "invoke_us", 50.0, 2000.0, 1000.0),
    _machine(STUDY, "study.io", "io_us_per_kib", 2.0, 50.0, 50.0),
    _machine(STUDY, "study.tpu_op", "tpu_op_us", 0.0, 200.0, 20.0),
    _machine(STUDY, "study.stream_io", "stream_io_us_per_kib", 0.2, 20.0, 20.0),
    _machine(A53, "a53.tpu_op", "tpu_op_us", 5.0, 200.0, 50.0),
    _machine(A53, "a53.io", "io_us_per_kib", 0.5, 20.0, 5.0),
)


def device_link_params(name: str) -> tuple[Param, ...]:
    """The link parameters of an Edge TPU device by its spec's name: the preset's own (USB 3.0, PCIe) or,
    for a device of another name (a refitted or user-written spec), the same three numbers on it, in the
    range of either link (at least 2.048 us/KiB: 500 MB/s each way)."""
    own = tuple(p for p in LINK_PARAMS if any(spec == f"device:{name}" for spec, _ in p.targets))
    if own:
        return own
    spec = f"device:{name}"
    return (
        Param(f"{name}.link", _link(spec), 3.0, USB3_US_PER_KIB, 50.0, "its link: at most 500 MB/s each way"),
        Param(
            f"{name}.stream",
            _classes("stream_us_per_kib", ON_CHIP, spec),
            3.0,
            USB3_US_PER_KIB,
            50.0,
            "parameters streamed over its link: at most 500 MB/s",
        ),
        Param(f"{name}.upload", ((spec, "link.upload_us_per_kib"),), 3.0, USB3_US_PER_KIB, 50.0, "its first upload"),
    )


def machine_params(name: str) -> tuple[Param, ...]:
    """A host machine's side of an Edge TPU invoke: the study's machines' own parameters or, for another
    host, the same four numbers on it, in the study machine's ranges."""
    own = tuple(p for p in MACHINE_PARAMS if any(spec == f"host:{name}" for spec, _ in p.targets))
    if own:
        return own
    h = f"host:{name}"
    return tuple(
        Param(
            p.name.replace("study.", f"{name}."),
            ((h, p.targets[0][1]),),
            p.init,
            p.low,
            p.high,
            p.why.replace("the study machine's", "this machine's"),
        )
        for p in MACHINE_PARAMS
        if p.name.startswith("study.")
    )


def host_ops_params(name: str) -> tuple[Param, ...]:
    """How much slower (or faster) a host runs the ops an Edge TPU leaves to it than their prices say: a
    machine other than the one that priced them (a Raspberry Pi beside a desktop's prices)."""
    return (
        Param(
            f"{name}.host_ops",
            ((f"host:{name}", "host_ops_scale"),),
            1.0,
            0.1,
            10.0,
            "the host CPU's speed at the ops left to it, against their prices: a tenth to ten times",
        ),
    )


def runner_params(name: str, base: HostSpec) -> tuple[Param, ...]:
    """A pipeline runner's own numbers. One that does its host work under a lock (`serialized` > 0: Python
    threads under the interpreter lock, which also start inside the timed region) gets the per-stage work,
    the serialized share of the device time, the start-up and the streaming extras; a runner without one
    (pycoral's C++ threads, built before the clock) only its per-stage work."""
    h = f"host:{name}"
    if base.serialized > 0:
        return (
            Param(
                f"{name}.stage",
                ((h, "stage_us"),),
                200.0,
                0.0,
                5000.0,
                "a Python thread's hand-off per stage and input: tens to hundreds of us",
            ),
            Param(f"{name}.serialized_device", ((h, "serialized_device"),), 0.3, 0.0, 1.0, "a share"),
            Param(f"{name}.start", ((h, "start_us"),), 50.0, 0.0, 1e5, "starting the threads", prior=(50.0, 50.0)),
            Param(
                f"{name}.stream_extra",
                ((h, "stream_extra_us"),),
                0.0,
                0.0,
                1e5,
                "host work of a streaming stage per input",
                prior=(0.0, 3000.0),
            ),
            Param(
                f"{name}.stream_cold",
                ((h, "stream_cold_us"),),
                0.0,
                0.0,
                1e6,
                "first run of a streaming stage",
                prior=(0.0, 3000.0),
            ),
        )
    return (
        Param(
            f"{name}.stage",
            ((h, "stage_us"),),
            50.0,
            0.0,
            5000.0,
            "a C++ thread's hand-off per stage and input",
            prior=(50.0, 500.0),
        ),
    )
