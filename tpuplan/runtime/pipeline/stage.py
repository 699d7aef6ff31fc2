"""What a pipeline stage is: anything with `run(dict) -> dict` and `close()`.

Independent of any model format: an interpreter running a segment (runtime.backends.registry.InterpreterStage),
or a plain function (glue, tests, simulated stages of known duration). A stage may also offer
`run_arrays(list) -> list` (inputs and outputs positionally, in `input_names` / `output_names` order): the
pipeline then routes lists by precomputed positions instead of building dicts for every input.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from tpuplan.compat import zip_strict

Array = npt.NDArray[Any]
Tensors = dict[str, Array]


class StageRunner(Protocol):
    """One segment of the model. `run` is only ever called from one thread, one input at a time."""

    name: str
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, Array]) -> dict[str, Array]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StageSource:
    """A stage described rather than built: the segment's bytes, where they came from, its backend and
    device. Runners that build their interpreters elsewhere (a stage process, pycoral's runner) take these;
    the caller probes the bytes first (`runtime.backends.probe`)."""

    name: str
    content: bytes = field(repr=False)
    where: str
    backend: str = "cpu"
    device: str | None = None


class FunctionStage:
    """A stage around a callable: glue (argmax, casts), tests, simulated stages of known duration.

    `fn` gets the inputs by name and returns the outputs by name (or the bare array if there is one output).
    """

    def __init__(
        self,
        name: str,
        input_names: Sequence[str],
        output_names: Sequence[str],
        fn: Callable[[dict[str, Array]], Mapping[str, Array] | Array],
    ) -> None:
        self.name, self.input_names, self.output_names = name, list(input_names), list(output_names)
        self._fn = fn

    def run(self, inputs: dict[str, Array]) -> dict[str, Array]:
        out = self._fn(inputs)
        if isinstance(out, np.ndarray):
            if len(self.output_names) != 1:
                raise TypeError(f"got one array for {len(self.output_names)} outputs, return a dict")
            return {self.output_names[0]: out}
        return dict(out)

    def close(self) -> None:
        pass


ArrayFn = Callable[[list[Array]], list[Array]]


def array_runner(stage: StageRunner) -> ArrayFn:
    """The stage as a positional function: its own `run_arrays` when it has one, else `run` through a dict.

    A stage that leaves out one of its declared outputs fails with "output 'NAME' was not produced".
    """
    fast = getattr(stage, "run_arrays", None)
    if callable(fast):
        return fast  # type: ignore[no-any-return]
    in_names, out_names = list(stage.input_names), list(stage.output_names)

    def via_dict(values: list[Array]) -> list[Array]:
        out = stage.run(dict(zip_strict(in_names, values)))
        try:
            return [out[n] for n in out_names]
        except KeyError:
            missing = next(n for n in out_names if n not in out)
            raise ValueError(f"output {missing!r} was not produced") from None

    return via_dict
