"""Static profiles of the real models: parameter totals, MACs, crossing sets, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shared_data import MODELS, needs
from tests.shared_data import cpu_model_paths as cpu_models
from tests.shared_data import shared_manifest as manifest
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import PROFILE_VERSION, Profile
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.tflite.graph import analyse
from tpuplan.profiles.tflite.reader import load_model

CPU_MODELS = cpu_models()


@needs(MODELS)
@pytest.mark.parametrize("path", CPU_MODELS, ids=[p.name for p in CPU_MODELS])
def test_param_bytes_equal_manifest_weight_bytes(path: Path) -> None:
    entry = next(e for e in manifest() if MODELS / str(e["path"]) == path)
    prof = build_profile(load_model(path), preset("edgetpu-usb"))
    assert prof.param_bytes == entry["weight_bytes"]
    assert len(prof.ops) == entry["num_operators"]
    assert len(prof.cuts) == len(prof.ops) - 1


def _brute_crossing(path: Path) -> list[set[str]]:
    """Crossing sets recomputed the slow, obvious way from the op list of the profile."""
    prof = build_profile(load_model(path), preset("edgetpu-usb"))
    model_inputs = {t.name for t in prof.inputs}
    produced_at: dict[str, int] = {name: -1 for name in model_inputs}
    for op in prof.ops:
        for name in op.outputs:
            produced_at[name] = op.index
    out = []
    for cut in range(len(prof.ops) - 1):
        live = set()
        for op in prof.ops[cut + 1 :]:
            for name in op.inputs:
                if produced_at.get(name, 10**9) <= cut:
                    live.add(name)
        out.append(live)
    return out


@needs(MODELS)
@pytest.mark.parametrize("path", CPU_MODELS, ids=[p.name for p in CPU_MODELS])
def test_crossing_sets_match_brute_force(path: Path) -> None:
    prof = build_profile(load_model(path), preset("edgetpu-usb"))
    brute = _brute_crossing(path)
    for cut, expected in zip(prof.cuts, brute, strict=True):
        assert set(cut.tensors) == expected, f"cut {cut.index}"


def test_residual_and_skip_connections_cross_cuts(shared_models: Path) -> None:
    # MobileNet v2 has residual ADDs: after the first block output, two tensors must be live at once.
    prof = build_profile(load_model(shared_models / "mobilenet_v2_1.0_224_quant.tflite"), preset("edgetpu-usb"))
    add_ops = [op for op in prof.ops if op.op_type == "ADD"]
    assert add_ops
    first_add = add_ops[0]
    assert max(len(prof.cuts[i].tensors) for i in range(first_add.index - 3, first_add.index)) >= 2


def test_lstm_state_never_crosses_a_cut(shared_models: Path) -> None:
    path = shared_models / "keras_lstm_mnist_ptq.tflite"
    graph = analyse(load_model(path))
    lstm = next(op for op in graph.ops if op.op_type.endswith("LSTM"))
    owned = set(lstm.own)
    assert owned, "the LSTM owns its state and intermediates"
    for live in graph.crossing:
        assert not owned & set(live)


def test_traffic_model_lstm_state_skips_many_ops(shared_models: Path) -> None:
    traffic = load_model(shared_models / "automl_video_ondevice/traffic_model.tflite")
    prof = build_profile(traffic, preset("edgetpu-usb"))
    state_inputs = [t.name for t in prof.inputs if "lstm" in t.name]
    assert len(state_inputs) == 2
    # the state is split first; its pieces are read by the LSTM cell deep in the graph
    split = next(op for op in prof.ops if set(op.inputs) & set(state_inputs))
    piece = split.outputs[0]
    last_reader = max(op.index for op in prof.ops if piece in op.inputs)
    assert last_reader - split.index > 20
    for cut in prof.cuts[split.index : last_reader]:
        assert piece in cut.tensors
    assert piece not in prof.cuts[last_reader].tensors


def test_macs_of_known_layers(shared_models: Path) -> None:
    prof = build_profile(load_model(shared_models / "mobilenet_v1_0.25_128_quant.tflite"), preset("edgetpu-usb"))
    first = prof.ops[0]
    assert first.op_type == "CONV_2D"
    # 3x3 conv, stride 2, 3 -> 8 channels on 128x128: 64*64*8 outputs * 27 MACs each
    assert first.macs == 64 * 64 * 8 * 27
    assert first.param_bytes == 8 * 3 * 3 * 3 + 8 * 4


def test_profile_json_round_trip_is_byte_identical(shared_models: Path, tmp_path: Path) -> None:
    from tpuplan.profiles.docio import dump_json
    from tpuplan.profiles.model import load_profile

    path = shared_models / "mobilenet_v1_0.25_128_quant.tflite"
    a = dump_json(build_profile(load_model(path), preset("edgetpu-usb")))
    b = dump_json(build_profile(load_model(path), preset("edgetpu-usb")))
    assert a == b
    out = tmp_path / "p.json"
    out.write_text(a)
    assert dump_json(load_profile(out)) == a


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "too short"),
        (b"\x00" * 64, "no TFL3"),
        (b'{"kind": "tpuplan.profile"}' + b" " * 40, "no TFL3"),
    ],
)
def test_bad_model_bytes(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(TpuplanError, match=needle):
        load_model(path)


def test_truncated_model_is_rejected(shared_models: Path, tmp_path: Path) -> None:
    data = (shared_models / "mobilenet_v1_0.25_128_quant.tflite").read_bytes()
    path = tmp_path / "cut.tflite"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(TpuplanError, match=r"cut\.tflite"):
        build_profile(load_model(path), preset("edgetpu-usb"))


def test_unknown_custom_op_is_a_host_op_and_compiled_model_rejected(shared_models: Path) -> None:
    fake = load_model(shared_models / "invalid_models/model_invoking_error.tflite")
    prof = build_profile(fake, preset("edgetpu-usb"))
    (op,) = prof.ops
    assert op.op_type == "fake-op-double" and op.op_class == "custom" and not op.edgetpu
    assert "custom op" in op.edgetpu_reason and op.host_us > 0
    assert len({t.name for t in prof.tensors}) == len(prof.tensors) == 2  # unnamed tensors get distinct keys
    with pytest.raises(TpuplanError, match="already compiled"):
        build_profile(load_model(shared_models / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"), preset("edgetpu-usb"))


def _plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tpuplan", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("content", [b"\x13\x37" * 500, b'{"a": 1}', b""])
def test_cli_bad_input_one_line_exit_1_no_output(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(content)
    out = tmp_path / "out.json"
    res = _plan("profile", str(bad), "-o", str(out))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "bad.tflite" in res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_cli_missing_file_and_future_profile(tmp_path: Path, shared_models: Path) -> None:
    res = _plan("inspect", str(tmp_path / "nope.tflite"))
    assert res.returncode == 1 and "no such file" in res.stderr
    prof = build_profile(load_model(shared_models / "keras_lstm_mnist_ptq.tflite"), preset("edgetpu-usb"))
    doc = json.loads(prof.model_dump_json())
    doc["schema_version"] = 99
    future = tmp_path / "future.json"
    future.write_text(json.dumps(doc))
    res = _plan("inspect", str(future))
    assert res.returncode == 1 and "newer" in res.stderr and res.stderr.count("\n") == 1
    doc["schema_version"] = 0
    future.write_text(json.dumps(doc))
    res = _plan("inspect", str(future))
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert f"schema_version 0 is older than {PROFILE_VERSION} and cannot be migrated" in res.stderr
    doc["schema_version"] = PROFILE_VERSION
    doc["ops"] = "not a list"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(doc))
    res = _plan("inspect", str(wrong))
    assert res.returncode == 1 and "ops" in res.stderr


def test_cli_profile_writes_valid_json(tmp_path: Path, shared_models: Path) -> None:
    out = tmp_path / "p.json"
    res = _plan("profile", str(shared_models / "keras_lstm_mnist_ptq.tflite"), "-o", str(out))
    assert res.returncode == 0, res.stderr
    prof = Profile.model_validate_json(out.read_text())
    assert prof.param_bytes == 9808
    res = _plan("inspect", str(shared_models / "keras_lstm_mnist_ptq.tflite"), "--json")
    assert json.loads(res.stdout)["kind"] == "tpuplan.profile"


def test_cli_does_not_overwrite_without_force(tmp_path: Path, shared_models: Path) -> None:
    out = tmp_path / "p.json"
    out.write_text("keep me")
    model = str(shared_models / "keras_lstm_mnist_ptq.tflite")
    res = _plan("profile", model, "-o", str(out))
    assert res.returncode == 1 and "--force" in res.stderr
    assert out.read_text() == "keep me"
    res = _plan("profile", model, "-o", str(out), "--force")
    assert res.returncode == 0
    assert json.loads(out.read_text())["kind"] == "tpuplan.profile"
