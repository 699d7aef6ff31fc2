"""model -> profile: static analysis, placement, and every op priced on the device and on the host."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from tpuplan.profiles.docio import path_text, validation_message
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.limits import BIG, MAX_OP_US, describe
from tpuplan.profiles.model import CostSource, CutProfile, ModelRef, OpProfile, Profile, StateLoop, TensorInfo
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec, resolve_host
from tpuplan.profiles.pricing.opcost import (
    cached_layout_bytes,
    device_op_us,
    host_op_us,
    out_pixels,
    padded_macs,
    stream_us,
)
from tpuplan.profiles.state import graph_state, pairs
from tpuplan.profiles.tflite.graph import Graph, analyse
from tpuplan.profiles.tflite.reader import LoadedModel, dtype_name, require_cpu_model


def build_profile(loaded: LoadedModel, device: DeviceSpec, host: HostSpec | None = None) -> Profile:
    """Profile every op of subgraph 0 in execution order for one device and host (static, predicted)."""
    require_cpu_model(loaded)
    return profile_from_graph(analyse(loaded), device, host or resolve_host(None))


def _tensor_info(graph: Graph, t: int) -> TensorInfo:
    tensor = graph.loaded.subgraph.tensors[t]
    return TensorInfo(index=t, name=graph.key(t), shape=graph.shape(t), dtype=dtype_name(tensor), bytes=graph.nbytes(t))


def profile_from_graph(graph: Graph, device: DeviceSpec, host: HostSpec) -> Profile:
    """The profile of an analysed model; a sum of sizes past the bounds of `profiles.limits` is refused."""
    try:
        return _profile(graph, device, host)
    except ValidationError as exc:
        raise TpuplanError(f"{graph.loaded.path}: cannot be profiled: {validation_message(exc)}") from None


def _profile(graph: Graph, device: DeviceSpec, host: HostSpec) -> Profile:
    ops: list[OpProfile] = []
    for info in graph.ops:
        in_bytes = sum(graph.nbytes(t) for t in info.inputs)
        out_bytes = sum(graph.nbytes(t) for t in info.outputs)
        ops.append(
            OpProfile(
                index=info.index,
                op_type=info.op_type,
                op_class=info.op_class,
                inputs=[graph.key(t) for t in info.inputs],
                outputs=[graph.key(t) for t in info.outputs],
                param_bytes=info.param_bytes,
                param_shapes=info.param_shapes,
                per_channel=info.per_channel,
                cached_bytes=0,
                macs=info.macs,
                tpu_macs=info.macs,
                input_bytes=in_bytes,
                output_bytes=out_bytes,
                max_activation_bytes=max([graph.nbytes(t) for t in info.inputs + info.outputs] or [0]),
                supported=info.supported,
                edgetpu=info.edgetpu,
                edgetpu_reason=info.edgetpu_reason,
                tpu_us=0,
                tpu_cost="uncalibrated",
                stream_us=0,
                host_us=0,
                host_cost="uncalibrated",
            )
        )
    cuts = [
        CutProfile(index=i, bytes=sum(graph.nbytes(t) for t in ts), tensors=[graph.key(t) for t in ts])
        for i, ts in enumerate(graph.crossing)
    ]
    made = graph.model_inputs + [t for info in graph.ops for t in info.outputs]
    loaded = graph.loaded
    inputs = [_tensor_info(graph, t) for t in graph.model_inputs]
    outputs = [_tensor_info(graph, t) for t in graph.model_outputs]
    profile = Profile(
        state=[*graph_state(graph), *pairs_of(graph, inputs, outputs)],
        # the file name only: the same model gives the same profile from any directory (sha256 identifies it)
        model=ModelRef(path=path_text(Path(loaded.path).name), sha256=loaded.sha256, bytes=len(loaded.data)),
        device=device,
        host=host.name,
        inputs=inputs,
        outputs=outputs,
        tensors=[_tensor_info(graph, t) for t in made],
        input_bytes=sum(graph.nbytes(t) for t in graph.model_inputs),
        output_bytes=sum(graph.nbytes(t) for t in graph.model_outputs),
        ops=ops,
        cuts=cuts,
    )
    return price(profile, device, host, where=str(graph.loaded.path))


def pairs_of(graph: Graph, inputs: list[TensorInfo], outputs: list[TensorInfo]) -> list[StateLoop]:
    """The state pairs of the model (by name), with the loop from the input's first reader to the last op
    (`profiles.state`)."""
    readers: dict[str, list[int]] = {}
    writer: dict[str, int] = {}
    for info in graph.ops:
        for t in info.inputs:
            readers.setdefault(graph.key(t), []).append(info.index)
        for t in info.outputs:
            writer[graph.key(t)] = info.index
    out = []
    for name_in, name_out in pairs(inputs, outputs):
        first, last = min(readers.get(name_in, [-1]), default=-1), len(graph.ops) - 1
        if first >= 0 and name_out in writer:
            out.append(StateLoop(kind="pair", names=[name_in, name_out], first_op=first, last_op=last, together=False))
    return out


def _host_source(op: OpProfile, host: HostSpec) -> CostSource:
    if op.measured_us is not None:
        return "measured"
    return "calibrated" if host.op_cost(op.op_class, op.op_type).calibrated else "uncalibrated"


def price(profile: Profile, device: DeviceSpec, host: HostSpec, *, where: str | None = None) -> Profile:
    """The same profile priced for another device and host. Measured op times stay what they are: they
    price the op on the host CPU (a CPU device runs every op there). A price past the bounds of
    `profiles.limits` (huge sizes, or a spec's costs at their maximum) is refused, naming the op and
    `where` (the file it came from; the model's file name by default)."""
    ops = []
    on_cpu = device.backend == "cpu"  # a CPU device runs every op on the host
    shapes = {t.name: t.shape for t in profile.tensors}
    for op in profile.ops:
        cached = cached_layout_bytes(op.op_type, op.param_shapes, op.param_bytes, op.per_channel, device)
        tpu_macs = padded_macs(op.op_type, op.macs, op.param_shapes, device)
        act = op.input_bytes + op.output_bytes
        host_us = (
            round(op.measured_us)
            if op.measured_us is not None
            else host_op_us(op.op_class, op.op_type, op.macs, act, host)
        )
        host_cost = _host_source(op, host)
        update = {
            "cached_bytes": cached,
            "tpu_macs": tpu_macs,
            "tpu_us": host_us if on_cpu else device_op_us(op.op_class, tpu_macs, op.output_bytes, device),
            "tpu_cost": host_cost
            if on_cpu
            else ("calibrated" if device.cost(op.op_class).calibrated else "uncalibrated"),
            "stream_us": stream_us(op.op_class, cached, out_pixels([shapes[t] for t in op.outputs]), device),
            "host_us": host_us,
            "host_cost": host_cost,
        }
        _check_prices(where or profile.model.path, op, update, device, host)
        ops.append(op.model_copy(update=update))
    return profile.model_copy(update={"ops": ops, "device": device, "host": host.name})


def _check_prices(where: str, op: OpProfile, prices: Mapping[str, object], device: DeviceSpec, host: HostSpec) -> None:
    """model_copy does not validate: every number it sets is checked against its field's bound here."""
    for key, limit, unit in (
        ("cached_bytes", BIG, "bytes"),
        ("tpu_macs", BIG, "MACs"),
        ("tpu_us", MAX_OP_US, "us"),
        ("stream_us", MAX_OP_US, "us"),
        ("host_us", MAX_OP_US, "us"),
    ):
        value = prices[key]
        if isinstance(value, int) and value > limit:
            raise TpuplanError(
                f"op {op.index} ({op.op_type}) of {where} priced on {device.name} and host {host.name}: "
                f"{key} {describe(value)} {unit} is beyond tpuplan's bound of {limit:,}"
            )
