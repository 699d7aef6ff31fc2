"""State carried from one inference to the next: where it is in a model, and what a plan must do about it.

A model keeps state three ways:
- variable tensors (`is_variable` in the schema): an op's own state, such as the cell state of a
  UNIDIRECTIONAL_SEQUENCE_LSTM converted as stateful (keras_lstm_mnist_ptq);
- resource variables: VAR_HANDLE makes a handle to a variable (by its shared name), READ_VARIABLE and
  ASSIGN_VARIABLE read and write it, CALL_ONCE runs its initializer;
- a state pair: a model input that takes back what a model output gave for the previous input
  (traffic_model's init_lstm_c / lstm_c): the names pair up once an "init"/"prev" mark and a "new"/"next"
  mark are dropped, and the two have the same shape and type; or declared with --state IN=OUT.
Each is a `StateLoop`: the ops from the first that reads the state to the last that writes it; for a
pair, to the last op, since the output it feeds back leaves the pipeline with the rest of the input's
outputs, after the last stage. A stage holding one of them waits, for the next input, until this
input's state is made (so the stages of a loop add up towards the period: the formula's `state` bound;
the loops of a model usually overlap, one recurrent cell) and is never copied (copies would each hold a
state of their own). Variables live inside one interpreter, so their ops also stay in one stage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError, quoted
from tpuplan.profiles.model import Profile, StateLoop, TensorInfo
from tpuplan.profiles.tflite.graph import Graph, analyse
from tpuplan.profiles.tflite.reader import LoadedModel

RESOURCE_OPS = frozenset({"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"})
_IN_MARK = re.compile(r"^(init|initial|prev|previous|old|last|in|input|state_in)[_\-.]|[_\-.](in|input|init|prev)$")
_OUT_MARK = re.compile(r"^(new|next|out|output|updated|state_out)[_\-.]|[_\-.](out|output|new|next)$")


def _key(name: str, mark: re.Pattern[str]) -> tuple[str, bool]:
    """The name's last path part, lower case, without a ":N" suffix and one input/output mark."""
    base = name.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    stripped = mark.sub("", base, count=1)
    return stripped, stripped != base


def pairs(inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo]) -> list[tuple[str, str]]:
    """(input, output) state pairs found by name: same key once the marks are dropped (at least one
    mark, or the same last path part under different parents), same shape and type, and no other
    output with that key."""
    found = []
    for t_in in inputs:
        key_in, marked_in = _key(t_in.name, _IN_MARK)
        matches = []
        for t_out in outputs:
            key_out, marked_out = _key(t_out.name, _OUT_MARK)
            same_place = t_out.name.rsplit("/", 1)[-1] == t_in.name.rsplit("/", 1)[-1] and t_out.name != t_in.name
            named = key_in and key_in == key_out and (marked_in or marked_out or same_place)
            if named and (t_in.shape, t_in.dtype) == (t_out.shape, t_out.dtype):
                matches.append(t_out.name)
        if len(matches) == 1:
            found.append((t_in.name, matches[0]))
    return found


def _pair_loop(profile: Profile, name_in: str, name_out: str, declared: bool) -> StateLoop | None:
    """The loop of a pair: from the first op reading the input to the last op (the output leaves the
    pipeline after the last stage); None when nothing reads the input or no op writes the output."""
    readers = [op.index for op in profile.ops if name_in in op.inputs]
    writer = next((op.index for op in profile.ops if name_out in op.outputs), None)
    if not readers or writer is None:
        return None
    last = len(profile.ops) - 1
    return StateLoop(
        kind="pair", names=[name_in, name_out], first_op=min(readers), last_op=last, together=False, declared=declared
    )


def profile_pairs(profile: Profile) -> list[StateLoop]:
    """The state pairs of a profile, found by name (what a profile made before state was recorded has)."""
    loops = (_pair_loop(profile, i, o, False) for i, o in pairs(profile.inputs, profile.outputs))
    return [loop for loop in loops if loop is not None]


def _span(kind: Literal["variable", "resource"], names: list[str], ops: Iterable[int]) -> StateLoop:
    idx = sorted(set(ops))
    return StateLoop(kind=kind, names=names, first_op=idx[0], last_op=idx[-1], together=True)


def graph_state(graph: Graph) -> list[StateLoop]:
    """Every state loop of an analysed model: its variable tensors, its resource variables, its pairs."""
    loops: list[StateLoop] = []
    tensors = graph.loaded.subgraph.tensors
    owners: dict[int, list[int]] = {}
    for info in graph.ops:
        for t in info.own:
            if tensors[t].isVariable:
                owners.setdefault(t, []).append(info.index)
    for t, ops in sorted(owners.items()):
        loops.append(_span("variable", [graph.key(t)], ops))
    loops += _resources(graph)
    return loops


