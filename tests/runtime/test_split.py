"""Proof that splitting is exact: segments run in a chain give bit-identical outputs to the whole model.

Every CPU model of the shared set is cut at random points and right after LSTM / concatenation /
residual-add ops, for 2 to 4 stages; tensors are routed by name from one dict, as the pipeline does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from tests.shared_data import MODELS, needs
from tests.shared_data import cpu_model_paths as cpu_models
from tpuplan.planner.plan import load_plan
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.tflite.graph import analyse
from tpuplan.profiles.tflite.reader import LoadedModel, buffer_size, load_model, parse_model, tensor_name
from tpuplan.runtime.backends.registry import random_inputs
from tpuplan.runtime.split.cut import Segment, segment_bytes, split_model
from tpuplan.runtime.split.manifest import SegmentManifest
from tpuplan.runtime.split.write import write_split

CPU_MODELS = cpu_models()
LARGE_BYTES = 2_000_000  # above this, fewer random cut sets keep the file under its time budget
MOBILENET_V2 = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
LSTM = MODELS / "keras_lstm_mnist_ptq.tflite"
TRAFFIC = MODELS / "automl_video_ondevice" / "traffic_model.tflite"

Tensors = dict[str, np.ndarray]

pytestmark = needs(MODELS)


def _run(data: bytes, feeds: Tensors) -> Tensors:
    interp = Interpreter(model_content=data, num_threads=1)
    interp.allocate_tensors()
    for d in interp.get_input_details():
        interp.set_tensor(d["index"], feeds[d["name"]])
    interp.invoke()
    return {d["name"]: interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()}


def _chain(segments: list[Segment], feeds: Tensors) -> Tensors:
    """Run the segments in order; every tensor any later segment needs is looked up by name."""
    available = dict(feeds)
    for seg in segments:
        interp = Interpreter(model_content=seg.data, num_threads=1)
        interp.allocate_tensors()
        in_details, out_details = interp.get_input_details(), interp.get_output_details()
        assert [d["name"] for d in in_details] == seg.inputs
        assert [d["name"] for d in out_details] == seg.outputs
        for d in in_details:
            interp.set_tensor(d["index"], available[d["name"]])
        interp.invoke()
        available.update({d["name"]: interp.get_tensor(d["index"]).copy() for d in out_details})
    return available


def _reference(loaded: LoadedModel, seed: int = 0) -> tuple[Tensors, Tensors]:
    try:
        interp = Interpreter(model_content=loaded.data, num_threads=1)
        interp.allocate_tensors()
        feeds = random_inputs(interp.get_input_details(), np.random.default_rng(seed))
        return feeds, _run(loaded.data, feeds)
    except (ValueError, RuntimeError) as exc:
        pytest.skip(f"the LiteRT interpreter cannot run {loaded.path.name}: {exc}")


def _check_file(seg: Segment) -> None:
    """Loadable by our reader; constants 16-byte aligned; buffer 0 empty; no stale whole-model facts."""
    parse_model(seg.data, Path(f"segment{seg.index}.tflite"))
    root = schema.Model.GetRootAs(seg.data, 0)
    assert root.BuffersLength() >= 1 and root.Buffers(0).DataLength() == 0
    for i in range(root.BuffersLength()):
        buf = root.Buffers(i)
        if buf.DataLength():
            field = buf._tab.Offset(4)  # Buffer.data: the table's first field
            start = buf._tab.Vector(field)  # absolute file offset of the first data byte
            assert start % 16 == 0, f"segment {seg.index} buffer {i} data at offset {start}"
    assert root.SignatureDefsLength() == 0 and root.MetadataLength() == 0
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        assert code.DeprecatedBuiltinCode() == min(code.BuiltinCode(), 127)


def _special_cuts(loaded: LoadedModel) -> list[int]:
    """Ops right after which a cut is interesting: LSTM steps, concatenations, residual adds."""
    graph = analyse(loaded)
    out = []
    for op in graph.ops[: len(graph.ops) - 1]:
        residual = op.op_type == "ADD" and len(op.inputs) >= 2
        if "LSTM" in op.op_type or op.op_type == "CONCATENATION" or residual:
            out.append(op.index)
    return out


def _cut_sets(loaded: LoadedModel) -> list[list[int]]:
    n = len(loaded.subgraph.operators)
    rng = np.random.default_rng(int(hashlib.sha256(loaded.path.name.encode()).hexdigest()[:8], 16))
    special = _special_cuts(loaded)
    tries = 2 if len(loaded.data) > LARGE_BYTES else 5
    sets: list[list[int]] = [[0], [n - 2]] if n >= 2 else []
    for k in (2, 3, 4):
        if k - 1 > n - 1:
            continue
        for _ in range(tries):
            sets.append(sorted(int(c) for c in rng.choice(n - 1, size=k - 1, replace=False)))
        if len(special) >= k - 1:
            sets.append(sorted(int(c) for c in rng.choice(special, size=k - 1, replace=False)))
    unique: list[list[int]] = []
    for s in sets:
        if s not in unique:
            unique.append(s)
    return unique


@pytest.mark.parametrize("path", CPU_MODELS, ids=[p.name for p in CPU_MODELS])
def test_segments_are_bit_identical(path: Path) -> None:
    loaded = load_model(path, allow_edgetpu=False)
    feeds, expected = _reference(loaded)
    whole = split_model(loaded, [])
    assert len(whole) == 1 and whole[0].outputs == list(expected)
    assert whole[0].inputs == list(feeds)
    for cuts in [[], *_cut_sets(loaded)]:
        segments = split_model(loaded, cuts)
        assert len(segments) == len(cuts) + 1
        for seg in segments:
            _check_file(seg)
        got = _chain(segments, feeds)
        for name, want in expected.items():
            assert got[name].shape == want.shape, (cuts, name)
            assert np.array_equal(got[name], want), f"{path.name} cuts {cuts}: output {name!r} differs"


def test_a_tensor_skips_a_stage() -> None:
    """The residual input of a MobileNetV2 block jumps over the stage holding the block's convs."""
    loaded = load_model(MOBILENET_V2)
    graph = analyse(loaded)
    producer = {t: op.index for op in graph.ops for t in op.outputs}
    t, m = next(
        (t, m)
        for t, p in producer.items()
        for m in range(p + 1, graph.last_use.get(t, -1))
        if t not in graph.ops[m].inputs
    )
    segments = split_model(loaded, [m - 1, m])  # stage 1 is op m alone, which does not read t
    name = graph.name(t)
    assert name in segments[0].outputs and name in segments[2].inputs and name not in segments[1].inputs
    feeds, expected = _reference(loaded)
    got = _chain(segments, feeds)
    assert all(np.array_equal(got[n], v) for n, v in expected.items())


