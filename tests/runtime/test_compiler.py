"""Parser of real edgetpu_compiler reports, and compile_segment's plumbing around a stand-in compiler."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.shared_data import COMPILER_LOGS, needs
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.split.compiler import (
    COMPILER_INSTALL_HINT,
    CompilerReport,
    compile_segment,
    find_compiler,
    parse_compiler_args,
    parse_compiler_report,
    parse_size,
)

LOGS = COMPILER_LOGS
MiB = 1024 * 1024
KiB = 1024

needs_logs = needs(LOGS)


def report(name: str) -> CompilerReport:
    return parse_compiler_report((LOGS / name).read_text(encoding="utf-8"))


def test_parse_size_units() -> None:
    assert parse_size("7.04MiB") == round(7.04 * MiB)
    assert parse_size("1.25KiB") == 1280
    assert parse_size("0.00B") == 0
    assert parse_size("12B") == 12
    assert parse_size("1.50GiB") == 3 * 512 * MiB
    with pytest.raises(TpuplanError, match=r"'7\.04MB'"):
        parse_size("7.04MB")


@needs_logs
def test_facenet_v15() -> None:
    r = report("facenet_v15.txt")
    assert r.compiler_version == "15.0.340273435"
    assert r.input_model == "facenet_keras.tflite"
    assert r.input_bytes == round(22.71 * MiB)
    assert r.output_model == "facenet_keras_edgetpu.tflite"
    assert r.output_bytes == round(22.43 * MiB)
    assert r.onchip_bytes == round(7.04 * MiB) == 7381975
    assert r.onchip_remaining_bytes == 1280
    assert r.onchip_available_bytes is None
    assert r.offchip_bytes == round(15.06 * MiB)
    assert r.subgraphs == 1
    assert r.total_ops == 214
    assert r.operation_log == "facenet_keras_edgetpu.log"
    # Not printed by this compiler, but every row is mapped, so all 214 ops are on the TPU.
    assert (r.ops_on_tpu, r.ops_on_cpu) == (214, 0)
    assert len(r.operators) == 7
    assert all(row.mapped and row.status == "Mapped to Edge TPU" for row in r.operators)
    assert [(row.op, row.count) for row in r.operators] == [
        ("QUANTIZE", 33),
        ("MEAN", 1),
        ("MAX_POOL_2D", 3),
        ("ADD", 21),
        ("FULLY_CONNECTED", 1),
        ("CONCATENATION", 23),
        ("CONV_2D", 132),
    ]
    assert sum(row.count for row in r.operators) == r.total_ops


@needs_logs
def test_frc_v16_without_banner() -> None:
    r = report("frc_model_v16.txt")
    assert r.compiler_version is None
    assert r.input_model == "FRC_model.tflite"
    assert r.input_bytes == round(8.05 * MiB)
    assert r.output_bytes == round(14.17 * MiB)
    assert r.onchip_bytes == round(7.14 * MiB)
    assert r.onchip_remaining_bytes == round(1.75 * KiB) == 1792
    assert r.offchip_bytes == round(6.63 * MiB)
    assert r.total_ops == 141
    assert (r.ops_on_tpu, r.ops_on_cpu) == (138, 3)
    assert [(row.op, row.count, row.mapped) for row in r.operators] == [
        ("RESHAPE", 1, False),
        ("CONCATENATION", 1, False),
        ("QUANTIZE", 1, False),
    ]
    assert r.operators[0].status == (
        "Operation is otherwise supported, but not mapped due to some unspecified limitation"
    )


@needs_logs
def test_yolov3_tiny_v15_same_op_twice() -> None:
    r = report("yolov3_tiny_v15.txt")
    assert r.compiler_version == "15.0.340273435"
    assert r.input_model == "/home/yolo/yolov3-tiny_int8.tflite"
    assert r.output_model == "/home/yolo/yolov3-tiny_int8_edgetpu.tflite"
    assert r.onchip_bytes == 3 * KiB
    assert r.onchip_remaining_bytes == round(7.67 * MiB)
    assert r.offchip_bytes == 0
    assert r.total_ops == 36
    assert (r.ops_on_tpu, r.ops_on_cpu) == (2, 34)
    assert [(row.op, row.count, row.mapped) for row in r.operators] == [
        ("MAX_POOL_2D", 6, False),
        ("QUANTIZE", 2, False),
        ("QUANTIZE", 1, True),
    ]
    assert r.operators[0].status == "More than one subgraph is not supported"
    quantize = [row for row in r.operators if row.op == "QUANTIZE"]
    assert {row.status for row in quantize} == {
        "Operation is otherwise supported, but not mapped due to some unspecified limitation",
        "Mapped to Edge TPU",
    }


@needs_logs
def test_motion_blur_v2_available_line() -> None:
    r = report("motion_blur_v2.txt")
    assert r.compiler_version == "2.0.267685300"
    assert r.input_bytes == round(3.03 * KiB)
    assert r.output_bytes == round(296.85 * KiB)
    assert r.onchip_available_bytes == round(1.73 * MiB)
    assert r.onchip_remaining_bytes is None
    assert r.onchip_bytes == 10 * KiB
    assert r.offchip_bytes == 0
    assert r.total_ops == 3
    assert (r.ops_on_tpu, r.ops_on_cpu) == (1, 2)
    assert [(row.op, row.mapped) for row in r.operators] == [
        ("DEPTHWISE_CONV_2D", True),
        ("DEQUANTIZE", False),
        ("QUANTIZE", False),
    ]
    assert r.operators[1].status == "Operation is working on an unsupported data type"


@needs_logs
def test_report_round_trips_through_json() -> None:
    r = report("yolov3_tiny_v15.txt")
    assert CompilerReport.model_validate_json(r.model_dump_json()) == r


def test_not_a_report() -> None:
    with pytest.raises(TpuplanError, match="not an edgetpu_compiler report"):
        parse_compiler_report("Edge TPU Compiler version 16.0.384591198\nInvalid model: foo.tflite\n")
    with pytest.raises(TpuplanError, match="not an edgetpu_compiler report"):
        parse_compiler_report("")


@needs_logs
def test_incomplete_report_names_missing_line() -> None:
    text = (LOGS / "facenet_v15.txt").read_text(encoding="utf-8")
    cut = "\n".join(line for line in text.splitlines() if not line.startswith("Total number"))
    with pytest.raises(TpuplanError, match="missing total_ops"):
        parse_compiler_report(cut)


def test_unmapped_counts_stay_unknown_without_table() -> None:
    text = (
        "Input model: a.tflite\nInput size: 1.00KiB\nOutput model: a_edgetpu.tflite\nOutput size: 2.00KiB\n"
        "On-chip memory used for caching model parameters: 0.50KiB\n"
        "Off-chip memory used for streaming uncached model parameters: 0.00B\n"
        "Number of Edge TPU subgraphs: 1\nTotal number of operations: 4\n"
    )
    r = parse_compiler_report(text)
    assert r.onchip_bytes == 512
    assert r.ops_on_tpu is None and r.ops_on_cpu is None and r.operators == []


# ---------------------------------------------------------------------------------------------------
# compile_segment. The real compiler is not installed here, so these tests put a STAND-IN shell
# script named edgetpu_compiler on PATH. It only replays a real report and touches the output file:
# it checks the argument list, the parsing and the error plumbing, and measures nothing.
# ---------------------------------------------------------------------------------------------------

FAKE_COMPILER = """#!/bin/sh
# Stand-in for edgetpu_compiler (test plumbing only): record argv, then act per $FAKE_MODE.
# The model is the last argument, the output directory follows -o (flags may come between).
printf '%s\\n' "$@" > "$FAKE_ARGS"
for model; do :; done
out=.
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
case "$FAKE_MODE" in
  fail) echo "some progress" ; echo "Edge TPU Compiler version 16.0" >&2 ;
        echo "ERROR: Invalid model: $model" >&2 ; exit 1 ;;
  slow) exec sleep 5 ;;
  noout) cat "$FAKE_REPORT" ; exit 0 ;;
