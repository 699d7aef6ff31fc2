"""Reading plans of schema 1 (tpuplan's first version) as schema-2 plans.

Schema 1 plans came from the first cost model: the TPU alone, with no host, runner, bus or upload
costs, no record of which ops the compiler leaves on the host, and one TPU per stage. What a schema-1
plan says is kept (cuts, devices, its predicted numbers, how it was solved); what that model did not
have is carried as the zero it was in that model, and a note says so: re-run `plan solve` for the
current model's numbers. The embedded device specs (schema 1) are migrated the same way.
"""

from __future__ import annotations

import math
from typing import Any

from tpuplan.profiles.errors import TpuplanError

MIGRATED_NOTE = (
    "read from a schema-1 plan (tpuplan's first cost model: no host, runner, bus or upload costs, "
    "every op counted on the TPU): its numbers are that model's; re-run `plan solve` for current ones"
)
_V1_HOST = {
    "kind": "tpuplan.host",
    "schema_version": 1,
    "name": "schema-1",
    "description": "the first cost model had no host costs",
}


def _number(value: object, field: str) -> float:
    """A JSON number of a schema-1 plan that the migration computes with: finite, not a string or a bool
    (the schema-2 reader then judges every number it carries over as it is)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number (got {_short(value)})")
    return float(value)


def _integer(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an integer (got {_short(value)})")
    return value


def _object(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be an object (got {_short(value)})")
    return value


def _short(value: object) -> str:
    if isinstance(value, float) and math.isinf(value) and hasattr(value, "digits"):
        return f"a number of {value.digits:,} digits"
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _device(old: dict[str, Any], overhead: int | None) -> dict[str, Any]:
    rate = _number(old.get("link_bytes_per_us") or 0.0, "link_bytes_per_us")
    per_kib = round(1024 / rate, 6) if rate > 0 else 0.0
    costs = {
        name: {**_object(cost, f"op_costs.{name}"), "calibrated": False}
        for name, cost in _object(old.get("op_costs") or {}, "op_costs").items()
        if name != "host"
    }  # host ops are priced by the host spec now
    cal = old.get("calibration")
    keep = ("source", "points", "median_rel_error", "worst_rel_error")
    return {
        "kind": "tpuplan.device",
        "schema_version": 2,
        "name": old.get("name"),
        "backend": old.get("backend", "edgetpu"),
        "onchip_bytes": old.get("onchip_bytes", 0),
        "max_cached_layer_bytes": old.get("max_cached_layer_bytes", 0),
        "io_reserve_frac": old.get("activation_reserve_frac", 0.0),
        "channel_pad": old.get("channel_pad", 1),
        "input_pad": old.get("input_pad", 1),
        "invoke_overhead_us": (
            old.get("invoke_overhead_us", 0.0) if overhead is None else _number(overhead, "predicted_overhead_us")
        ),
        "link": {"in_us_per_kib": per_kib, "out_us_per_kib": per_kib, "upload_us_per_kib": 0.0, "calibrated": False},
        "op_costs": costs,
        "calibration": {k: v for k, v in cal.items() if k in keep} if isinstance(cal, dict) else None,
    }


def _stage(old: dict[str, Any]) -> dict[str, Any]:
    device_us = sum(
        _integer(old.get(k, 0), k)
        for k in ("predicted_compute_us", "predicted_spill_us", "predicted_link_us", "predicted_overhead_us")
    )
    new = {k: v for k, v in old.items() if k != "predicted_overhead_us"}
    return {
        **new,
        "copies": 1,
        "tpu_ops": old.get("n_ops"),
        "predicted_interval_us": old.get("predicted_us"),
        "predicted_device_us": device_us,
        "predicted_host_ops_us": 0,
        "predicted_runner_us": 0,
        "predicted_serial_us": 0,
        "predicted_bus_us": 0,
        "predicted_oneoff_us": 0,
        "uncalibrated_share": 0.0,
    }


def migrate_v1(old: dict[str, Any]) -> dict[str, Any]:
    """The schema-2 form of a schema-1 plan object (validated afterwards like any plan)."""
    try:
        stages, devices = list(old["stages"]), list(old["devices"])
        if not all(isinstance(x, dict) for x in [*stages, *devices]):
            raise TypeError("stages and devices must be objects")
        bottleneck = old["predicted_bottleneck_us"]
        return {
            "kind": old["kind"],
            "schema_version": 2,
            "model": old["model"],
            "profile_source": old["profile_source"],
            "n_ops": old["n_ops"],
            "goal": {"objective": "throughput", "batch": None},
            "host": _V1_HOST,
            "tpus": old["tpus"],
            "tpus_requested": old["tpus"],
            "devices": [_device(d, s.get("predicted_overhead_us")) for d, s in zip(devices, stages)],
            "cuts": old["cuts"],
            "stages": [_stage(s) for s in stages],
            "predicted_period_us": bottleneck,
            "period_bound": "stage",
            "predicted_throughput_per_s": old["predicted_throughput_per_s"],
            "predicted_latency_us": old["predicted_latency_us"],
            "predicted_oneoff_us": 0,
            "predicted_per_input_us": None,
            "fits_on_chip": old["fits_on_chip"],
            "tpus_needed_on_chip": old.get("tpus_needed_on_chip"),
            "solver": old["solver"],
            "curve": None,
            "notes": [MIGRATED_NOTE],
        }
    except KeyError as exc:
        raise TpuplanError(f"invalid schema-1 plan (no {exc})") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise TpuplanError(f"invalid schema-1 plan ({exc})") from None
