"""Segment files on disk: `write_split` from plans and cuts, the manifest and its checks (paths confined
to the split directory, sha256 of every file), what a failed or repeated split leaves behind, `--compile`,
and `plan split` from the command line. The bytes of the segments themselves: tests/runtime/test_split.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.runtime.test_split import LSTM, MOBILENET_V2, _reference, _run, _split
from tests.shared_data import MODELS, needs
from tpuplan.planner.plan_build import evaluate
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.tflite.reader import LoadedModel, load_model
from tpuplan.runtime.split.cut import Segment
from tpuplan.runtime.split.manifest import SegmentManifest, load_manifest

pytestmark = needs(MODELS)


def _plan_file(tmp_path: Path, model: Path, plan_cuts: list[int], **changes: Any) -> Path:
    plan = evaluate(build_profile(load_model(model), preset("edgetpu-usb")), None, plan_cuts)
    doc = plan.model_dump(mode="json")
    for key, value in changes.items():
        if key == "sha256":
            doc["model"]["sha256"] = value
        else:
            doc[key] = value
    path = tmp_path / f"plan{len(list(tmp_path.glob('plan*')))}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")  # as `plan solve -o` writes it
    return path


def test_write_split_from_plan_and_manifest_round_trip(tmp_path: Path) -> None:
    plan = _plan_file(tmp_path, MOBILENET_V2, [20, 40])
    out = tmp_path / "segs"
    manifest = _split(MOBILENET_V2, plan, out)
    assert manifest.cuts == [20, 40] and manifest.plan_sha256 == hashlib.sha256(plan.read_bytes()).hexdigest()
    names = sorted(p.name for p in out.iterdir())
    expected = [f"mobilenet_v2_1.0_224_quant_segment_{i}_of_3.tflite" for i in range(3)]
    assert names == sorted([*expected, "manifest.json"])
    assert load_manifest(out) == manifest
    assert SegmentManifest.model_validate_json(manifest.model_dump_json()) == manifest
    loaded = load_model(MOBILENET_V2)
    feeds, expected_out = _reference(loaded)
    available = dict(feeds)
    for seg in manifest.segments:
        data = (out / seg.file).read_bytes()
        available.update(_run(data, {t.name: available[t.name] for t in seg.inputs}))
    assert all(np.array_equal(available[n], v) for n, v in expected_out.items())


def test_bad_plans_are_refused(tmp_path: Path) -> None:
    other = load_model(LSTM).sha256
    wrong = _plan_file(tmp_path, MOBILENET_V2, [20, 40], sha256=other)
    with pytest.raises(TpuplanError, match=other):
        _split(MOBILENET_V2, wrong, tmp_path / "a")
    backwards = _plan_file(tmp_path, MOBILENET_V2, [20, 40], cuts=[40, 20])
    with pytest.raises(TpuplanError):
        _split(MOBILENET_V2, backwards, tmp_path / "b")
    for cuts in ([5, 5], [9, 3], [-1], [10_000]):
        with pytest.raises(TpuplanError):
            _split(MOBILENET_V2, cuts, tmp_path / "c")
    not_json = tmp_path / "junk.json"
    not_json.write_text("{")
    with pytest.raises(TpuplanError):
        _split(MOBILENET_V2, not_json, tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("plan")) == ["junk.json"]


def _tampered(tmp_path: Path, file_name: str, sha: str | None = None) -> Path:
    out = tmp_path / "segs"
    if not out.exists():
        _split(LSTM, [2], out)
    doc = json.loads((out / "manifest.json").read_text())
    doc["segments"][0]["file"] = file_name
    if sha is not None:
        doc["segments"][0]["sha256"] = sha
    (out / "manifest.json").write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "", "..\\x"])
def test_manifest_cannot_point_outside(tmp_path: Path, name: str) -> None:
    with pytest.raises(TpuplanError):
        load_manifest(_tampered(tmp_path, name))


def test_manifest_symlink_escape_and_changed_file(tmp_path: Path) -> None:
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"secret")
    out = _tampered(tmp_path, "link.tflite", hashlib.sha256(b"secret").hexdigest())
    os.symlink(outside, out / "link.tflite")
    with pytest.raises(TpuplanError, match="outside"):
        load_manifest(out)
    out2 = tmp_path / "fresh"
    _split(LSTM, [2], out2)
    seg = out2 / "keras_lstm_mnist_ptq_segment_1_of_2.tflite"
    seg.write_bytes(seg.read_bytes()[:-1] + b"\x01")
    with pytest.raises(TpuplanError, match="sha256"):
        load_manifest(out2)


def test_failed_split_leaves_no_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tpuplan.runtime.split.write as segments

    calls = {"n": 0}
    real = segments._specs

    def flaky(loaded: LoadedModel, seg: Segment) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise TpuplanError("simulated failure on the second segment")
        return real(loaded, seg)

    monkeypatch.setattr(segments, "_specs", flaky)
    with pytest.raises(TpuplanError, match="simulated"):
        _split(LSTM, [1, 3], tmp_path / "new" / "out")
    assert list(tmp_path.iterdir()) == []
    existing = tmp_path / "old"
    monkeypatch.setattr(segments, "_specs", real)
    before = _split(LSTM, [2], existing)
    monkeypatch.setattr(segments, "_specs", flaky)
    (existing / "keep.txt").write_text("x")
    calls["n"] = 0
    with pytest.raises(TpuplanError, match="simulated"):
        _split(LSTM, [1, 3], existing, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["old"] and (existing / "keep.txt").read_text() == "x"
    assert load_manifest(existing) == before


def test_existing_directory_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _split(LSTM, [2], out)  # empty: fine
    with pytest.raises(TpuplanError, match="force"):
        _split(LSTM, [1], out)
    manifest = _split(LSTM, [1], out, force=True)
    assert load_manifest(out).cuts == [1] == manifest.cuts
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_compile_without_compiler_gives_the_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TpuplanError, match="edgetpu-compiler"):
        _split(LSTM, [2], tmp_path / "out", compile=True)
    assert not (tmp_path / "out").exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tpuplan", *args], capture_output=True, text=True, timeout=120)


def test_cli_split(tmp_path: Path) -> None:
    plan = _plan_file(tmp_path, LSTM, [2])
    done = _cli("split", str(LSTM), str(plan), "-o", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    assert "keras_lstm_mnist_ptq_segment_1_of_2.tflite" in done.stdout
    done = _cli("split", str(LSTM), "--cuts", "1,3", "-o", str(tmp_path / "b"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cuts"] == [1, 3]
    assert _cli("split", str(LSTM), str(plan), "--cuts", "1", "-o", str(tmp_path / "c")).returncode == 2
    assert _cli("split", str(LSTM), "-o", str(tmp_path / "c")).returncode == 2
    done = _cli("split", str(MOBILENET_V2), str(plan), "-o", str(tmp_path / "c"))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


STAND_IN_COMPILER = """#!/bin/sh
# Stand-in for edgetpu_compiler (plumbing only, measures nothing): copy the model, print a fixed report.
base=$(basename "$4" .tflite)
cp "$4" "$3/${base}_edgetpu.tflite"
cat <<REPORT
Edge TPU Compiler version 16.0.384591198
Input model: $4
Input size: 0.01MiB
Output model: $3/${base}_edgetpu.tflite
Output size: 0.01MiB
On-chip memory used for caching model parameters: 9.00MiB
On-chip memory remaining for caching model parameters: 0.00B
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 3
Operation log: $3/${base}_edgetpu.log

Operator                       Count      Status

FULLY_CONNECTED                3          Mapped to Edge TPU
REPORT
"""


def test_compile_records_reports_and_warns_on_mispredicted_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "edgetpu_compiler"
    script.write_text(STAND_IN_COMPILER)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    plan = _plan_file(tmp_path, LSTM, [2])
    out = tmp_path / "out"
    manifest = _split(LSTM, plan, out, compile=True)
    for seg in manifest.segments:
        assert seg.compiled is not None
        assert seg.compiled.file == seg.file.replace(".tflite", "_edgetpu.tflite")
        assert seg.compiled.report.onchip_bytes == 9 * 2**20
        assert seg.compiled.report.input_model == seg.file  # no staging-directory paths leak out
        assert any("on-chip" in w and "0.3 MiB" in w for w in seg.compiled.warnings)
    assert load_manifest(out) == manifest
