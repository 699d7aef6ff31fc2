"""The device and host presets, written from one calibration (`python -m benchmarks.calibration --write-presets`).

Fitted: edgetpu-usb (USB 3.0) and edgetpu-pci (the Dev Board's PCIe) share the chip's numbers; the study's
python-threads and pycoral runners; desktop-x86 (the reference host of Coral's desktop times: its own side
of an invoke is zero by definition, its runner is pycoral's); arm-a53 (the Dev Board's host: its side of an
invoke fitted, its host-op prices and runner ASSUMED from this machine's). Derived, with every assumed
number named: edgetpu-usb2 (the chip on a USB 2.0 link) and arm-a72 (a Raspberry Pi 4 class host). Every
fitted spec keeps its scenarios: the fit again without one source at a time.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import ROOT
from tpuplan.profiles.calibration.loso import Holdout, scenarios_of
from tpuplan.profiles.calibration.result import CalibrationResult
from tpuplan.profiles.docio import write_atomic
from tpuplan.profiles.pricing.coefficients import set_coefficient
from tpuplan.profiles.pricing.device import Calibration, DeviceSpec, device_json
from tpuplan.profiles.pricing.formula import ON_CHIP_CLASSES
from tpuplan.profiles.pricing.host import HostSpec, host_json, host_preset

FOLDER = ROOT / "tpuplan" / "profiles" / "pricing" / "presets"
USB2_US_PER_KIB = 1024 / 40.0  # ASSUMED: USB 2.0 High Speed bulk transfers, ~40 MB/s of its 480 Mbit/s
A53_HOST_OPS, A53_RUNNER = 5.0, 3.0  # ASSUMED: an in-order 1.5 GHz Cortex-A53 against this x86-64 VM
A72_HOST_OPS, A72_RUNNER, A72_DRIVER = 2.5, 1.5, 0.5  # ASSUMED: a Cortex-A72 (Pi 4) between the two


def _with(spec: DeviceSpec | HostSpec, cal: Calibration) -> DeviceSpec | HostSpec:
    return spec.model_copy(update={"calibration": cal})


def _cal(spec: DeviceSpec | HostSpec, kind: str, holdouts: list[Holdout], note: str = "") -> Calibration:
    base = spec.calibration or Calibration(source="")
    source = (base.source + (f"; {note}" if note else ""))[:4000]
    return base.model_copy(update={"source": source, "scenarios": scenarios_of(spec, kind, holdouts)})


def _usb2(usb: DeviceSpec) -> DeviceSpec:
    """The chip of the USB 3.0 fit on a USB 2.0 link: the link and streaming rates ASSUMED."""
    dev = usb.model_copy(update={"name": "edgetpu-usb2"})
    paths = ["link.in_us_per_kib", "link.out_us_per_kib", "link.upload_us_per_kib"]
    paths += [f"op_costs.{c}.stream_us_per_kib" for c in ON_CHIP_CLASSES]
    for path in paths:
        dev = set_coefficient(dev, path, round(USB2_US_PER_KIB, 4), calibrated=False)
    cal = usb.calibration or Calibration(source="")
    scenarios = [
        s.model_copy(update={"values": {k: v for k, v in s.values.items() if k not in paths}}) for s in cal.scenarios
    ]
    source = (
        f"the chip of edgetpu-usb on a USB 2.0 port: link, upload and streaming ASSUMED at {USB2_US_PER_KIB:.1f}"
        f" us/KiB (~40 MB/s of USB 2.0's 480 Mbit/s); the chip's numbers are edgetpu-usb's fit: {cal.source}"
    )
    return dev.model_copy(
        update={
            "calibration": cal.model_copy(
                update={
                    "source": source[:4000],
                    "assumed": paths,
                    "scenarios": scenarios,
                    "median_rel_error": {},
                    "worst_rel_error": {},
                    "memory_within_0_1_mib": {},
                }
            )
        }
    )


def _scaled_host(host: HostSpec, name: str, description: str, ops: float, runner: float, note: str) -> HostSpec:
    """A host whose host-op prices and runner are this machine's scaled (ASSUMED factors, said in its source)."""
    ops_costs = {
        k: v.model_copy(
            update={
                "us_per_op": round(v.us_per_op * ops, 4),
                "us_per_kib": round(v.us_per_kib * ops, 6),
                "us_per_mmac": round(v.us_per_mmac * ops, 4),
                "calibrated": False,
            }
        )
        for k, v in host.host_ops.items()
    }
    cal = host.calibration or Calibration(source="")
    source = f"{note}; host ops ASSUMED x{ops:g} and runner x{runner:g} of this machine's: {cal.source}"
    return host.model_copy(
        update={
            "name": name,
            "description": description,
            "host_ops": ops_costs,
            "stage_us": round(host.stage_us * runner, 4),
            "calibration": cal.model_copy(update={"source": source[:4000], "assumed": ["host_ops", "stage_us"]}),
        }
    )