esac
base=$(basename "$model" .tflite)
: > "$out/${base}_edgetpu.tflite"
cat "$FAKE_REPORT"
"""


@pytest.fixture
def fake_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "edgetpu_compiler"
    script.write_text(FAKE_COMPILER, encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_ARGS", str(tmp_path / "argv.txt"))
    monkeypatch.setenv("FAKE_REPORT", str(LOGS / "facenet_v15.txt"))
    monkeypatch.setenv("FAKE_MODE", "ok")
    return tmp_path


def model_file(tmp_path: Path) -> Path:
    src = tmp_path / "my model's seg 0.tflite"  # spaces and a quote: only an argument list survives this
    src.write_bytes(b"TFL3")
    return src


def test_missing_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_compiler() is None
    with pytest.raises(TpuplanError) as info:
        compile_segment(model_file(tmp_path), tmp_path / "out")
    assert str(info.value) == COMPILER_INSTALL_HINT
    assert "\n" not in COMPILER_INSTALL_HINT
    assert "edgetpu-compiler" in COMPILER_INSTALL_HINT and "x86-64 Linux" in COMPILER_INSTALL_HINT


@needs_logs
def test_compile_segment_success_with_stand_in(fake_compiler: Path) -> None:
    src = model_file(fake_compiler)
    out = fake_compiler / "out dir"
    assert find_compiler() == str(fake_compiler / "bin" / "edgetpu_compiler")
    seg = compile_segment(src, out)
    argv = (fake_compiler / "argv.txt").read_text(encoding="utf-8").splitlines()
    assert argv == ["-s", "-o", str(out), str(src)]
    assert seg.source == src
    assert seg.compiled == out / "my model's seg 0_edgetpu.tflite"
    assert seg.compiled.is_file()
    assert seg.report.onchip_bytes == round(7.04 * MiB)
    assert seg.report.total_ops == 214


@needs_logs
def test_compiler_args_go_between_the_options_and_the_model(fake_compiler: Path) -> None:
    src = model_file(fake_compiler)
    out = fake_compiler / "out"
    flags = parse_compiler_args("-m 13 --search_delegate --delegate_search_step=4")
    assert flags == ["--min_runtime_version", "13", "--search_delegate", "--delegate_search_step", "4"]
    compile_segment(src, out, args=flags)
    argv = (fake_compiler / "argv.txt").read_text(encoding="utf-8").splitlines()
    assert argv == ["-s", "-o", str(out), *flags, str(src)]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("--num_segments 2", "tpuplan makes the segments"),
        ("-o /tmp", "tpuplan chooses where"),
        ("--intermediate_tensors a,b", "changes a segment's outputs"),
        ("--frobnicate", "unknown edgetpu_compiler flag '--frobnicate'"),
        ("--min_runtime_version", "needs a whole number"),
        ("--min_runtime_version thirteen", "(got 'thirteen')"),
        ("-t 0", "from 1 to"),
        ("--search_delegate=1", "takes no value"),
        ("-d --search_delegate", "given twice"),
        ("'-m 13", "cannot read"),
    ],
)
def test_compiler_args_outside_the_known_list_are_refused(text: str, why: str) -> None:
    with pytest.raises(TpuplanError, match=r"^--compiler-args: ") as info:
        parse_compiler_args(text)
    assert why in str(info.value) and "\n" not in str(info.value)


@needs_logs
def test_compile_segment_nonzero_exit(fake_compiler: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "fail")
    src = model_file(fake_compiler)
    with pytest.raises(TpuplanError) as info:
        compile_segment(src, fake_compiler / "out")
    msg = str(info.value)
    assert str(src) in msg and "exit 1" in msg
    assert msg.endswith(f"ERROR: Invalid model: {src}")


@needs_logs
def test_compile_segment_timeout(fake_compiler: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "slow")
    with pytest.raises(TpuplanError, match=r"timed out after 0\.3 s"):
        compile_segment(model_file(fake_compiler), fake_compiler / "out", timeout_s=0.3)


@needs_logs
def test_compile_segment_no_output_file(fake_compiler: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "noout")
    with pytest.raises(TpuplanError, match="wrote no"):
        compile_segment(model_file(fake_compiler), fake_compiler / "out")


def test_compile_segment_missing_model(fake_compiler: Path) -> None:
    with pytest.raises(TpuplanError, match="no such model file"):
        compile_segment(fake_compiler / "absent.tflite", fake_compiler / "out")


@needs_logs
def test_compile_segment_garbage_stdout(fake_compiler: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_REPORT", str(LOGS / "README.md"))
    with pytest.raises(TpuplanError, match="not an edgetpu_compiler report"):
        compile_segment(model_file(fake_compiler), fake_compiler / "out")
