"""What `plan devices` reports as a document: every device and host preset, and the Edge TPUs found here.

A document (not a dict) so that `--json` and `-o` are checked by the same reader as every other output."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from tpuplan.profiles.docio import StrictModel
from tpuplan.profiles.pricing.device import DeviceSpec, preset, preset_names
from tpuplan.profiles.pricing.host import HostSpec, host_preset, host_preset_names
from tpuplan.runtime.backends.edgetpu import enumerate_edge_tpus

DEVICES_KIND: Final = "tpuplan.devices"


class DevicesDoc(StrictModel):
    """What `plan devices --json` prints: every device and host preset, and the Edge TPUs found here."""

    kind: Literal["tpuplan.devices"] = DEVICES_KIND
    schema_version: Literal[1] = 1
    presets: list[DeviceSpec]
    hosts: list[HostSpec]
    edgetpus_present: list[dict[str, str]] = Field(description="type and path of each Edge TPU found")
    edgetpus_listed_by: str = Field(description="how they were found: libedgetpu through pycoral, or a scan")


def devices_doc() -> DevicesDoc:
    """The presets shipped with tpuplan and the Edge TPUs on this machine now."""
    present, listed_by = enumerate_edge_tpus()
    return DevicesDoc(
        presets=[preset(n) for n in preset_names()],
        hosts=[host_preset(n) for n in host_preset_names()],
        edgetpus_present=present,
        edgetpus_listed_by=listed_by,
    )
