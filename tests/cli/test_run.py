"""`plan run` with real inputs and outputs, its checks, its JSON, and what it no longer prints."""

from __future__ import annotations

import importlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tpuplan.runtime.run as run_module
from tests.cli_helpers import one_line_error, plan
from tests.shared_data import MODELS, require
from tpuplan.planner.costs import Goal
from tpuplan.planner.plan import plan_digest
from tpuplan.planner.plan_build import evaluate
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.docio import write_doc
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.pricing.device import preset
from tpuplan.profiles.synth import synth_conv, synth_fc
from tpuplan.profiles.tflite.reader import load_model, parse_model
from tpuplan.runtime.backends.nativelog import one_line, quiet_native_logs
from tpuplan.runtime.backends.registry import InterpreterStage
from tpuplan.runtime.progress import TerminalBar, cli_progress, ticker
from tpuplan.runtime.run import RunOptions, run_split
from tpuplan.runtime.split.manifest import load_split
from tpuplan.runtime.split.write import write_split
from tpuplan.runtime.tensors.inputs import InputSource, InputSpec, open_inputs

MOBILENET_V2 = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
SMALL = MODELS / "mobilenet_v1_0.25_128_quant.tflite"
BROKEN = MODELS / "invalid_models" / "model_invoking_error.tflite"


@pytest.fixture(scope="module")
def small_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require(SMALL)
    out = tmp_path_factory.mktemp("run") / "segs"
    write_split(load_model(SMALL), out, cuts=[10, 20])
    return out


def test_images_in_outputs_out_equal_the_unsplit_model(tmp_path: Path) -> None:
    """The done-when of issue 14: a directory of images through mobilenet_v2's segments, saved in order."""
    require(MOBILENET_V2)
    image = importlib.import_module("PIL.Image")
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(7)
    for i, (w, h) in enumerate([(320, 240), (224, 224), (97, 180)]):
        image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(frames / f"f{i}.{'jpg' if i else 'png'}")
    segs, out = tmp_path / "segs", tmp_path / "out.npz"
    write_split(load_model(MOBILENET_V2), segs, cuts=[20, 45])
    res = plan("run", segs, "--input", frames, "-o", out)
    assert res.returncode == 0, res.stderr
    assert "3 inputs" in res.stdout and f"to {out}" in res.stdout
    whole = InterpreterStage("whole", MOBILENET_V2.read_bytes())
    source = open_inputs(frames, [InputSpec.from_details(d) for d in whole.input_details()])
    saved = np.load(out)
    assert list(saved) == whole.output_names
    for i, feed in enumerate(source):
        for name, want in whole.run(feed).items():
            assert np.array_equal(saved[name][i], want), (i, name)
    assert saved[whole.output_names[0]].shape[0] == 3


def test_run_json_has_kind_and_the_schema_lists_it(small_split: Path) -> None:
    res = plan("run", small_split, "--inputs", "5", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["kind"], doc["schema_version"], doc["runner"], doc["inputs"]) == ("tpuplan.run", 1, "threads", 5)
    assert [s["items"] for s in doc["stages"]] == [5, 5, 5]
    schema = json.loads(plan("schema", "run").stdout)
    assert {"kind", "schema_version", "runner", "input_source"} <= set(schema["properties"])


def test_outputs_are_checked_before_the_run(small_split: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken.npz"
    taken.write_bytes(b"keep me")
    one_line_error(plan("run", small_split, "-o", taken), "already exists")
    assert taken.read_bytes() == b"keep me"
    one_line_error(plan("run", small_split, "-o", tmp_path / "out.json"), "name the file *.npz")
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, input=np.zeros((2, 1, 128, 128, 3), np.uint8))
    one_line_error(plan("run", small_split, "--input", feeds, "-o", feeds, "--force"), "is an input of this command")
    assert plan("run", small_split, "--input", feeds, "-o", taken, "--force").returncode == 0
    assert np.load(taken)["MobilenetV1/Predictions/Reshape_1"].shape[0] == 2


def test_bad_inputs_are_one_line_naming_the_file(small_split: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 64, 64, 3), np.uint8))
    one_line_error(plan("run", small_split, "--input", wrong), f"{wrong}: shape [2, 64, 64, 3] does not fit")
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    one_line_error(plan("run", small_split, "--input", frames), f"{frames / 'a.png'}: cannot read the image")
    right = tmp_path / "right.npy"
    np.save(right, np.zeros((2, 128, 128, 3), np.uint8))
    one_line_error(plan("run", small_split, "--input", right, "--inputs", "9"), f"{right}: holds 2 inputs, but 9")


