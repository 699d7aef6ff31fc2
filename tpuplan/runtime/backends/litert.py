"""The TFLite interpreter module, found once: tflite-runtime where installed, else ai-edge-litert.

tflite-runtime comes first because it is only there when chosen: `pip install tpuplan[device]` on a Coral
host, or Coral's own packages, whose libedgetpu delegate and Google's pycoral are built against it.
ai-edge-litert is always installed (its .tflite schema is how models are read and cut) and is the
interpreter everywhere else. Its own module so that the probe, the Edge TPU delegate loader and the
interpreter factory can all use it without importing each other.
"""

from __future__ import annotations

import importlib
from typing import Any

from tpuplan.profiles.errors import TpuplanError

INTERPRETER_MODULES = ("tflite_runtime.interpreter", "ai_edge_litert.interpreter")


def tflite_module() -> Any:
    """The module holding `Interpreter` and `load_delegate`."""
    for name in INTERPRETER_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise TpuplanError("no TFLite interpreter: pip install ai-edge-litert (or tflite-runtime on a Coral host)")


def interpreter_name() -> str:
    """Which interpreter runs the stages, with its version, e.g. 'tflite_runtime 2.14.0': reports say it,
    as a time measured with one build is not a time of another."""
    module = tflite_module()
    package = module.__name__.split(".")[0]
    version = getattr(importlib.import_module(package), "__version__", "?")
    return f"{package} {version}"
