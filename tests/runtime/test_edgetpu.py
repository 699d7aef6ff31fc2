"""The Edge TPU boundary without a TPU: device strings, discovery, delegate errors, CPU interpreter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.shared_data import MODELS, needs
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.backends import edgetpu
from tpuplan.runtime.backends.edgetpu import (
    device_strings,
    edgetpu_library_name,
    list_edge_tpus,
    load_edgetpu_delegate,
    parse_device,
    require_tpus,
)
from tpuplan.runtime.backends.registry import make_interpreter

CPU_MODEL = MODELS / "mobilenet_v1_0.25_128_quant.tflite"
TPU_MODEL = MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"


def test_library_names() -> None:
    assert edgetpu_library_name("Linux") == "libedgetpu.so.1"
    assert edgetpu_library_name("Darwin") == "libedgetpu.1.dylib"
    assert edgetpu_library_name("Windows") == "edgetpu.dll"
    assert edgetpu_library_name() in {"libedgetpu.so.1", "libedgetpu.1.dylib", "edgetpu.dll"}
    with pytest.raises(TpuplanError, match="'Plan9'"):
        edgetpu_library_name("Plan9")


@pytest.mark.parametrize("spec", ["", ":0", ":3", "usb", "usb:0", "usb:12", "pci", "pci:1"])
def test_valid_device_strings(spec: str) -> None:
    assert parse_device(spec) == spec


@pytest.mark.parametrize("spec", ["cpu", "usb:", "usb:-1", "USB:0", " usb", "pci:a", ":", "0", "usb:0:1", "tpu:0"])
def test_bad_device_strings(spec: str) -> None:
    with pytest.raises(TpuplanError) as info:
        parse_device(spec)
    assert repr(spec) in str(info.value)


@pytest.mark.skipif(any(Path("/dev").glob("apex_*")), reason="this host has a PCIe Edge TPU")
def test_no_devices_here() -> None:
    # The build machine has no Edge TPU: listing must return [] quietly, not raise.
    assert list_edge_tpus() == []


def test_empty_root_lists_nothing(tmp_path: Path) -> None:
    assert list_edge_tpus(root=tmp_path) == []


def _usb(root: Path, name: str, vendor: str, product: str) -> Path:
    dev = root / "sys" / "bus" / "usb" / "devices" / name
    dev.mkdir(parents=True)
    (dev / "idVendor").write_text(vendor + "\n")
    (dev / "idProduct").write_text(product + "\n")
    return dev


def test_fake_sys_tree(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    for name in ("apex_10", "apex_2", "null"):
        (tmp_path / "dev" / name).touch()
    before_fw = _usb(tmp_path, "2-1", "1a6e", "089a")
    after_fw = _usb(tmp_path, "4-2", "18d1", "9302")
    _usb(tmp_path, "1-1", "046d", "c52b")  # a mouse
    _usb(tmp_path, "3-1", "18d1", "4ee7")  # a Google phone, not a TPU
    (tmp_path / "sys" / "bus" / "usb" / "devices" / "2-1:1.0").mkdir()  # interface entry: no IDs
    found = list_edge_tpus(root=tmp_path)
    assert found == [
        {"type": "pci", "path": str(tmp_path / "dev" / "apex_2")},
        {"type": "pci", "path": str(tmp_path / "dev" / "apex_10")},
        {"type": "usb", "path": str(before_fw)},
        {"type": "usb", "path": str(after_fw)},
    ]
    assert device_strings(found) == ["pci:0", "pci:1", "usb:0", "usb:1"]


def test_require_tpus(monkeypatch: pytest.MonkeyPatch) -> None:
    three = [
        {"type": "usb", "path": "a"},
        {"type": "usb", "path": "b"},
        {"type": "pci", "path": "/dev/apex_0"},
    ]
    monkeypatch.setattr(edgetpu, "list_edge_tpus", lambda: three)
    assert require_tpus(3) == ["usb:0", "usb:1", "pci:0"]
    assert require_tpus(2) == ["usb:0", "usb:1"]
    assert require_tpus(0) == []
    with pytest.raises(TpuplanError, match=r"^4 stages need 4 Edge TPUs but 3 are present: usb:0, usb:1, pci:0$"):
        require_tpus(4)


def test_require_tpus_none_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edgetpu, "list_edge_tpus", list)
    with pytest.raises(TpuplanError, match="2 stages need 2 Edge TPUs but 0 are present"):
        require_tpus(2)


def test_delegate_load_failure_is_tpuplan_error() -> None:
    if list_edge_tpus():
        pytest.skip("an Edge TPU is present; the failure path cannot be provoked with the real library")
    with pytest.raises(TpuplanError) as info:
        load_edgetpu_delegate("usb:0")
    msg = str(info.value)
    assert msg.startswith(f"cannot load the Edge TPU delegate {edgetpu_library_name()} for device 'usb:0': ")
    assert not isinstance(info.value, OSError)
    # Without libedgetpu (this machine) the hint is how to install it; with it, to check the device.
    assert msg.endswith("install libedgetpu1-std from Coral's apt repository") or "connected" in msg


def test_delegate_options_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, str]]] = []

    def fake_load(library: str, options: dict[str, str]) -> str:
        calls.append((library, options))
        return "delegate"

    monkeypatch.setattr(edgetpu, "_dlopen", lambda library: None)
    monkeypatch.setattr(edgetpu, "_load_delegate_fn", lambda: fake_load)
    assert load_edgetpu_delegate("pci:1", {"device": "usb", "performance": "max"}) == "delegate"
    assert load_edgetpu_delegate("") == "delegate"
    lib = edgetpu_library_name()
    assert calls == [(lib, {"device": "pci:1", "performance": "max"}), (lib, {})]

    def missing(library: str, options: dict[str, str]) -> Any:
        raise OSError(f"{library}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(edgetpu, "_load_delegate_fn", lambda: missing)
    with pytest.raises(TpuplanError, match=r"install libedgetpu1-std from Coral's apt repository$"):
        load_edgetpu_delegate("usb:0")

    def no_device(library: str, options: dict[str, str]) -> Any:
        raise ValueError("Failed to load delegate from libedgetpu.so.1\n")

    monkeypatch.setattr(edgetpu, "_load_delegate_fn", lambda: no_device)
    with pytest.raises(TpuplanError, match=r"'pci:0': Failed to load delegate .*connected"):
        load_edgetpu_delegate("pci:0")
    with pytest.raises(TpuplanError, match="bad Edge TPU device 'gpu'"):
        load_edgetpu_delegate("gpu")


@needs(CPU_MODEL)
def test_cpu_interpreter_runs_real_model() -> None:
    interp = make_interpreter(CPU_MODEL)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    assert tuple(inp["shape"]) == (1, 128, 128, 3)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=tuple(inp["shape"]), dtype=np.uint8)
    interp.set_tensor(inp["index"], image)
    interp.invoke()
    first = interp.get_tensor(out["index"]).copy()
    assert first.shape == (1, 1001)
    assert first.dtype == np.uint8
    assert 0 < int(first.sum()) <= 1001 * 255
    interp.invoke()
    assert np.array_equal(interp.get_tensor(out["index"]), first)  # one thread: deterministic


def test_interpreter_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(TpuplanError, match=r"absent\.tflite"):
        make_interpreter(tmp_path / "absent.tflite")
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(TpuplanError, match=r"junk\.tflite"):
        make_interpreter(junk)


@needs(CPU_MODEL)
def test_interpreter_on_missing_tpu_is_tpuplan_error() -> None:
    if list_edge_tpus():
        pytest.skip("an Edge TPU is present")
    with pytest.raises(TpuplanError, match="cannot load the Edge TPU delegate"):
        make_interpreter(CPU_MODEL, "usb:0")


@pytest.mark.edgetpu
@needs(TPU_MODEL)
def test_edgetpu_runs_compiled_model() -> None:
    devices = list_edge_tpus()
    if not devices:
        pytest.skip("no Edge TPU found (/dev/apex_*, Coral USB IDs, pycoral)")
    interp = make_interpreter(TPU_MODEL, device_strings(devices)[0])
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    interp.set_tensor(inp["index"], np.zeros(tuple(inp["shape"]), dtype=np.uint8))
    interp.invoke()
    assert interp.get_tensor(out["index"]).shape == (1, 1001)


def test_google_pycoral_enumeration_is_used_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    fake = types.ModuleType("pycoral.utils.edgetpu")
    fake.list_edge_tpus = lambda: [{"type": "usb", "path": "/sys/bus/usb/devices/2-1"}]  # type: ignore[attr-defined]
    for name in ("pycoral", "pycoral.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "pycoral.utils.edgetpu", fake)
    assert list_edge_tpus() == [{"type": "usb", "path": "/sys/bus/usb/devices/2-1"}]

    def broken() -> list[dict[str, str]]:
        raise RuntimeError("libedgetpu missing")

    fake.list_edge_tpus = broken  # type: ignore[attr-defined]
    monkeypatch.setattr(edgetpu, "_scan", lambda root: [{"type": "pci", "path": "/dev/apex_0"}])
    assert list_edge_tpus() == [{"type": "pci", "path": "/dev/apex_0"}]  # falls back to scanning