def test_run_refuses_segments_split_from_another_plan(tmp_path: Path) -> None:
    require(SMALL)
    profile = build_profile(load_model(SMALL), preset("edgetpu-usb"))
    mine, other = evaluate(profile, None, [12]), evaluate(profile, None, [12], goal=Goal("latency"))
    assert mine.cuts == other.cuts and plan_digest(mine) != plan_digest(other)
    mine_path, other_path = tmp_path / "mine.json", tmp_path / "other.json"
    write_doc(mine_path, mine)
    write_doc(other_path, other)
    segs = tmp_path / "segs"
    manifest = write_split(load_model(SMALL), segs, plan=mine)
    assert manifest.plan_sha256 == plan_digest(mine)
    assert plan("run", segs, "--plan", mine_path, "--inputs", "2").returncode == 0
    one_line_error(
        plan("run", segs, "--plan", other_path, "--inputs", "2"),
        f"was split from plan sha256 {plan_digest(mine)[:12]}, not from this plan",
    )


def test_no_xnnpack_banner_and_interpreter_errors_in_one_line(
    small_split: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert plan("run", small_split, "--inputs", "2").returncode == 0
    assert "XNNPACK" not in capfd.readouterr().err
    require(BROKEN)
    with pytest.raises(TpuplanError) as info:
        InterpreterStage("broken", BROKEN.read_bytes(), where=str(BROKEN))
    text = str(info.value)
    assert "\n" not in text and "See instructions" not in text
    assert "fake-op-double" in text and "failed to prepare" in text


def test_thirty_thousand_inputs_stream_in_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """issue 13: `plan run --inputs 30000` built every input first (1.9 GiB at 20,000). Now an input is
    drawn only when the pipeline has room: never more than the queues hold ahead of the results."""
    data = synth_conv(1, layers=1, size=32, channels=3, kernel=1)  # a 12 KiB float input, little work
    segs = tmp_path / "segs"
    write_split(parse_model(data, tmp_path / "conv.tflite"), segs, cuts=[0])
    drawn, ahead = [0], [0]
    real_open = run_module.open_inputs

    def counted(*args: Any, **kwargs: Any) -> InputSource:
        source = real_open(*args, **kwargs)

        def items() -> Iterator[dict[str, Any]]:
            for item in source:
                drawn[0] += 1
                yield item

        return InputSource(source.count, source.description, items())

    def progress(label: str, done: int, total: int | None) -> None:
        ahead[0] = max(ahead[0], drawn[0] - done)

    monkeypatch.setattr(run_module, "open_inputs", counted)
    res = run_split(load_split(segs), options=RunOptions(inputs=30_000, queue_size=4), progress=progress)
    assert res.inputs == 30_000 and all(s.items == 30_000 for s in res.stages) and drawn[0] == 30_000
    assert ahead[0] <= 2 * (4 + 1) + 1  # two stages: their queues and one input each, one read ahead


def test_native_log_filter_keeps_real_lines(capfd: pytest.CaptureFixture[str]) -> None:
    with quiet_native_logs():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nWARNING: something real\n")
    assert capfd.readouterr().err == "WARNING: something real\n"
    with pytest.raises(RuntimeError) as info, quiet_native_logs():
        os.write(2, b"ERROR: tensor 3 is bad\n")
        raise RuntimeError("Invoke failed.\nSee instructions: https://example.org/x Node 3 failed.")
    assert one_line(info.value) == "Invoke failed.; Node 3 failed.; tensor 3 is bad"
    assert capfd.readouterr().err == ""  # folded into the error, not printed


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal_and_not_when_quiet() -> None:
    assert cli_progress(False, io.StringIO()) is None
    assert cli_progress(True, _Tty()) is None
    tty = _Tty()
    bar = cli_progress(False, tty)
    assert isinstance(bar, TerminalBar)
    tick = ticker(bar, "running", 4)
    for done in range(1, 5):
        tick(done)
    bar("next step", 1, None)
    bar.close()
    text = tty.getvalue()
    assert "running [" in text and "4/4" in text and text.count("\n") == 2 and "next step 1" in text
    ticker(None, "nothing", 3)(1)  # no callback: nothing happens


def test_split_reports_progress(tmp_path: Path) -> None:
    """Probing and writing are reported to a progress callback (the CLI draws it on a terminal only)."""
    model = parse_model(synth_fc(32, depth=3), tmp_path / "fc.tflite")
    seen: list[tuple[str, int, int | None]] = []
    write_split(
        model, tmp_path / "segs", cuts=[2, 4], progress=lambda label, done, total: seen.append((label, done, total))
    )
    assert seen == [
        ("probing segments", 0, 1),
        ("probing segments", 1, 1),
        ("writing segments", 1, 3),
        ("writing segments", 2, 3),
        ("writing segments", 3, 3),
    ]
