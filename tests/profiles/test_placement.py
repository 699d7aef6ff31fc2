"""Our placement against the real Edge TPU compiler's, on every compiled file in ../shared/models.

A compiled file holds one `edgetpu-custom-op` in place of the ops the compiler mapped, and the ops it left
for the CPU by name; matching those by type and output names against the CPU model gives the compiler's
own placement, op by op.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shared_data import MODELS, absent
from tpuplan.profiles.edgetpu.placement import first_tpu_partition
from tpuplan.profiles.tflite.graph import analyse
from tpuplan.profiles.tflite.reader import LoadedModel, load_model, op_code_name, tensor_name

COMPILED = sorted(MODELS.rglob("*_edgetpu.tflite")) if MODELS.is_dir() else []
PAIRS = [
    (p.with_name(p.name.replace("_edgetpu.tflite", ".tflite")), p)
    for p in COMPILED
    if p.with_name(p.name.replace("_edgetpu.tflite", ".tflite")).is_file()
]
SEGMENTS = [p for p in COMPILED if p.parent.name == "pipeline"]

pytestmark = pytest.mark.skipif(not PAIRS, reason=absent(MODELS / "*_edgetpu.tflite"))


def _ops(loaded: LoadedModel) -> list[tuple[str, tuple[str, ...]]]:
    """(type, output names) of every op: what identifies an op across the CPU and the compiled file."""
    sg = loaded.subgraph
    return [
        (
            op_code_name(loaded.model, int(op.opcodeIndex)),
            tuple(tensor_name(sg.tensors[int(t)]) for t in (op.outputs if op.outputs is not None else [])),
        )
        for op in sg.operators
    ]


def compiler_cpu_ops(cpu: LoadedModel, compiled: LoadedModel) -> set[int]:
    """Indices of the CPU model's ops that the compiled file runs on the CPU."""
    index = {key: k for k, key in enumerate(_ops(cpu))}
    found = set()
    for key in _ops(compiled):
        if key[0] == "edgetpu-custom-op":
            continue
        assert key in index, f"{key} of the compiled file is not an op of the CPU model"
        found.add(index[key])
    return found


@pytest.mark.parametrize(("cpu_path", "compiled_path"), PAIRS, ids=[p.stem for p, _ in PAIRS])
def test_host_ops_are_the_compilers(cpu_path: Path, compiled_path: Path) -> None:
    cpu = load_model(cpu_path)
    truth = compiler_cpu_ops(cpu, load_model(compiled_path))
    ops = analyse(cpu).ops
    ours = {op.index for op in ops if not op.edgetpu}
    assert ours == truth, f"we say host: {sorted(ours - truth)}; the compiler says host: {sorted(truth - ours)}"
    assert all(op.edgetpu_reason for op in ops if not op.edgetpu)


def test_the_known_disagreements_are_settled() -> None:
    """The cases that the op list alone gets wrong: partitioning, resize scales, TILE."""
    deeplab = analyse(load_model(MODELS / "deeplabv3_mnv2_pascal_quant.tflite")).ops
    assert [op.edgetpu for op in deeplab[63:72]] == [True] + [False] * 8
    assert not deeplab[64].supported and "33" in deeplab[64].edgetpu_reason  # a 1x1 -> 33x33 bilinear resize
    assert deeplab[65].supported and "depends on host op 64" in deeplab[65].edgetpu_reason
    slim = analyse(load_model(MODELS / "deeplab_mobilenet_edgetpu_slim_cityscapes_quant.tflite")).ops
    assert slim[76].op_type == "TILE" and slim[76].edgetpu
    assert slim[82].op_type == "RESIZE_BILINEAR" and not slim[82].edgetpu


def test_unknown_custom_op_is_a_host_op() -> None:
    ops = analyse(load_model(MODELS / "posenet" / "posenet_mobilenet_v1_075_353_481_16_quant_decoder.tflite")).ops
    decoder = [op for op in ops if op.op_type == "PosenetDecoderOp"]
    assert len(decoder) == 1 and not decoder[0].edgetpu and "custom op" in decoder[0].edgetpu_reason
    assert sum(op.edgetpu for op in ops) == len(ops) - 1


@pytest.mark.parametrize("segment", SEGMENTS, ids=[p.stem for p in SEGMENTS])
def test_compiler_segments_keep_their_host_ops_on_the_host(segment: Path) -> None:
    """The compiler's own pipeline segments: the ops it left outside its custom op are host ops for us too."""
    ops = analyse(load_model(segment)).ops
    assert sum(op.op_type == "edgetpu-custom-op" for op in ops) == 1
    assert all(op.edgetpu == (op.op_type == "edgetpu-custom-op") for op in ops)


def test_a_later_segment_maps_what_a_host_op_blocked() -> None:
    """Each segment is compiled on its own: cut after the blocking host op, the ops behind it map."""
    ops = analyse(load_model(MODELS / "deeplabv3_mnv2_pascal_quant.tflite")).ops
    supported = [op.supported for op in ops]
    inputs, outputs = [op.inputs for op in ops], [op.outputs for op in ops]
    producer = {t: op.index for op in ops for t in op.outputs}
    from_64 = first_tpu_partition(supported, inputs, outputs, producer, start=64)
    assert from_64[:7] == [False, True, True, True, True, True, False]  # 64 host, 65..69 TPU, 70 host
    whole = first_tpu_partition(supported, inputs, outputs, producer, start=0)
    assert whole[64:71] == [False] * 7
