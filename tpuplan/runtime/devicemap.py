"""The plan's device assignment onto the device strings a run is given (`--devices usb:0,pci:0`).

A plan says which device (by name: edgetpu-usb, edgetpu-pci, or a calibrated spec named after one) runs
each stage, copies included; a run is given pycoral device strings. Each copy takes, in order, the first
string not yet taken whose bus matches its device's ('usb...' for a device named *usb*, 'pci...' for
*pci*; a string or device of no known bus matches any), so `--devices usb:0,pci:0` and
`--devices pci:0,usb:0` run a plan the same way. Strings given one per copy in the plan's order already
match and keep their order.
"""

from __future__ import annotations

from collections.abc import Sequence

from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError

BUSES = ("usb", "pci")


def bus_of(name: str) -> str | None:
    """'usb' or 'pci' for a device name or device string that says which, else None."""
    lowered = name.lower()
    found = [bus for bus in BUSES if bus in lowered]
    return found[0] if len(found) == 1 else None


def per_copy(devices: Sequence[str | None], copies: Sequence[int]) -> list[str | None]:
    """The planned device of every copy, stage by stage."""
    return [dev for dev, r in zip_strict(devices, copies) for _ in range(r)]


def assign(planned: Sequence[str | None], given: Sequence[str]) -> list[str]:
    """The given device strings in the order of the copies that run on them (see the module doc)."""
    if len(planned) != len(given):
        return list(given)  # the backend says how many it needs
    left = list(range(len(given)))
    out = []
    for k, name in enumerate(planned):
        want = bus_of(name) if name else None
        pick = next((i for i in left if want is None or bus_of(given[i]) in (None, want)), None)
        if pick is None:
            wanted = ", ".join(f"{n}" for n in planned if n)
            raise TpuplanError(
                f"copy {k} was planned for {name}, but none of the device strings left "
                f"({', '.join(given[i] for i in left)}) is on its bus; the plan's devices are {wanted}"
            )
        left.remove(pick)
        out.append(given[pick])
    return out
