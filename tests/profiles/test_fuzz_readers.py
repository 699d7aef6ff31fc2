"""Hostile inputs for every reader: the project's error with a message, or a valid result, nothing else.

Each reader gets 10,000 generated inputs from a seeded generator (a failure names its case number, and
the same case comes back on the next run): truncated, bit-flipped and spliced copies of real models,
huge/negative/zero sizes and offsets, random bytes; for JSON documents, random values of every JSON
type at random places, truncation, deep nesting, unknown and future versions.
"""

from __future__ import annotations

import contextlib
import functools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.shared_data import MODELS, require
from tpuplan.planner.plan import PLAN_KIND, Plan
from tpuplan.profiles.build import build_profile, profile_from_graph
from tpuplan.profiles.docio import parse_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import PROFILE_KIND, Profile
from tpuplan.profiles.pricing.device import DEVICE_KIND, DeviceSpec, preset
from tpuplan.profiles.pricing.host import host_preset
from tpuplan.profiles.tflite.graph import analyse
from tpuplan.profiles.tflite.reader import load_model, parse_model
from tpuplan.runtime.backends.probe import probe_models

CASES = 10_000
SMALL_MODELS = [
    "keras_lstm_mnist_ptq.tflite",
    "tools/split_concat.tflite",
    "tools/mobilenet_quant_v1_224_head_layers.tflite",
]


def _seeds() -> list[bytes]:
    paths = [MODELS / name for name in SMALL_MODELS]
    require(*paths)
    return [p.read_bytes() for p in paths]


def mutate_bytes(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    kind = rng.choice(["flip", "flip", "truncate", "splice", "int32", "random"])
    if kind == "truncate":
        return bytes(data[: rng.randrange(len(data) + 1)])
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == "int32":  # huge, negative or zero sizes, counts and offsets
        pos = rng.randrange(len(data) - 4) & ~3
        value = rng.choice([0, 1, -1, 2**31 - 1, -(2**31), 2**24, len(data), len(data) + 4, rng.getrandbits(31)])
        data[pos : pos + 4] = int(value).to_bytes(4, "little", signed=True)
        return bytes(data)
    if kind == "random":
        n = rng.randrange(300)
        head = rng.randbytes(4) + b"TFL3" if rng.random() < 0.7 else b""
        return head + rng.randbytes(n)
    pos = rng.randrange(len(data) + 1)
    return bytes(data[:pos]) + rng.randbytes(rng.randrange(65)) + bytes(data[pos:])


def test_tflite_reader_survives_10000_hostile_files() -> None:
    seeds = _seeds()
    rng = random.Random(20261123)
    outcomes = {"error": 0, "valid": 0}
    accepted: list[tuple[str, bytes]] = []
    for case in range(CASES):
        data = mutate_bytes(rng, rng.choice(seeds))
        try:
            loaded = parse_model(data, Path("fuzz.tflite"))
            profile_from_graph(analyse(loaded), preset("edgetpu-usb"), host_preset("tpuplan"))
            outcomes["valid"] += 1
            accepted.append((f"case {case}", data))
        except TpuplanError as exc:
            assert "fuzz.tflite" in str(exc), f"case {case}: {exc}"
            outcomes["error"] += 1
        except Exception as exc:  # pragma: no cover - the failure this test exists to find
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}")
    assert outcomes["error"] > CASES // 2 and outcomes["valid"] > 0
    # what the reader accepts goes to the interpreter only through the probe: run every one there
    refused = _probe_all(accepted)
    print(f"tflite fuzz: {CASES} files, {len(accepted)} accepted, {len(refused)} refused by the probe")
    assert len(refused) < len(accepted) // 100


def _probe_all(models: list[tuple[str, bytes]]) -> list[str]:
    """Probe every model, going on after one crashes the child; the labels of those refused."""
    refused: list[str] = []
    rest = models
    while rest:
        try:
            probe_models(rest)
            break
        except TpuplanError as exc:
            label, _, why = str(exc).partition(": ")
            assert why.startswith(("the TFLite interpreter crashed", "the TFLite interpreter did not finish")), exc
            refused.append(label)
            rest = rest[[name for name, _ in rest].index(label) + 1 :]
    return refused


