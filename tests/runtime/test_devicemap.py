"""The plan's device assignment onto `--devices` strings: each copy takes the first string on its bus."""

from __future__ import annotations

import pytest

from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.devicemap import assign, bus_of, per_copy


def test_bus_of() -> None:
    assert [bus_of(n) for n in ("edgetpu-usb", "edgetpu-pci", "usb:1", "pci", ":0", "", "cpu")] == [
        "usb",
        "pci",
        "usb",
        "pci",
        None,
        None,
        None,
    ]


def test_strings_follow_the_plans_devices_in_any_order() -> None:
    planned = per_copy(["edgetpu-pci", "edgetpu-usb"], [1, 2])
    assert planned == ["edgetpu-pci", "edgetpu-usb", "edgetpu-usb"]
    assert assign(planned, ["usb:0", "usb:1", "pci:0"]) == ["pci:0", "usb:0", "usb:1"]
    assert assign(planned, ["pci:0", "usb:0", "usb:1"]) == ["pci:0", "usb:0", "usb:1"]
    assert assign(planned, [":0", ":1", ":2"]) == [":0", ":1", ":2"]  # no bus named: in order
    assert assign([None, None], ["usb:1", "pci:0"]) == ["usb:1", "pci:0"]
    with pytest.raises(TpuplanError, match="planned for edgetpu-pci"):
        assign(["edgetpu-pci", "edgetpu-usb"], ["usb:0", "usb:1"])
    assert assign(planned, ["usb:0"]) == ["usb:0"]  # a count that differs: the backend says so
