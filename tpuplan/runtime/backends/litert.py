"""The LiteRT interpreter module, found once: ai-edge-litert first, tflite-runtime on older Coral hosts.

Its own module so that the probe, the Edge TPU delegate loader and the interpreter factory can all use
it without importing each other.
"""

from __future__ import annotations

from typing import Any

from tpuplan.profiles.errors import TpuplanError


def tflite_module() -> Any:
    """The module holding `Interpreter` and `load_delegate`."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:
            from tflite_runtime import interpreter
        except ImportError as exc:
            raise TpuplanError("no LiteRT interpreter: pip install ai-edge-litert (or tflite-runtime)") from exc
    return interpreter
