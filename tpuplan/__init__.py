"""tpuplan: optimal pipeline segmentation of a TFLite model over several Coral Edge TPUs.

Subpackages: `tpuplan.profiles` (model -> profile, cost models, calibration), `tpuplan.planner`
(profile -> plan), `tpuplan.runtime` (plan -> segments -> run -> report), `tpuplan.cli` (the `plan`
command). The first three are the repository's top-level folders of those names.
"""

from tpuplan.profiles.errors import TpuplanError

__all__ = ["TpuplanError"]
__version__ = "0.2.0"
