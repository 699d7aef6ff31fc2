"""Google pycoral's C++ `PipelinedModelRunner` behind the `Pipeline` interface (`--runner pycoral`).

Only where Google's pycoral is installed (Coral's package repository; the PyPI package that is also
named pycoral is unrelated), imported when this runner is chosen and never before. Its interpreters come
from pycoral's own `make_interpreter` (Edge TPU stages) or tflite_runtime (CPU stages): the runner takes
their native handles, so they must be of the TFLite build pycoral was compiled against, not LiteRT's.

Two generations of its Python API exist: pycoral 1.x pushes a list in input order and pops a list, 2.x
pushes and pops dicts by tensor name; both are spoken. The C++ threads expose no per-stage times, so
`stats()` reports only counts (`timed=False`), and latency is measured from push to pop.
"""

from __future__ import annotations

import contextlib
import importlib
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from tpuplan.compat import zip_strict
from tpuplan.profiles.errors import TpuplanError
from tpuplan.runtime.backends.nativelog import one_line, quiet_native_logs
from tpuplan.runtime.pipeline.base import EMPTY, END, THREAD_PREFIX, PipelineBase, Result, _Marker
from tpuplan.runtime.pipeline.routing import PipelineError, check_stages
from tpuplan.runtime.pipeline.stage import Array, StageSource

_HINT = (
    "--runner pycoral needs Google's pycoral and tflite_runtime (Coral's package repository; the PyPI "
    "package named pycoral is a different project)"
)
_STOP = _Marker("stop")


def load_pycoral() -> tuple[ModuleType, ModuleType]:
    """pycoral's pipeline module and its Edge TPU utilities, or a one-line error saying what to install."""
    try:
        pipeline = importlib.import_module("pycoral.pipeline.pipelined_model_runner")
        edgetpu = importlib.import_module("pycoral.utils.edgetpu")
    except Exception as exc:  # a broken install may raise anything at import: still one line
        raise TpuplanError(f"{_HINT}: {type(exc).__name__}: {one_line(exc)}") from None
    if not hasattr(pipeline, "PipelinedModelRunner") or not hasattr(edgetpu, "make_interpreter"):
        raise TpuplanError(f"{_HINT}: the installed pycoral has no PipelinedModelRunner")
    return pipeline, edgetpu


def _interpreter(source: StageSource, edgetpu: ModuleType) -> Any:
    """An allocated interpreter of pycoral's TFLite build for one stage."""
    try:
        with quiet_native_logs():
            if source.backend == "edgetpu":
                interp = edgetpu.make_interpreter(source.content, device=source.device)
            else:
                interp = importlib.import_module("tflite_runtime.interpreter").Interpreter(
                    model_content=source.content, num_threads=1
                )
            interp.allocate_tensors()
    except ImportError as exc:
        raise TpuplanError(f"{_HINT}: {one_line(exc)}") from None
    except (ValueError, RuntimeError, OSError) as exc:
        raise TpuplanError(f"cannot create an interpreter for {source.where}: {one_line(exc)}") from None
    return interp


class PycoralPipeline(PipelineBase):
    """pycoral's runner: stages in its C++ threads; a helper thread pops results into a queue."""

    def __init__(
        self,
        sources: Sequence[StageSource],
        *,
        model_outputs: Sequence[str],
        queue_size: int = 2,
        stage_timeout_s: float | None = None,
    ) -> None:
        names, outs = [s.name for s in sources], list(model_outputs)
        check_stages(names, outs, queue_size, stage_timeout_s)
        pipeline, edgetpu = load_pycoral()
        interps = [_interpreter(s, edgetpu) for s in sources]
        stage_inputs = [[str(d["name"]) for d in it.get_input_details()] for it in interps]
        self._last_outputs = [str(d["name"]) for d in interps[-1].get_output_details()]
        early = [n for n in outs if n not in self._last_outputs]
        if early:
            raise PipelineError(
                f"pycoral's runner returns only the last stage's outputs, and model output "
                f"{early[0]!r} is made earlier: use --runner threads"
            )
        super().__init__(
            names,
            stage_inputs,
            stage_inputs[0],
            model_outputs=outs,
            queue_size=queue_size,
            stage_timeout_s=stage_timeout_s,
        )
        try:
            self._runner = pipeline.PipelinedModelRunner(interps)
        except (ValueError, RuntimeError) as exc:
            raise PipelineError(f"pycoral's runner refuses this split: {one_line(exc)}") from None
        self._runner.set_input_queue_size(queue_size)
        self._dict_api = isinstance(getattr(self._runner, "_input_types", None), dict)  # pycoral 2.x
        self._results: queue.SimpleQueue[Result | _Marker] = queue.SimpleQueue()
        self._pushed_at: deque[int] = deque()
        self._popper = threading.Thread(target=self._pop_all, name=f"{THREAD_PREFIX}-pycoral", daemon=True)
        self._threads.append(self._popper)
        self._popper.start()

    def _stats_timed(self) -> bool:
        return False

    def _has_room(self) -> bool:
        return True  # push blocks inside pycoral when its input queue is full; results keep draining

    def _submit(self, seq: int, values: list[Array], t_push_ns: int) -> bool:
        self._pushed_at.append(t_push_ns)
        request: Any = dict(zip_strict(self._external, values)) if self._dict_api else list(values)
        try:
            ok = self._runner.push(request)
        except (ValueError, RuntimeError) as exc:
            raise PipelineError(f"pycoral's runner refused input #{seq}: {one_line(exc)}", seq=seq) from None
        return ok is not False  # 1.x answers False once the runner has ended

    def _end(self) -> None:
        self._runner.push({} if self._dict_api else [])

    def _wake(self) -> None:
        self._results.put(_STOP)

    def _take(self, timeout: float) -> Result | _Marker:
        try:
            got = self._results.get(timeout=timeout)
        except queue.Empty:
            return EMPTY
        if isinstance(got, _Marker):
            self._results.put(got)  # the end (or a stop) stays visible to later pops
            return END if got is END else EMPTY
        return got

    def _pop_all(self) -> None:
        """Pop every result in order, until pycoral signals the end (an empty result)."""
        seq = 0
        try:
            while (out := self._runner.pop()) is not None and len(out) > 0:
                by_name = out if isinstance(out, dict) else dict(zip_strict(self._last_outputs, out))
                self._latencies_ns.append(time.perf_counter_ns() - self._pushed_at.popleft())
                for c in self._counters:
                    c.items += 1
                self._results.put((seq, [by_name[n] for n in self._outputs]))
                seq += 1
            self._results.put(END)
        except (ValueError, RuntimeError, KeyError, IndexError) as exc:
            self._fail(PipelineError(f"pycoral's runner failed on input #{seq}: {one_line(exc)}", seq=seq), exc)

    def join(self, timeout: float | None = None) -> bool:
        """After a stop, end pycoral's stream too, so that its threads and our popper finish."""
        if self._stop.is_set() and not self._closed:
            self._closed = True
            with contextlib.suppress(ValueError, RuntimeError):
                self._end()
        return super().join(timeout)
