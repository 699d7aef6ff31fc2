"""tpuplan: optimal pipeline segmentation of a TFLite model over several Coral Edge TPUs.

What a build script needs is here, each name imported on first use (PEP 562), so that `import tpuplan`
costs nothing until a verb is called (the `plan` command starts from this package too):

    import tpuplan
    model = tpuplan.load_model(Path("model.tflite"))
    profile = tpuplan.build_profile(model, tpuplan.preset("edgetpu-usb"))
    plan = tpuplan.solve(profile, 4)
    manifest = tpuplan.write_split(model, Path("segments"), plan=plan)
    report = tpuplan.verify(plan, model)

The layers behind it: `tpuplan.profiles` (model -> profile, cost models, calibration), `tpuplan.planner`
(profile -> plan), `tpuplan.runtime` (plan -> segments -> run -> report), `tpuplan.cli` (`plan`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"  # the one place: pyproject.toml reads it, `plan --version` prints it

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    # the verbs, in the order a build uses them
    "load_model": "tpuplan.profiles.tflite.reader",
    "build_profile": "tpuplan.profiles.build",
    "measure_profile": "tpuplan.runtime.measure",
    "solve": "tpuplan.planner.solve",
    "solve_auto": "tpuplan.planner.solve",
    "solve_with_copies": "tpuplan.planner.solve",
    "evaluate": "tpuplan.planner.plan_build",
    "compare": "tpuplan.planner.baselines",
    "write_split": "tpuplan.runtime.split.write",
    "load_split": "tpuplan.runtime.split.manifest",
    "run_split": "tpuplan.runtime.run",
    "verify": "tpuplan.runtime.verify.check",
    # devices, hosts and goals
    "preset": "tpuplan.profiles.pricing.device",
    "resolve_device": "tpuplan.profiles.pricing.device",
    "host_preset": "tpuplan.profiles.pricing.host",
    "resolve_host": "tpuplan.profiles.pricing.host",
    "Goal": "tpuplan.planner.costs",
    "RunOptions": "tpuplan.runtime.run",
    # the documents, and reading and writing them
    "LoadedModel": "tpuplan.profiles.tflite.reader",
    "Profile": "tpuplan.profiles.model",
    "Plan": "tpuplan.planner.plan",
    "Comparison": "tpuplan.planner.comparison",
    "SegmentManifest": "tpuplan.runtime.split.manifest",
    "RunResult": "tpuplan.runtime.run",
    "VerifyReport": "tpuplan.runtime.verify.report",
    "DeviceSpec": "tpuplan.profiles.pricing.device",
    "HostSpec": "tpuplan.profiles.pricing.host",
    "load_profile": "tpuplan.profiles.model",
    "load_plan": "tpuplan.planner.plan",
    "load_report": "tpuplan.runtime.verify.report",
    "write_doc": "tpuplan.profiles.docio",
    # the one exception family (NoPlanError: no plan meets the request)
    "TpuplanError": "tpuplan.profiles.errors",
    "NoPlanError": "tpuplan.planner.solve",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use and kept."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tpuplan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # the same names for type checkers and editors (`X as X`: re-exported); tests/test_api.py
    # keeps this list equal to _EXPORTS
    from tpuplan.planner.baselines import compare as compare
    from tpuplan.planner.comparison import Comparison as Comparison
    from tpuplan.planner.costs import Goal as Goal
    from tpuplan.planner.plan import Plan as Plan
    from tpuplan.planner.plan import load_plan as load_plan
    from tpuplan.planner.plan_build import evaluate as evaluate
    from tpuplan.planner.solve import NoPlanError as NoPlanError
    from tpuplan.planner.solve import solve as solve
    from tpuplan.planner.solve import solve_auto as solve_auto
    from tpuplan.planner.solve import solve_with_copies as solve_with_copies
    from tpuplan.profiles.build import build_profile as build_profile
    from tpuplan.profiles.docio import write_doc as write_doc
    from tpuplan.profiles.errors import TpuplanError as TpuplanError
    from tpuplan.profiles.model import Profile as Profile
    from tpuplan.profiles.model import load_profile as load_profile
    from tpuplan.profiles.pricing.device import DeviceSpec as DeviceSpec
    from tpuplan.profiles.pricing.device import preset as preset
    from tpuplan.profiles.pricing.device import resolve_device as resolve_device
    from tpuplan.profiles.pricing.host import HostSpec as HostSpec
    from tpuplan.profiles.pricing.host import host_preset as host_preset
    from tpuplan.profiles.pricing.host import resolve_host as resolve_host
    from tpuplan.profiles.tflite.reader import LoadedModel as LoadedModel
    from tpuplan.profiles.tflite.reader import load_model as load_model
    from tpuplan.runtime.measure import measure_profile as measure_profile
    from tpuplan.runtime.run import RunOptions as RunOptions
    from tpuplan.runtime.run import RunResult as RunResult
    from tpuplan.runtime.run import run_split as run_split
    from tpuplan.runtime.split.manifest import SegmentManifest as SegmentManifest
    from tpuplan.runtime.split.manifest import load_split as load_split
    from tpuplan.runtime.split.write import write_split as write_split
    from tpuplan.runtime.verify.check import verify as verify
    from tpuplan.runtime.verify.report import VerifyReport as VerifyReport
    from tpuplan.runtime.verify.report import load_report as load_report