# --- JSON documents -------------------------------------------------------------------------------


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 2 else 7)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64, rng.randrange(-1000, 1000)])
    if pick == 3:
        return rng.choice([0.5, -1e308, 1e308, float("inf"), float("nan"), -0.0])
    if pick == 4:
        return rng.choice(["", "x", "tpuplan.plan", "a" * 300, "\u0000", "../../etc/passwd"])
    if pick == 5:
        return rng.choice([[], {}])
    if pick == 6:
        return "0" * 64
    if pick == 7:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(["a", "kind", "schema_version", "name"]): _random_json(rng, depth + 1)}


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    doc[path[0]] = _set(doc[path[0]], path[1:], value)
    return doc


def mutate_doc(rng: random.Random, base_text: str, paths: list[tuple[Any, ...]]) -> bytes:
    doc = json.loads(base_text)
    kind = rng.random()
    if kind < 0.08:
        doc["schema_version"] = rng.choice([0, 1, 2, 3, 99, -1, "1", 1.5, None])
    elif kind < 0.12:
        return b"[" * rng.randrange(1, 100_000)
    else:
        for _ in range(rng.randint(1, 3)):
            with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier mutation moved the path
                doc = _set(doc, rng.choice(paths), _random_json(rng))
    text = json.dumps(doc, allow_nan=True).encode()
    if rng.random() < 0.1:
        text = text[: rng.randrange(len(text) + 1)]
    return text


def _fuzz_loader(base: str, model: type[Any], kind: str, seed: int) -> None:
    rng = random.Random(seed)
    version = json.loads(base)["schema_version"]
    paths = _paths(json.loads(base))
    outcomes = {"error": 0, "valid": 0}
    for case in range(CASES):
        raw = mutate_doc(rng, base, paths)
        try:
            doc = parse_doc(raw, model, kind=kind, version=version, source="fuzz.json")
            assert isinstance(doc, model)
            outcomes["valid"] += 1
        except TpuplanError as exc:
            assert str(exc).startswith("fuzz.json: "), f"case {case}: {exc}"
            assert "\n" not in str(exc), f"case {case}: error message spans lines"
            outcomes["error"] += 1
        except Exception as exc:  # pragma: no cover
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}")
    assert outcomes["error"] > 0 and outcomes["valid"] > 0, outcomes


@functools.cache
def _profile_json() -> str:
    _seeds()
    return build_profile(load_model(MODELS / "keras_lstm_mnist_ptq.tflite"), preset("edgetpu-usb")).model_dump_json()


@functools.cache
def _plan_json() -> str:
    from tpuplan.planner.solve import solve

    return solve(Profile.model_validate_json(_profile_json()), 2).model_dump_json()


def test_profile_loader_survives_10000_hostile_documents() -> None:
    _fuzz_loader(_profile_json(), Profile, PROFILE_KIND, 1)


def test_device_loader_survives_10000_hostile_documents() -> None:
    _fuzz_loader(preset("edgetpu-usb").model_dump_json(), DeviceSpec, DEVICE_KIND, 2)


def test_plan_loader_survives_10000_hostile_documents() -> None:
    _fuzz_loader(_plan_json(), Plan, PLAN_KIND, 3)


def test_manifest_loader_survives_10000_hostile_documents(tmp_path: Path) -> None:
    from tpuplan.runtime.split.manifest import MANIFEST_KIND, MANIFEST_NAME, SegmentManifest
    from tpuplan.runtime.split.write import write_split

    _seeds()
    write_split(load_model(MODELS / "keras_lstm_mnist_ptq.tflite"), tmp_path / "seg", cuts=[1, 3])
    _fuzz_loader((tmp_path / "seg" / MANIFEST_NAME).read_text(), SegmentManifest, MANIFEST_KIND, 4)


def test_verify_report_loader_survives_10000_hostile_documents(tmp_path: Path) -> None:
    from tpuplan.planner.plan import load_plan
    from tpuplan.profiles.docio import write_doc
    from tpuplan.runtime.verify.check import REPORT_KIND, VerifyReport, verify

    plan_path = tmp_path / "plan.json"
    plan_path.write_text(_plan_json())
    report = verify(load_plan(plan_path), load_model(MODELS / "keras_lstm_mnist_ptq.tflite"), inputs=2, repeats=2)
    write_doc(tmp_path / "r.json", report)
    _fuzz_loader((tmp_path / "r.json").read_text(), VerifyReport, REPORT_KIND, 5)
