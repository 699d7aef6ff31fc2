"""model -> profile: static analysis, placement, and every op priced on the device and on the host."""

from __future__ import annotations

from pathlib import Path

from tpuplan.profiles.cost import cached_layout_bytes, device_op_us, host_op_us, padded_macs, stream_us
from tpuplan.profiles.device import DeviceSpec
from tpuplan.profiles.graph import Graph, analyse
from tpuplan.profiles.host import HostSpec, resolve_host
from tpuplan.profiles.model import CostSource, CutProfile, ModelRef, OpProfile, Profile, TensorInfo
from tpuplan.profiles.tflite import LoadedModel, dtype_name, require_cpu_model


def build_profile(loaded: LoadedModel, device: DeviceSpec, host: HostSpec | None = None) -> Profile:
    """Profile every op of subgraph 0 in execution order for one device and host (static, predicted)."""
    require_cpu_model(loaded)
    return profile_from_graph(analyse(loaded), device, host or resolve_host(None))


def _tensor_info(graph: Graph, t: int) -> TensorInfo:
    tensor = graph.loaded.subgraph.tensors[t]
    return TensorInfo(
        index=t, name=graph.key(t), shape=graph.shape(t), dtype=dtype_name(tensor), bytes=graph.nbytes(t)
    )


def profile_from_graph(graph: Graph, device: DeviceSpec, host: HostSpec) -> Profile:
    ops: list[OpProfile] = []
    for info in graph.ops:
        in_bytes = sum(graph.nbytes(t) for t in info.inputs)
        out_bytes = sum(graph.nbytes(t) for t in info.outputs)
        ops.append(OpProfile(
            index=info.index, op_type=info.op_type, op_class=info.op_class,
            inputs=[graph.key(t) for t in info.inputs], outputs=[graph.key(t) for t in info.outputs],
            param_bytes=info.param_bytes, param_shapes=info.param_shapes, per_channel=info.per_channel,
            cached_bytes=0, macs=info.macs, tpu_macs=info.macs, input_bytes=in_bytes, output_bytes=out_bytes,
            max_activation_bytes=max([graph.nbytes(t) for t in info.inputs + info.outputs] or [0]),
            supported=info.supported, edgetpu=info.edgetpu, edgetpu_reason=info.edgetpu_reason,
            tpu_us=0, tpu_cost="uncalibrated", stream_us=0, host_us=0, host_cost="uncalibrated",
        ))
    cuts = [
        CutProfile(index=i, bytes=sum(graph.nbytes(t) for t in ts), tensors=[graph.key(t) for t in ts])
        for i, ts in enumerate(graph.crossing)
    ]
    made = graph.model_inputs + [t for info in graph.ops for t in info.outputs]
    loaded = graph.loaded
    profile = Profile(
        # the file name only: the same model gives the same profile from any directory (sha256 identifies it)
        model=ModelRef(path=Path(loaded.path).name, sha256=loaded.sha256, bytes=len(loaded.data)),
        device=device,
        host=host.name,
        inputs=[_tensor_info(graph, t) for t in graph.model_inputs],
        outputs=[_tensor_info(graph, t) for t in graph.model_outputs],
        tensors=[_tensor_info(graph, t) for t in made],
        input_bytes=sum(graph.nbytes(t) for t in graph.model_inputs),
        output_bytes=sum(graph.nbytes(t) for t in graph.model_outputs),
        ops=ops,
        cuts=cuts,
    )
    return price(profile, device, host)


def _host_source(op: OpProfile, host: HostSpec) -> CostSource:
    if op.measured_us is not None:
        return "measured"
    return "calibrated" if host.op_cost(op.op_class, op.op_type).calibrated else "uncalibrated"


def price(profile: Profile, device: DeviceSpec, host: HostSpec) -> Profile:
    """The same profile priced for another device and host. Measured op times stay what they are: they
    price the op on the host CPU (a CPU device runs every op there)."""
    ops = []
    for op in profile.ops:
        cached = cached_layout_bytes(op.op_type, op.param_shapes, op.param_bytes, op.per_channel, device)
        tpu_macs = padded_macs(op.op_type, op.macs, op.param_shapes, device)
        act = op.input_bytes + op.output_bytes
        host_us = (round(op.measured_us) if op.measured_us is not None
                   else host_op_us(op.op_class, op.op_type, op.macs, act, host))
        host_cost = _host_source(op, host)
        on_cpu = device.backend == "cpu"  # a CPU device runs every op on the host
        ops.append(op.model_copy(update={
            "cached_bytes": cached,
            "tpu_macs": tpu_macs,
            "tpu_us": host_us if on_cpu else device_op_us(op.op_class, tpu_macs, op.output_bytes, device),
            "tpu_cost": host_cost if on_cpu else ("calibrated" if device.cost(op.op_class).calibrated
                                                  else "uncalibrated"),
            "stream_us": stream_us(op.op_class, cached, device),
            "host_us": host_us,
            "host_cost": host_cost,
        }))
    return profile.model_copy(update={"ops": ops, "device": device, "host": host.name})
