"""Which tensors go where between pipeline stages, worked out once, before any input flows.

Tensors are routed by name (a tensor may skip stages, so positions inside one segment mean nothing in the
next), but names are resolved here, at build time: at every boundary the pipeline carries a fixed,
ordered list of tensors, and each stage gets precomputed positions to pick its inputs from the list and to
assemble the next list from what it received and what it made. Per input the runners then move lists by
index (or pass them on untouched in a plain chain) instead of building and filtering dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.pipeline.stage import Array


class Wired(Protocol):
    """What routing needs of a stage: its name and the tensor names it reads and makes."""

    @property
    def name(self) -> str: ...

    @property
    def input_names(self) -> list[str]: ...

    @property
    def output_names(self) -> list[str]: ...


class PipelineError(TpuplanError):
    """A stage failed or timed out, or the pipeline was stopped; `stage` and `seq` say where, when known."""

    def __init__(self, message: str, *, stage: str | None = None, seq: int | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.seq = seq


def plan_routing(stages: Sequence[Wired], outputs: list[str]) -> tuple[list[str], list[set[str]]]:
    """Names the caller must push, and for each stage the names still needed after it (drop the rest)."""
    producer: dict[str, int] = {}
    for i, stage in enumerate(stages):
        for n in stage.output_names:
            if n in producer:
                other = stages[producer[n]].name
                raise PipelineError(f"tensor {n!r} is produced by both stage {other!r} and {stage.name!r}")
            producer[n] = i
    external: list[str] = []
    for i, stage in enumerate(stages):
        for n in stage.input_names:
            p = producer.get(n, -1)
            if p >= i:
                msg = f"stage {stage.name!r} needs tensor {n!r}, made only by the later {stages[p].name!r}"
                raise PipelineError(msg, stage=stage.name)
            if p < 0 and n not in external:
                external.append(n)
    external += [n for n in outputs if n not in producer and n not in external]
    keep: list[set[str]] = []
    needed = set(outputs)
    for stage in reversed(stages):
        keep.insert(0, set(needed))
        needed |= set(stage.input_names)
    return external, keep


Picker = Callable[[list[Array]], list[Array]]
Assembler = Callable[[list[Array], list[Array]], list[Array]]


def _picker(take: list[int], n_in: int) -> Picker:
    if take == list(range(n_in)):
        return lambda values: values  # the stage reads exactly what arrives, in order
    return lambda values: [values[k] for k in take]


def _assembler(pairs: list[tuple[int, int]], n_out: int) -> Assembler:
    """How the next boundary's list is made: (0, k) = the k-th value received, (1, k) = the k-th output."""
    if pairs == [(1, k) for k in range(n_out)]:
        return lambda incoming, outputs: outputs  # a plain chain: the outputs are the next list
    if all(src == 1 for src, _ in pairs):
        ks = [k for _, k in pairs]
        return lambda incoming, outputs: [outputs[k] for k in ks]
    return lambda incoming, outputs: [(outputs if src else incoming)[k] for src, k in pairs]


@dataclass(frozen=True)
class Route:
    """One stage's wiring: the names carried in and out, the positions (`take`: its inputs among the
    carried values; `pairs`: (0, k) = the k-th carried value, (1, k) = its k-th output, for each value
    carried out) and the two functions made from them that move values."""

    carried_in: list[str]
    carried_out: list[str]
    take: list[int]
    pairs: list[tuple[int, int]]
    pick: Picker
    assemble: Assembler


def routes(stages: Sequence[Wired], external: list[str], keep: list[set[str]], outputs: list[str]) -> list[Route]:
    """Per stage: pick its inputs from the carried list, assemble the next one (the last: `outputs`)."""
    carried = list(external)
    out: list[Route] = []
    for i, stage in enumerate(stages):
        made = list(stage.output_names)
        if i == len(stages) - 1:
            nxt = list(outputs)
        else:
            nxt = [n for n in carried if n in keep[i]] + [n for n in made if n in keep[i] and n not in carried]
        pairs = [(0, carried.index(n)) if n in carried else (1, made.index(n)) for n in nxt]
        take = [carried.index(n) for n in stage.input_names]
        out.append(Route(carried, nxt, take, pairs, _picker(take, len(carried)), _assembler(pairs, len(made))))
        carried = nxt
    return out


def check_stages(names: list[str], outputs: list[str], queue_size: int, stage_timeout_s: float | None) -> None:
    """The pipeline's arguments, checked the same way for every runner."""
    for bad, msg in [
        (not names, "a pipeline needs at least one stage"),
        (len(set(names)) != len(names), f"stage names must be unique, got {names}"),
        (not outputs or len(set(outputs)) != len(outputs), f"model_outputs must be distinct names, not {outputs}"),
        (queue_size < 1, f"queue_size must be at least 1, got {queue_size}"),
        (stage_timeout_s is not None and not stage_timeout_s > 0, f"bad stage_timeout_s {stage_timeout_s}"),
    ]:
        if bad:
            raise PipelineError(msg)


def check_copies(copies: Sequence[Sequence[Wired]]) -> None:
    """Copies of one stage must be interchangeable: the same name and the same tensors in and out."""
    for group in copies:
        if not group:
            raise PipelineError("a stage needs at least one runner")
        first = group[0]
        for other in group[1:]:
            if (other.name, list(other.input_names), list(other.output_names)) != (
                first.name,
                list(first.input_names),
                list(first.output_names),
            ):
                raise PipelineError(f"the copies of stage {first.name!r} differ in name or tensors", stage=first.name)
