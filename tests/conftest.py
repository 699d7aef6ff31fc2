"""Shared fixtures: the real models in ../shared/models are read in place, never copied."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.common import MODELS, SHARED
from benchmarks.common import cpu_model_paths as cpu_models
from benchmarks.common import shared_manifest as manifest

__all__ = ["MODELS", "SHARED", "cpu_models", "manifest"]


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not MODELS.is_dir():
        pytest.skip(f"{MODELS} is absent: the shared model set is needed")
    return MODELS
