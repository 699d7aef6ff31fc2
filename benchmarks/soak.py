"""Soak: 100,000 small inputs through a 4-stage pipeline; every result must come back once, in order.

Four runs. `tagged`: four numpy stages pass each input's own sequence number along, so order and count
are checked exactly. `tflite`: a synthetic int8 FC model (profiles.synth) split into four real segment
interpreters; every pipelined output is compared with the unsplit model's output for the same input.
`tagged copies` and `tflite copies`: the same with stages replicated (copies 1, 3, 2, 1), each copy its
own thread and interpreter taking inputs in turn, copies that take random time so that inputs pass each
other inside a stage: every result must still come back once, right, and in push order.
Not run by CI (it takes a few minutes here).
Run: python -m benchmarks.soak [--inputs N]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import fmt_table, write_results
from tpuplan.profiles.synth import synth_fc
from tpuplan.profiles.tflite.reader import parse_model
from tpuplan.runtime.backends.registry import InterpreterStage
from tpuplan.runtime.pipeline.stage import FunctionStage
from tpuplan.runtime.pipeline.threads import THREAD_PREFIX, Pipeline
from tpuplan.runtime.split.cut import split_model

Array = np.ndarray[Any, Any]


COPIES = (1, 3, 2, 1)


def _tagged_stages(copies: tuple[int, ...] = (1, 1, 1, 1)) -> list[list[FunctionStage]]:
    """Stage i adds 10**i to the payload and keeps the tag: the result is a function of the tag alone. A
    replicated stage's copies sleep a random few microseconds now and then, so inputs overtake each other."""

    def step(i: int, seed: int) -> FunctionStage:
        src, dst = ("x" if i == 0 else f"a{i}"), ("y" if i == 3 else f"a{i + 1}")
        rng = np.random.default_rng(seed)

        def fn(d: dict[str, Array]) -> Array:
            if copies[i] > 1 and rng.random() < 0.01:
                time.sleep(float(rng.uniform(0, 0.002)))
            out: Array = d[src] + np.int64(10**i)
            return out

        return FunctionStage(f"s{i}", [src], [dst], fn)

    return [[step(i, 10 * i + j) for j in range(copies[i])] for i in range(4)]


def _run(stages: list[Any], outputs: list[str], feeds: list[dict[str, Array]]) -> tuple[list[dict[str, Array]], float]:
    start = time.perf_counter()
    with Pipeline(stages, model_outputs=outputs, queue_size=4) as pipe:
        results = pipe.run_all(feeds)
    return results, time.perf_counter() - start


def soak_tagged(n: int, copies: tuple[int, ...] = (1, 1, 1, 1)) -> dict[str, Any]:
    feeds = [{"x": np.array([i], dtype=np.int64)} for i in range(n)]
    results, wall = _run(list(_tagged_stages(copies)), ["y"], feeds)
    wrong = sum(1 for i, r in enumerate(results) if int(r["y"][0]) != i + 1111)
    return {
        "run": "tagged" + (" copies" if max(copies) > 1 else ""),
        "copies": list(copies),
        "inputs": n,
        "results": len(results),
        "wrong_or_out_of_order": wrong,
        "wall_s": round(wall, 2),
        "per_s": round(n / wall, 1),
    }


def soak_tflite(n: int, copies: tuple[int, ...] = (1, 1, 1, 1)) -> dict[str, Any]:
    data = synth_fc(64, depth=6, in_features=16, out_features=4, seed=1)
    loaded = parse_model(data, Path("soak_fc.tflite"))
    segments = split_model(loaded, [3, 6, 9])  # ops: quantize, (fc, tanh) x 6, fc, dequantize
    stages = [
        [InterpreterStage(f"seg{s.index}", s.data) for _ in range(r)] for s, r in zip(segments, copies, strict=True)
    ]
    whole = InterpreterStage("whole", data)
    rng = np.random.default_rng(0)
    in_name, out_name = whole.input_names[0], whole.output_names[0]
    feeds = [{in_name: rng.uniform(-1, 1, size=(1, 16)).astype(np.float32)} for _ in range(n)]
    reference = [whole.run(f)[out_name] for f in feeds]
    whole.close()
    results, wall = _run(list(stages), [out_name], feeds)
    wrong = sum(1 for r, ref in zip(results, reference, strict=False) if not np.array_equal(r[out_name], ref))
    distinct = len({ref.tobytes() for ref in reference})
    return {
        "run": "tflite" + (" copies" if max(copies) > 1 else ""),
        "copies": list(copies),
        "inputs": n,
        "results": len(results),
        "wrong_or_out_of_order": wrong,
        "distinct_outputs": distinct,
        "wall_s": round(wall, 2),
        "per_s": round(n / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=100_000)
    args = parser.parse_args()
    runs = [
        soak_tagged(args.inputs),
        soak_tflite(args.inputs),
        soak_tagged(args.inputs, COPIES),
        soak_tflite(args.inputs, COPIES),
    ]
    leaked = [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]
    head = ["run", "copies", "inputs", "results", "wrong or out of order", "wall s", "inputs/s"]
    rows: list[list[object]] = [
        [
            r["run"],
            "+".join(map(str, r["copies"])),
            r["inputs"],
            r["results"],
            r["wrong_or_out_of_order"],
            r["wall_s"],
            r["per_s"],
        ]
        for r in runs
    ]
    print(fmt_table(head, rows))
    lost = sum(r["inputs"] - r["results"] for r in runs)
    wrong = sum(r["wrong_or_out_of_order"] for r in runs)
    print(f"lost {lost}, wrong or out of order {wrong}, pipeline threads left {len(leaked)}")
    path = write_results(
        "soak", {"stages": 4, "runs": runs, "lost": lost, "wrong_or_out_of_order": wrong, "threads_left": len(leaked)}
    )
    print(f"wrote {path}")
    if lost or wrong or leaked:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
