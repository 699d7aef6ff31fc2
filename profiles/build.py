"""model -> profile: static analysis plus the device's predicted time for every op."""

from __future__ import annotations

from tpuplan.profiles.cost import cached_layout_bytes, op_time_us, stream_time_us
from tpuplan.profiles.device import DeviceSpec
from tpuplan.profiles.graph import Graph, analyse
from tpuplan.profiles.model import CutProfile, ModelRef, OpProfile, Profile, TensorInfo
from tpuplan.profiles.tflite import LoadedModel, dtype_name, require_cpu_model


def build_profile(loaded: LoadedModel, device: DeviceSpec) -> Profile:
    """Profile every op of subgraph 0 in execution order for one device (static, predicted times)."""
    require_cpu_model(loaded)
    return profile_from_graph(analyse(loaded), device)


def _tensor_info(graph: Graph, t: int) -> TensorInfo:
    tensor = graph.loaded.subgraph.tensors[t]
    return TensorInfo(
        index=t, name=graph.name(t), shape=graph.shape(t), dtype=dtype_name(tensor), bytes=graph.nbytes(t)
    )


def profile_from_graph(graph: Graph, device: DeviceSpec) -> Profile:
    ops: list[OpProfile] = []
    for info in graph.ops:
        in_bytes = sum(graph.nbytes(t) for t in info.inputs)
        out_bytes = sum(graph.nbytes(t) for t in info.outputs)
        max_act = max([graph.nbytes(t) for t in info.inputs + info.outputs] or [0])
        cached = cached_layout_bytes(info.op_type, info.param_shapes, info.param_bytes, device)
        if not info.edgetpu:
            cached = 0 if device.backend == "edgetpu" else info.param_bytes
        ops.append(
            OpProfile(
                index=info.index,
                op_type=info.op_type,
                op_class=info.op_class,  # type: ignore[arg-type]
                inputs=[graph.name(t) for t in info.inputs],
                outputs=[graph.name(t) for t in info.outputs],
                param_bytes=info.param_bytes,
                param_shapes=info.param_shapes,
                cached_bytes=cached,
                macs=info.macs,
                input_bytes=in_bytes,
                output_bytes=out_bytes,
                max_activation_bytes=max_act,
                edgetpu=info.edgetpu,
                edgetpu_reason=info.edgetpu_reason,
                predicted_us=op_time_us(info.op_class, info.edgetpu, info.macs, in_bytes + out_bytes, device),
                stream_us=stream_time_us(info.op_class, info.edgetpu, cached, device),
            )
        )
    cuts = [
        CutProfile(index=i, bytes=sum(graph.nbytes(t) for t in ts), tensors=[graph.name(t) for t in ts])
        for i, ts in enumerate(graph.crossing)
    ]
    loaded = graph.loaded
    return Profile(
        model=ModelRef(path=str(loaded.path), sha256=loaded.sha256, bytes=len(loaded.data)),
        device=device,
        inputs=[_tensor_info(graph, t) for t in graph.model_inputs],
        outputs=[_tensor_info(graph, t) for t in graph.model_outputs],
        input_bytes=sum(graph.nbytes(t) for t in graph.model_inputs),
        output_bytes=sum(graph.nbytes(t) for t in graph.model_outputs),
        ops=ops,
        cuts=cuts,
    )


def reprice(profile: Profile, device: DeviceSpec) -> Profile:
    """The same static profile priced for another device (measured times are kept as they are)."""
    if profile.device == device:
        return profile
    ops = []
    for op in profile.ops:
        cached = cached_layout_bytes(op.op_type, op.param_shapes, op.param_bytes, device)
        if not op.edgetpu:
            cached = 0 if device.backend == "edgetpu" else op.param_bytes
        act = op.input_bytes + op.output_bytes
        ops.append(
            op.model_copy(
                update={
                    "cached_bytes": cached,
                    "predicted_us": op_time_us(op.op_class, op.edgetpu, op.macs, act, device),
                    "stream_us": stream_time_us(op.op_class, op.edgetpu, cached, device),
                }
            )
        )
    return profile.model_copy(update={"ops": ops, "device": device})
