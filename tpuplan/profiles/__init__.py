"""Per-layer profiles of a TFLite model and the Edge TPU cost model."""

from tpuplan.profiles.errors import TpuplanError

__all__ = ["TpuplanError"]
