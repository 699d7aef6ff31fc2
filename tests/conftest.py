"""Shared fixtures: the real models in ../shared/models are read in place, never copied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODELS = SHARED / "models"


def manifest() -> list[dict[str, object]]:
    path = MODELS / "MANIFEST.json"
    if not path.is_file():
        return []
    models: list[dict[str, object]] = json.loads(path.read_text())["models"]
    return models


def cpu_models() -> list[Path]:
    """CPU (not Edge TPU-compiled) models of the shared set that tpuplan accepts."""
    from profiles.errors import TpuplanError
    from profiles.tflite import load_model

    out = []
    for entry in manifest():
        path = MODELS / str(entry["path"])
        if entry.get("edgetpu_compiled"):
            continue
        try:
            load_model(path, allow_edgetpu=False)
        except TpuplanError:
            continue
        out.append(path)
    return out


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not MODELS.is_dir():
        pytest.skip(f"{MODELS} is absent: the shared model set is needed")
    return MODELS
