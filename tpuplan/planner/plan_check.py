"""A plan checked against itself: every predicted number must be what the cost formula makes of its
parts, so that a plan edited by hand (a time halved, a stage moved, copies changed) is refused by name.

A stage's values (T, S, V, O) are evaluated again from its terms with the plan's own device and host
(`formula.stage_values`); a term whose quantities the plan itself records (a fixed overhead, the streaming
flag, the boundary bytes, the on-chip bytes) is priced again too. The pipeline (period and what sets it,
latency, one-off, every bound, the intervals with copies, the objective) is `pipeline_formula.pipeline` again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tpuplan.planner.costs import Goal, throughput_per_s
from tpuplan.profiles.pricing import formula, pipeline_formula
from tpuplan.profiles.pricing.device import DeviceSpec
from tpuplan.profiles.pricing.host import HostSpec

if TYPE_CHECKING:
    from tpuplan.planner.plan import Plan, StagePlan

TERM_KEYS = frozenset(t.name for t in formula.ALL_TERMS)


def _whole(_: str, x: Any) -> int:
    return formula.whole_us(float(x))


def _known(s: StagePlan) -> dict[str, float]:
    """The stage quantities a plan records itself (see formula.STAGE_QUANTITIES)."""
    return {
        "one": 1.0,
        "streams": float(s.predicted_offchip_bytes > 0),
        "seg_kib": (s.bytes_in + s.bytes_out) / formula.KIB,
        "onchip_kib": s.predicted_onchip_bytes / formula.KIB,
        "in_loop": float(s.in_state_loop),
    }


def check_stage(s: StagePlan, dev: DeviceSpec, host: HostSpec) -> None:
    """A stage's values are what the formula makes of its terms with this device and host."""
    if s.tpu_ops > s.n_ops:
        raise ValueError(f"stage {s.index}: {s.tpu_ops} Edge TPU ops out of {s.n_ops}")
    if dev.backend == "cpu" and (s.tpu_ops or s.predicted_onchip_bytes or s.predicted_offchip_bytes):
        raise ValueError(f"stage {s.index} runs on a CPU device but claims Edge TPU ops or on-chip bytes")
    if s.fits_on_chip != (s.predicted_offchip_bytes == 0):
        raise ValueError(f"stage {s.index}: fits_on_chip disagrees with its {s.predicted_offchip_bytes} off-chip bytes")
    if set(s.predicted_terms) != TERM_KEYS:
        raise ValueError(f"stage {s.index}: predicted_terms must name the terms {sorted(TERM_KEYS)}")
    coef = formula.spec_coefficients(dev, host)
    known = _known(s)
    for term in formula.ALL_TERMS:
        if all(q in known for _, q in term.products):
            want = _whole(term.name, formula.term_value(term, coef, known))
            if s.predicted_terms[term.name] != want:
                raise ValueError(
                    f"stage {s.index}: term {term.name} is {s.predicted_terms[term.name]}, but the "
                    f"plan's device and host give {want}"
                )
    values = formula.stage_values(s.predicted_terms, coef, _whole, s.measured_invoke_us, known)
    if s.predicted_values != values:
        given = "its terms" if s.measured_invoke_us is None else f"its terms and measured invoke {s.measured_invoke_us}"
        raise ValueError(f"stage {s.index}: predicted_values are {s.predicted_values}, {given} give {values}")
    if s.predicted_us != values["time"]:
        raise ValueError(f"stage {s.index}: predicted_us is {s.predicted_us}, its terms add up to {values['time']}")
    interval = pipeline_formula.interval(values["time"], values["serial"], s.copies)
    if s.predicted_interval_us != interval:
        raise ValueError(
            f"stage {s.index}: predicted_interval_us is {s.predicted_interval_us}, but with "
            f"{s.copies} cop{'y' if s.copies == 1 else 'ies'} the formula gives {interval}"
        )


def check_pipeline(plan: Plan) -> None:
    """Period, what sets it, every bound, latency, one-off cost, throughput, batch time and objective."""
    stages = plan.stages
    start = _whole("start", plan.host.start_us)
    got = pipeline_formula.pipeline([s.predicted_values for s in stages], [s.copies for s in stages], start)
    fields = {
        "predicted_period_us": (plan.predicted_period_us, got.period),
        "period_bound": (plan.period_bound, got.bound),
        "predicted_bounds": (plan.predicted_bounds, got.bounds),
        "predicted_latency_us": (plan.predicted_latency_us, got.latency),
        "predicted_oneoff_us": (plan.predicted_oneoff_us, got.oneoff),
        "predicted_throughput_per_s": (plan.predicted_throughput_per_s, throughput_per_s(got.period)),
        "fits_on_chip": (plan.fits_on_chip, all(s.fits_on_chip for s in stages)),
    }
    for name, (have, want) in fields.items():
        if have != want:
            raise ValueError(f"{name} is {have}, but the stages give {want}")
    span = plan.predicted_range
    if span is not None and not (
        span.period_us.low <= got.period <= span.period_us.high
        and span.latency_us.low <= got.latency <= span.latency_us.high
    ):
        raise ValueError("predicted_range does not hold the plan's own period and latency")
    goal = Goal(plan.goal.objective, plan.goal.batch)
    per_input = (
        round(pipeline_formula.per_input(got.period, got.latency, got.oneoff, goal.batch), 1) if goal.batch else None
    )
    if plan.predicted_per_input_us != per_input:
        raise ValueError(f"predicted_per_input_us is {plan.predicted_per_input_us}, but the stages give {per_input}")
    objective = goal.objective_of(got.period, got.latency, got.oneoff)
    solver = plan.solver
    if solver.objective != objective or solver.best_bound > objective:
        raise ValueError(
            f"the solver's objective {solver.objective} (bound {solver.best_bound}) is not the plan's {objective}"
        )
    if solver.proven_optimal != (solver.status in ("OPTIMAL", "REFERENCE")):
        raise ValueError(f"solver status {solver.status} disagrees with proven_optimal {solver.proven_optimal}")
