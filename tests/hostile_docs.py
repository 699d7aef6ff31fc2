"""Building hostile documents for tests/cli/test_hostile_docs.py: extreme numbers and edits that look valid.

A document is JSON text. `numeric_paths` lists every number in it (not booleans), one concrete path per
field of the schema (list positions folded, so a 60-op profile has as many as a 6-op one); `put` sets one
to an extreme value. The 5,001-digit integer cannot pass through Python's JSON writer, so it travels as
a marker string and is spliced into the text at the end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Union

Path_ = tuple[Union[str, int], ...]
HUGE_MARK = "__5001_DIGITS__"
HUGE_TEXT = "7" * 5001
EXTREMES: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    -1,
    -1e6,
    0,
    1e-300,
    0.5,
    1e18,
    1e300,
    2**38 + 1,
    2**50 + 1,
    2**63,
    -(2**63) - 1,
    HUGE_MARK,
]


SWEEP = [math.nan, -1, 0, 1e300, HUGE_MARK]  # one of each kind of trouble, for sweeps over every field


def numeric_paths(doc: Any, *, ends: bool = True) -> list[Path_]:
    """A path for each schema field holding a number: in the first and (with `ends`) the last element of
    every list, so a 60-op profile has as many as a 6-op one."""
    out: list[Path_] = []

    def walk(node: Any, path: Path_) -> None:
        if isinstance(node, bool):
            return
        if isinstance(node, (int, float)):
            out.append(path)
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, key))
        elif isinstance(node, list) and node:
            for i in sorted({0, len(node) - 1} if ends else {0}):
                walk(node[i], (*path, i))

    walk(doc, ())
    return out


def put(doc: Any, path: Path_, value: Any) -> None:
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def has(doc: Any, path: Path_) -> bool:
    """The path still leads somewhere (an edit may have dropped a list element or replaced a list)."""
    node = doc
    for key in path[:-1]:
        in_dict = isinstance(node, dict) and key in node
        in_list = isinstance(node, list) and isinstance(key, int) and key < len(node)
        if not (in_dict or in_list):
            return False
        node = node[key]
    return isinstance(node, (dict, list))


def text_of(doc: Any) -> str:
    """JSON as a careless writer would produce it: NaN and Infinity as bare words, the huge integer spliced in."""
    return json.dumps(doc, allow_nan=True, indent=1).replace(f'"{HUGE_MARK}"', HUGE_TEXT)


def strict_json(text: str) -> Any:
    """Parse refusing NaN and Infinity, which are not JSON (what every output of ours must be)."""

    def refuse(word: str) -> Any:
        raise ValueError(f"{word} is not JSON")

    return json.loads(text, parse_constant=refuse)


Edit = Callable[[dict[str, Any]], None]


def _renumber(items: list[dict[str, Any]]) -> None:
    for i, item in enumerate(items):
        item["index"] = i


def _reverse_ops(d: dict[str, Any]) -> None:
    d["ops"].reverse()
    _renumber(d["ops"])


def _swap_ops(d: dict[str, Any]) -> None:
    d["ops"][1], d["ops"][2] = d["ops"][2], d["ops"][1]
    _renumber(d["ops"])


def _drop_op(d: dict[str, Any]) -> None:
    del d["ops"][-1]
    del d["cuts"][-1]


def _swap_times(d: dict[str, Any]) -> None:
    a, b = d["ops"][1], d["ops"][-1]
    a["tpu_us"], b["tpu_us"] = b["tpu_us"] + 1, a["tpu_us"]


def _set(path: Path_, value: Any) -> Edit:
    return lambda d: put(d, path, value)


PROFILE_EDITS: dict[str, Edit] = {
    "ops reversed and renumbered": _reverse_ops,
    "two ops swapped and renumbered": _swap_ops,
    "duplicate op index": _set(("ops", 1, "index"), 0),
    "last op and cut dropped": _drop_op,
    "cuts empty": _set(("cuts",), []),
    "a cut's bytes edited": lambda d: put(d, ("cuts", 0, "bytes"), d["cuts"][0]["bytes"] + 1),
    "a tensor's bytes edited": lambda d: put(d, ("tensors", 1, "bytes"), d["tensors"][1]["bytes"] * 2),
    "op times swapped": _swap_times,
    "an op's MACs edited": lambda d: put(d, ("ops", 1, "macs"), d["ops"][1]["macs"] + 1),
    "an op's parameters edited": lambda d: put(d, ("ops", 1, "param_bytes"), d["ops"][1]["param_bytes"] // 2),
    "an op moved to the host": _set(("ops", 1, "edgetpu"), False),
    "a model output renamed": lambda d: put(d, ("outputs", 0, "name"), "renamed"),
}
PRICE_EDITS = {"op times swapped"}  # prices, not facts: priced again on reading, they change nothing


def _shift_cut(d: dict[str, Any]) -> None:
    d["cuts"] = [c + 1 for c in d["cuts"]]


def _shift_stage(d: dict[str, Any]) -> None:
    d["stages"][0]["last_op"] += 1
    d["stages"][0]["n_ops"] += 1
    d["stages"][1]["first_op"] += 1
    d["stages"][1]["n_ops"] -= 1


def _shift_both(d: dict[str, Any]) -> None:
    """Cuts and stages agree again; the predicted numbers no longer belong to these stages."""
    _shift_cut(d)
    _shift_stage(d)


def _swap_stages(d: dict[str, Any]) -> None:
    d["stages"].reverse()
    _renumber(d["stages"])


PLAN_EDITS: dict[str, Edit] = {
    "cuts edited, stages not": _shift_cut,
    "stages edited, cuts not": _shift_stage,
    "stages and cuts edited together": _shift_both,
    "stages swapped": _swap_stages,
    "stages empty": _set(("stages",), []),
    "n_ops edited": lambda d: put(d, ("n_ops",), d["n_ops"] + 1),
    "tpus edited": lambda d: put(d, ("tpus",), d["tpus"] + 1),
    "a device dropped": lambda d: d["devices"].pop(),
    "a stage's device renamed": _set(("stages", 0, "device"), "edgetpu-pci"),
    "a stage's time edited": lambda d: put(d, ("stages", 0, "predicted_us"), d["stages"][0]["predicted_us"] // 2),
    "the period edited": lambda d: put(d, ("predicted_period_us",), d["predicted_period_us"] // 2),
    "the objective edited": lambda d: put(d, ("solver", "objective"), d["solver"]["objective"] + 1),
    "on chip claimed": _set(("fits_on_chip",), False),
}

COPY_EDITS: dict[str, Edit] = {
    "a stage's copies edited": lambda d: put(d, ("stages", 0, "copies"), d["stages"][0]["copies"] + 1),
    "copies moved to another stage": lambda d: (
        put(d, ("stages", 0, "copies"), d["stages"][-1]["copies"]),
        put(d, ("stages", -1, "copies"), d["stages"][0]["copies"] + 1),
    ),
    "time between results edited": lambda d: put(
        d, ("stages", 0, "predicted_interval_us"), max(d["stages"][0]["predicted_interval_us"] - 1, 0)
    ),
}


def _swap_segments(d: dict[str, Any]) -> None:
    d["segments"].reverse()
    _renumber(d["segments"])


MANIFEST_EDITS: dict[str, Edit] = {
    "segments swapped": _swap_segments,
    "cuts edited": lambda d: put(d, ("cuts",), [d["cuts"][0] + 1]),
    "a segment's first op edited": lambda d: put(d, ("segments", 1, "first_op"), d["segments"][1]["first_op"] + 1),
    "a segment input renamed": lambda d: put(d, ("segments", 1, "inputs", 0, "name"), "nothing-writes-this"),
    "a model output renamed": lambda d: put(d, ("model", "outputs", 0), "renamed"),
    "a file outside": _set(("segments", 0, "file"), "../../etc/passwd"),
    "a file's sha256 edited": _set(("segments", 0, "sha256"), "0" * 64),
    "op count edited": lambda d: put(d, ("model", "num_ops"), d["model"]["num_ops"] + 1),
}

REPORT_EDITS: dict[str, Edit] = {
    "stage ranges edited": lambda d: put(d, ("stages", 0, "last_op"), d["stages"][0]["last_op"] + 1),
    "for another plan": _set(("plan_sha256",), "0" * 64),
    "a stage dropped": lambda d: d["stages"].pop(),
    "for another model": _set(("model_sha256",), "1" * 64),
}
