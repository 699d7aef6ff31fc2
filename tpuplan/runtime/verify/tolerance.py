"""How far a measured stage time may be from its prediction, in a module that imports nothing, so
that `plan verify --help` shows the default without loading the report's document models."""

from __future__ import annotations

TOLERANCE_FLOOR_US = 20.0  # an error this small (us) is within tolerance whatever its share
