"""What a pipeline stage is: anything with `run(dict) -> dict` and `close()`.

Independent of any model format: an interpreter running a segment (runtime.backends.InterpreterStage),
or a plain function (glue, tests, simulated stages of known duration).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
Tensors = dict[str, Array]


class StageRunner(Protocol):
    """One segment of the model. `run` is only ever called from one thread, one input at a time."""

    name: str
    input_names: list[str]
    output_names: list[str]

    def run(self, inputs: dict[str, Array]) -> dict[str, Array]: ...

    def close(self) -> None: ...


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