def test_lstm_state_stays_with_its_op() -> None:
    """Variable (state) tensors and intermediates never cross a cut, and keep isVariable + a buffer."""
    loaded = load_model(LSTM)
    graph = analyse(loaded)
    lstm = next(op for op in graph.ops if "LSTM" in op.op_type)
    state = [graph.name(t) for t in lstm.own if loaded.subgraph.tensors[t].isVariable]
    assert state
    for cuts in ([lstm.index - 1, lstm.index], [lstm.index]):
        segments = split_model(loaded, cuts)
        home = next(s for s in segments if s.first_op <= lstm.index <= s.last_op)
        for seg in segments:
            assert not set(state) & (set(seg.inputs) | set(seg.outputs))
        model = parse_model(home.data, Path("lstm.tflite")).model
        variables = [t for t in model.subgraphs[0].tensors if t.isVariable]
        assert sorted(t.name.decode() for t in variables) == sorted(state)
        original = {tensor_name(t): t for t in loaded.subgraph.tensors}
        for t in variables:  # same (here empty) initial contents as in the original model
            assert 0 <= t.buffer < len(model.buffers)
            assert buffer_size(model, t.buffer) == buffer_size(loaded.model, original[t.name.decode()].buffer)


def test_detection_postprocess_shapes_come_from_the_interpreter(tmp_path: Path) -> None:
    loaded = load_model(TRAFFIC)
    n = len(loaded.subgraph.operators)
    manifest = _split(TRAFFIC, [n - 2], tmp_path / "out")
    last = manifest.segments[-1]
    static = {t.name.decode(): list(t.shape) for t in loaded.subgraph.tensors}
    assert any(static[o.name] == [] for o in last.outputs)  # the file does not know them
    assert all(o.shape for o in last.outputs)  # the manifest does
    assert len(manifest.segments[0].inputs) == 3  # image + both LSTM states


def test_segment_bytes_single_op_and_explicit_io() -> None:
    loaded = load_model(MOBILENET_V2)
    graph = analyse(loaded)
    op = graph.ops[5]
    data = segment_bytes(loaded, 5, 5)
    interp = Interpreter(model_content=data, num_threads=1)
    assert [d["name"] for d in interp.get_input_details()] == [graph.name(t) for t in op.inputs]
    outs = [graph.name(t) for t in op.outputs]
    data = segment_bytes(loaded, 5, 5, outputs=outs)
    assert [d["name"] for d in Interpreter(model_content=data).get_output_details()] == outs
    with pytest.raises(TpuplanError):
        segment_bytes(loaded, 5, 5, inputs=[])
    with pytest.raises(TpuplanError):
        segment_bytes(loaded, 5, 5, outputs=["no such tensor"])
    with pytest.raises(TpuplanError):
        segment_bytes(loaded, 7, 5)


def _split(model: Path, plan_or_cuts: Path | list[int], out: Path, **options: Any) -> SegmentManifest:
    """write_split with the model read from disk, and a plan file read (or cuts given) as `plan split` does."""
    loaded = load_model(model)
    if isinstance(plan_or_cuts, Path):
        return write_split(loaded, out, plan=load_plan(plan_or_cuts), **options)
    return write_split(loaded, out, cuts=plan_or_cuts, **options)
