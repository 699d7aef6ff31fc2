"""A plan used on its model (`plan split`, `plan verify`) must be what the cost model gives for its cuts."""

from __future__ import annotations

from tpuplan.compat import zip_strict
from tpuplan.planner.costs import Goal
from tpuplan.planner.plan import Plan, StagePlan
from tpuplan.planner.plan_build import evaluate
from tpuplan.planner.plan_v1 import MIGRATED_NOTE
from tpuplan.profiles.build import build_profile
from tpuplan.profiles.errors import TpuplanError
from tpuplan.profiles.model import MeasuredStage
from tpuplan.profiles.tflite.reader import LoadedModel

STAGE_FACTS = (
    "n_ops",
    "tpu_ops",
    "param_bytes",
    "bytes_in",
    "bytes_out",
    "predicted_onchip_bytes",
    "predicted_offchip_bytes",
    "fits_on_chip",
)


def check_plan_matches(plan: Plan, loaded: LoadedModel) -> None:
    """A plan used on its model must be what the cost model gives for its cuts on its devices and host.

    A plan checks its own sums when it is read; this catches what only the model can show: stages moved
    with their cuts but not their numbers, or a device spec edited after solving. A plan from a measured
    profile is compared on the facts that need no measurement (ops, bytes, on-chip memory).
    """
    if plan.model.sha256 != loaded.sha256:
        raise TpuplanError(
            f"{loaded.path}: the plan is for model sha256 {plan.model.sha256}, but this model has "
            f"sha256 {loaded.sha256}"
        )
    profile = build_profile(loaded, plan.devices[0], plan.host)
    kept = [  # the invokes the plan keeps as measured are its own facts: priced as they are
        MeasuredStage(
            device=s.device, host=plan.host.name, first_op=s.first_op, last_op=s.last_op, invoke_us=s.measured_invoke_us
        )
        for s in plan.stages
        if s.measured_invoke_us is not None
    ]
    profile = profile.model_copy(update={"measured_stages": kept, "state": list(plan.state)})  # --state as planned
    if len(profile.ops) != plan.n_ops:
        raise TpuplanError(f"{loaded.path}: the plan has {plan.n_ops} ops, this model {len(profile.ops)}")
    if MIGRATED_NOTE in plan.notes:
        return  # a schema-1 plan: its numbers are the first cost model's, only its cuts are used
    again = evaluate(
        profile,
        plan.devices,
        plan.cuts,
        plan.host,
        Goal(plan.goal.objective, plan.goal.batch),
        [s.copies for s in plan.stages],
    )
    keys = STAGE_FACTS if plan.profile_source == "measured" else tuple(StagePlan.model_fields)
    for mine, fresh in zip_strict(plan.stages, again.stages):
        for key in keys:
            if getattr(mine, key) != getattr(fresh, key):
                raise TpuplanError(
                    f"{loaded.path}: the plan's stage {mine.index} has {key} {getattr(mine, key)}, but this model on "
                    f"the plan's devices and host gives {getattr(fresh, key)} for cuts {plan.cuts}: the plan was "
                    "edited after it was made (or made by another version of the cost model); solve again"
                )