def _resources(graph: Graph) -> list[StateLoop]:
    """Resource variables: the ops reading or writing each handle, grouped by the variable's shared name,
    with every CALL_ONCE (the variables' initializers run there)."""
    sg = graph.loaded.subgraph
    name_of: dict[int, str] = {}
    groups: dict[str, list[int]] = {}
    for info in graph.ops:
        if info.op_type == "VAR_HANDLE":
            shared = _shared_name(sg.operators[info.index])
            for t in info.outputs:
                name_of[t] = shared or graph.key(t)
                groups.setdefault(name_of[t], []).append(info.index)
    for info in graph.ops:
        if info.op_type in RESOURCE_OPS:
            for t in info.inputs:
                if t in name_of:
                    groups[name_of[t]].append(info.index)
    once = [info.index for info in graph.ops if info.op_type == "CALL_ONCE"]
    return [_span("resource", [name], ops + once) for name, ops in sorted(groups.items())]


def _shared_name(op: Any) -> str:
    options = getattr(op, "builtinOptions", None)
    raw = getattr(options, "sharedName", None) or b""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def model_state(loaded: LoadedModel) -> list[StateLoop]:
    """The state that lives inside the model's own interpreter (variables, resource variables): what a
    copy of a segment holding it would keep apart from the other copies."""
    return [loop for loop in graph_state(analyse(loaded)) if loop.together]


def copied_state(loops: Sequence[StateLoop], ranges: Sequence[tuple[int, int]], copies: Sequence[int]) -> str | None:
    """Why a stage with copies cannot run (it holds state that lives in its interpreter), or None."""
    for k, ((first, last), r) in enumerate(zip_strict(ranges, copies)):
        held = [lp for lp in loops if first <= lp.last_op and last >= lp.first_op]
        if r > 1 and held:
            names = ", ".join(n for lp in held for n in lp.names)
            return (
                f"stage {k} (ops {first}..{last}) holds state ({names}) but runs on {r} copies: each copy would "
                "keep a state of its own and the outputs would differ from the model's"
            )
    return None


def loops_of(profile: Profile) -> list[StateLoop]:
    """The profile's state loops (its pairs, found by name, when it was made before state was recorded)."""
    return list(profile.state) if profile.state is not None else profile_pairs(profile)


def with_state(profile: Profile, declared: Sequence[str] = (), none: bool = False) -> Profile:
    """The profile with its state as the user says: `none` (--no-state) drops every loop the model shows;
    `declared` (--state IN=OUT, repeated or comma-separated) adds pairs."""
    loops = [] if none else loops_of(profile)
    names_in = {t.name: t for t in profile.inputs}
    names_out = {t.name: t for t in profile.outputs}
    for text in (d.strip() for item in declared for d in item.split(",") if d.strip()):
        name_in, sep, name_out = (part.strip() for part in text.partition("="))
        if not sep or name_in not in names_in or name_out not in names_out:
            raise TpuplanError(
                f"--state {quoted(text)}: give IN=OUT with IN a model input and OUT a model output "
                f"(inputs: {', '.join(sorted(names_in))}; outputs: {', '.join(sorted(names_out))})"
            )
        t_in, t_out = names_in[name_in], names_out[name_out]
        if (t_in.shape, t_in.dtype) != (t_out.shape, t_out.dtype):
            raise TpuplanError(
                f"--state {quoted(text)}: {name_in} is {t_in.dtype} {t_in.shape} but {name_out} is "
                f"{t_out.dtype} {t_out.shape}; a state input must take what its output gives"
            )
        loop = _pair_loop(profile, name_in, name_out, True)
        if loop is not None and all(lp.names != loop.names for lp in loops):
            loops.append(loop)
    return profile.model_copy(update={"state": loops})


def spans(loops: Iterable[StateLoop]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(the op span of every loop, the spans whose ops must stay in one stage)."""
    loops = list(loops)
    return [(lp.first_op, lp.last_op) for lp in loops], [(lp.first_op, lp.last_op) for lp in loops if lp.together]


def summary(loops: Sequence[StateLoop]) -> str:
    """One line for people: what the state is and what it does to a plan ('' when stateless)."""
    if not loops:
        return ""
    kinds = {"variable": "variable tensor", "resource": "resource variable", "pair": "state pair"}
    parts = []
    for lp in loops:
        what = " -> ".join(reversed(lp.names)) if lp.kind == "pair" else ", ".join(lp.names)
        parts.append(f"{kinds[lp.kind]} {what} (ops {lp.first_op}..{lp.last_op}{', declared' if lp.declared else ''})")
    return (
        "stateful: " + "; ".join(parts) + ": stages in a state loop are never copied and the next input waits "
        "for them (their times add up towards the period); --no-state to plan as stateless"
    )
