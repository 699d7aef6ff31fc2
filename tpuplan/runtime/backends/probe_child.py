"""The probe's child process: allocate and invoke each model of a directory once, on zeros.

Run by `tpuplan.runtime.backends.probe` as `python -I probe_child.py DIR MODULE`, a plain script with no tpuplan
import, so that nothing in the working directory or the environment can stand in for it. MODULE is the
interpreter module the parent uses (e.g. ai_edge_litert.interpreter). Models are DIR/000000.tflite, ...;
for each, one line on stdout: `start K`, then `ok K` or `error K TYPE: first line of the message` (a
Python-level refusal such as an unresolved custom op: not a crash, the caller decides what it means).
A model is deleted before `ok` is printed, so heap damage shows in this process, not later in the parent.
"""

import gc
import importlib
import sys
from pathlib import Path

import numpy as np


def main(directory: Path, module_name: str) -> None:
    module = importlib.import_module(module_name)
    for path in sorted(directory.glob("*.tflite")):
        k = int(path.stem)
        print(f"start {k}", flush=True)
        try:
            interp = module.Interpreter(model_content=path.read_bytes(), num_threads=1)
            interp.allocate_tensors()
            for d in interp.get_input_details():
                if np.dtype(d["dtype"]) != np.object_:
                    interp.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
            interp.invoke()
            del interp
            gc.collect()
        except Exception as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            print(f"error {k} {type(exc).__name__}: {lines[0] if lines else 'no message'}", flush=True)
            continue
        print(f"ok {k}", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
