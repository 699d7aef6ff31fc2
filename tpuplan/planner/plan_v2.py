"""Reading plans of schema 2 as schema-3 plans.

Schema 2 spelled the stage's parts out as fields (predicted_device_us, predicted_compute_us, ...); schema 3
keeps the cost formula's terms and values by name (`predicted_terms`, `predicted_values`) and the period's
bounds (`predicted_bounds`), so that a new term changes no document model. The numbers are carried over as
they were; a term schema 2 did not keep apart is worked out from the plan's own host (the streaming extras,
the invoke overhead) exactly as the formula would.
"""

from __future__ import annotations

import math
from typing import Any

from tpuplan.planner.plan_check import TERM_KEYS
from tpuplan.profiles.errors import TpuplanError

_OLD_PARTS = (
    "predicted_device_us",
    "predicted_compute_us",
    "predicted_spill_us",
    "predicted_link_us",
    "predicted_host_ops_us",
    "predicted_runner_us",
    "predicted_serial_us",
    "predicted_bus_us",
    "predicted_oneoff_us",
)


def _whole(x: Any) -> int:
    return max(0, math.ceil(float(x) - 1e-9))


def _stage(old: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    streams = int(old["predicted_offchip_bytes"]) > 0
    device = int(old["predicted_device_us"])
    compute, spill, link = (int(old[k]) for k in ("predicted_compute_us", "predicted_spill_us", "predicted_link_us"))
    cold = _whole(host.get("stream_cold_us", 0.0)) if streams else 0
    oneoff = int(old["predicted_oneoff_us"])
    terms = {
        "overhead": device - compute - spill - link,
        "compute": compute,
        "spill": spill,
        "link": link,
        "host_ops": int(old["predicted_host_ops_us"]),
        "runner": int(old["predicted_runner_us"]),
        "stream_extra": _whole(host.get("stream_extra_us", 0.0)) if streams else 0,
        "bus_in": int(old["predicted_bus_us"]),  # schema 2 kept one bus time, both directions
        "stream_cold": min(cold, oneoff),
        "upload": oneoff - min(cold, oneoff),
    }
    values = {
        "time": int(old["predicted_us"]),
        "serial": int(old["predicted_serial_us"]),
        "bus_in": int(old["predicted_bus_us"]),
        "bus_out": 0,
        "oneoff": oneoff,
    }
    new = {k: v for k, v in old.items() if k not in _OLD_PARTS}
    every = dict.fromkeys(TERM_KEYS, 0) | terms  # terms schema 2 did not have were zero in its model
    return {**new, "predicted_terms": every, "predicted_values": values}


def migrate_v2(old: dict[str, Any]) -> dict[str, Any]:
    """The schema-3 form of a schema-2 plan object (validated afterwards like any plan)."""
    try:
        host = dict(old["host"])
        stages = [_stage(dict(s), host) for s in old["stages"]]
        serial = sum(s["predicted_values"]["serial"] for s in stages)
        bus = sum(s["predicted_values"]["bus_in"] for s in stages)
        slowest = max(int(s["predicted_interval_us"]) for s in stages)
        return {
            **old,
            "schema_version": 3,
            "stages": stages,
            "predicted_bounds": {"stage": slowest, "serialized": serial, "bus_in": bus, "bus_out": 0},
        }
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise TpuplanError(f"invalid schema-2 plan ({type(exc).__name__}: {exc})") from None
