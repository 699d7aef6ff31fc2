"""How far a measured stage time may be from its prediction, and how many inputs a verify pushes, in a
module that imports nothing, so that `plan verify --help` shows the defaults without loading the
report's document models."""

from __future__ import annotations

TOLERANCE_FLOOR_US = 20.0  # an error this small (us) is within tolerance whatever its share
MAX_TOLERANCE = 10.0  # a relative error per stage: 10 = 1,000%; the flag and the report share this bound
DEFAULT_INPUTS = 50  # inputs a verify pushes when not told (random, or the first of --input)
MAX_VERIFY_INPUTS = 10_000  # inputs and outputs are kept in memory to compare with the unsplit model's