def presets(result: CalibrationResult, holdouts: list[Holdout], host_ops_note: str) -> dict[str, DeviceSpec | HostSpec]:
    """Every preset this fit makes, by file stem (devices first, then hosts)."""
    usb = _with(result.devices["edgetpu-usb"], _cal(result.devices["edgetpu-usb"], "device", holdouts))
    pci = _with(result.devices["edgetpu-pci"], _cal(result.devices["edgetpu-pci"], "device", holdouts))
    assert isinstance(usb, DeviceSpec) and isinstance(pci, DeviceSpec)
    out: dict[str, DeviceSpec | HostSpec] = {"edgetpu-usb": usb, "edgetpu-pci": pci, "edgetpu-usb2": _usb2(usb)}
    for name in ("python-threads", "pycoral"):
        out[name] = _with(result.hosts[name], _cal(result.hosts[name], "host", holdouts, host_ops_note))
    pycoral = result.hosts["pycoral"]
    desktop = result.hosts["desktop-x86"].model_copy(update={"stage_us": pycoral.stage_us})
    out["desktop-x86"] = _with(desktop, _cal(desktop, "host", holdouts, "runner: pycoral's fit; " + host_ops_note))
    a53 = _scaled_host(
        result.hosts["arm-a53"],
        "arm-a53",
        host_preset("arm-a53").description,
        A53_HOST_OPS,
        1.0,
        "the Dev Board's side of an invoke fitted to the published Dev Board times",
    )
    a53 = a53.model_copy(update={"stage_us": round(pycoral.stage_us * A53_RUNNER, 4)})
    out["arm-a53"] = _with(a53, _cal(a53, "host", holdouts))
    base53 = result.hosts["arm-a53"]
    a72 = _scaled_host(
        base53,
        "arm-a72",
        host_preset("arm-a72").description,
        A72_HOST_OPS / A53_HOST_OPS,
        1.0,
        f"ASSUMED from arm-a53: the side of an invoke x{A72_DRIVER:g}",
    )
    cal72 = (a72.calibration or Calibration(source="")).model_copy(
        update={
            "assumed": ["host_ops", "stage_us", "tpu_op_us", "io_us_per_kib", "invoke_us"],
            "median_rel_error": {},
            "worst_rel_error": {},
            "memory_within_0_1_mib": {},
            "points": 0,
            "scenarios": [],
        }
    )
    a72 = a72.model_copy(
        update={
            "calibration": cal72,
            "stage_us": round(pycoral.stage_us * A72_RUNNER, 4),
            "tpu_op_us": round(base53.tpu_op_us * A72_DRIVER, 4),
            "io_us_per_kib": round(base53.io_us_per_kib * A72_DRIVER, 4),
            "invoke_us": round(base53.invoke_us * A72_DRIVER, 4),
        }
    )
    out["arm-a72"] = a72
    return out


def write_presets(result: CalibrationResult, holdouts: list[Holdout], host_ops_note: str) -> list[Path]:
    """Rewrite the presets from this fit; every document is read back by the reader that will load it."""
    written = []
    for name, spec in presets(result, holdouts, host_ops_note).items():
        if isinstance(spec, DeviceSpec):
            path, text = FOLDER / "devices" / f"{name}.json", device_json(DeviceSpec.model_validate(spec.model_dump()))
        else:
            path, text = FOLDER / "hosts" / f"{name}.json", host_json(HostSpec.model_validate(spec.model_dump()))
        write_atomic(path, text.encode())
        written.append(path)
    return written
