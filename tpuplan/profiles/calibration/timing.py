"""Calibration, part 2: the time parameters, fitted jointly to the single-TPU sweeps and the pipelines.

The fit evaluates the cost formula itself (`profiles.pricing.formula`), not a copy of it. Once the
caching is fixed (`profiles.calibration.memory`), every term of a measured stage is linear in the
parameters: the device's (invoke overhead, per padded MMAC, per KiB of conv output, link in/out per KiB,
streaming per KiB), the runner's (stage_us, stream_extra_us) and the one-offs (stream_cold_us, upload
per KiB, start_us); evaluated on linear forms they give their coefficients once. Two things are not
linear: the serialized share (a coefficient x a part) and the period (a max over the bounds). The fit
evaluates them on dual numbers at every step of a Gauss-Newton descent: linearise at the current
parameters, solve a non-negative least-squares problem, step back while the loss grows, repeat until
nothing moves.

The loss is soft-L1 on relative errors, each file weighing the same (1/sqrt(rows) per row), so that
one glitch (conv_profiling F=242) does not pull the fit; it is minimised by reweighting (IRLS). A weak
prior pulls the few parameters that these data cannot separate (start-up against per-stage work from
batch 1 alone; the first-inference upload against pycoral's stage_us) towards physical guesses; the
research that chose them is /work/research/hostmodel/FINDINGS.md (sections 2 and 6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tpuplan.compat import zip_strict
from tpuplan.profiles.calibration.forms import Dual, Lin, stack
from tpuplan.profiles.calibration.paramspace import ParamSpace
from tpuplan.profiles.model import OpProfile
from tpuplan.profiles.pricing import formula, pipeline_formula

F64 = npt.NDArray[np.float64]
KIB = formula.KIB
SOFT_SCALE = 0.02  # soft-L1 scale of a weighted relative residual
PRIOR_WEIGHT = 0.1
MAX_ROUNDS = 200


@dataclass(frozen=True)
class RowTerms:
    """One measured row: the formula's terms of each of its stages as linear forms in the parameters, the
    device and host that ran it, and how (runner False: one invoke(), no runner)."""

    stages: list[dict[str, Any]]
    device: str
    host: str
    runner: bool
    batch: int
    measured_us: float
    weight: float  # every source weighs the same: 1/sqrt(its rows)


def stage_terms(
    space: ParamSpace,
    device: str,
    host: str,
    ops: Sequence[tuple[OpProfile, int]],
    tpu: Sequence[bool],
    streamed: Sequence[bool],
    q: Mapping[str, float],
    tile: int,
) -> dict[str, Any]:
    """The formula's terms of one stage as linear forms: the pricer's stage quantities `q`, with the op-price
    sums (the device's ops and its streamed layers) as linear forms of the fitted coefficients
    (`formula.DEVICE_OP_PRICE`, `STREAM_OP_PRICE`, each layer streamed once per tile of its output)."""
    compute: Any = 0.0
    spill: Any = 0.0
    for (op, pixels), on_tpu, streams in zip_strict(ops, tpu, streamed):
        if not on_tpu:
            continue
        cost = space.op_coefficients(device, op.op_class)
        passes = formula.stream_passes(pixels, tile)
        per_op = {
            "count": 1.0,
            "mmac": op.tpu_macs / 1e6,
            "out_kib": op.output_bytes / KIB,
            "stream_kib": op.cached_bytes / KIB * passes,
        }
        compute = compute + formula.op_price(formula.DEVICE_OP_PRICE, cost, per_op)
        if streams:
            spill = spill + formula.op_price(formula.STREAM_OP_PRICE, cost, per_op)
    return formula.stage_terms(space.coefficients(device, host), {**q, "compute": compute, "spill": spill})


COMPOSITION = (
    *(name for name, _ in formula.SERIALIZED),
    pipeline_formula.PIPELINE_START,
)  # coefficients past the terms


class TimeModel:
    """Every row at once: predicted time and its derivatives at any parameters, as the pricer and the
    planner's `totals` compute them (before their rounding to whole microseconds), by evaluating the cost
    formula itself on the rows' linear forms (`calibration.forms`)."""

    def __init__(self, space: ParamSpace, rows: Sequence[RowTerms]) -> None:
        self.space, n, k = space, space.n, max(len(r.stages) for r in rows)
        zero = Lin.const(n, 0.0)
        self.terms = {
            t.name: np.array([stack([*(s[t.name] for s in r.stages), *[zero] * (k - len(r.stages))], n) for r in rows])
            for t in formula.ALL_TERMS
        }
        self.coefs = {
            name: stack([space.coefficients(r.device, r.host)(name) for r in rows], n)[:, None, :]
            for name in COMPOSITION
        }
        self.k = k
        self.single = np.array([not r.runner for r in rows])
        self.batch = np.array([r.batch for r in rows], dtype=np.float64)
        self.y = np.array([r.measured_us for r in rows])
        self.w = np.array([r.weight for r in rows])

    def used(self) -> npt.NDArray[np.bool_]:
        """The parameters that some row depends on (the others cannot be fitted here)."""
        arrays = [*self.terms.values(), *self.coefs.values()]
        return np.asarray(np.any([np.any(a[..., :-1] != 0, axis=(0, 1)) for a in arrays], axis=0))

    def evaluate(self, theta: F64) -> tuple[F64, F64]:
        """(predicted us per row, d predicted / d theta): the formula's stage values, pipeline and time
        per input of a batch, or one invoke() (the invoke part of stage 0) for a single-TPU row."""
        terms = {name: Dual.at(arr, theta) for name, arr in self.terms.items()}
        coefs = {name: Dual.at(arr, theta) for name, arr in self.coefs.items()}
        values = formula.stage_values(terms, coefs.__getitem__)
        stages = [{key: v[:, j] for key, v in values.items()} for j in range(self.k)]
        start = coefs[pipeline_formula.PIPELINE_START][:, 0]
        pipe = pipeline_formula.pipeline(stages, None, start, Dual.maximum)
        per_input = pipeline_formula.per_input(pipe.period, pipe.latency, pipe.oneoff, self.batch)  # type: ignore[arg-type]
        single = formula.invoke_part(terms)[:, 0]
        out = Dual.where(self.single, single, per_input)
        return out.v, out.g


def nnls(a: F64, b: F64) -> F64:
    """min |a x - b| subject to x >= 0 (Lawson-Hanson active set); deterministic."""
    n = a.shape[1]
    passive, x = np.zeros(n, dtype=bool), np.zeros(n)
    for _ in range(10 * n):
        w = a.T @ (b - a @ x)
        free = ~passive & (w > 1e-12 * max(1.0, float(np.abs(w).max(initial=0.0))))
        if not free.any():
            break
        passive[int(np.argmax(np.where(free, w, -np.inf)))] = True
        for _ in range(10 * n):
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            x = x + float(np.min(x[neg] / (x[neg] - z[neg]))) * (z - x)
            passive &= x > 1e-15
    return x


def bounded_lsq(a: F64, b: F64, upper: F64) -> F64:
    """min |a x - b| subject to 0 <= x <= upper: non-negative least squares on scaled columns, holding
    any parameter that overshoots its upper bound there and solving again."""
    norms = np.maximum(np.linalg.norm(a, axis=0), 1e-300)
    at_top = np.zeros(a.shape[1], dtype=bool)
    x = np.zeros(a.shape[1])
    for _ in range(a.shape[1] + 1):
        free = ~at_top
        x[at_top] = upper[at_top]
        x[free] = nnls(a[:, free] / norms[free], b - a[:, at_top] @ upper[at_top]) / norms[free]
        over = free & (x > upper)
        if not over.any():
            break
        at_top |= over
    return np.minimum(x, upper)


def _prior_rows(space: ParamSpace, free: npt.NDArray[np.bool_] | None = None) -> tuple[F64, F64]:
    """The weak priors as extra least-squares rows: weight / scale x (param - value or - tied param), one
    for each parameter being fitted (a parameter held fixed pulls nothing towards itself)."""
    rows, rhs = [], []
    for i, p in enumerate(space.params):
        if p.prior is None or (free is not None and not free[i]):
            continue
        value, scale = p.prior
        row = np.zeros(space.n)
        row[i] = PRIOR_WEIGHT / scale
        if p.tie is not None:
            if p.tie not in space.index:
                continue  # tied to a parameter this fit does not have: no pull
            row[space.index[p.tie]] -= PRIOR_WEIGHT / scale
        rows.append(row)
        rhs.append(PRIOR_WEIGHT * value / scale)
    return np.array(rows).reshape(-1, space.n), np.array(rhs)


def _loss(model: TimeModel, theta: F64, prior: tuple[F64, F64], soft: float = SOFT_SCALE) -> float:
    pred, _ = model.evaluate(theta)
    z = np.square(model.w * (pred - model.y) / model.y / soft)
    return float(2 * soft**2 * np.sum(np.sqrt(1 + z) - 1) + np.sum(np.square(prior[0] @ theta - prior[1])))


def loss_of(model: TimeModel, theta: F64, free: npt.NDArray[np.bool_] | None = None) -> float:
    """The fit's loss at theta (soft-L1 relative error plus the priors): what tells two fits apart."""
    return _loss(model, theta, _prior_rows(model.space, free))


def fit_times(model: TimeModel, free: npt.NDArray[np.bool_], fixed: F64, soft: float = SOFT_SCALE) -> F64:
    """The parameters minimising the soft-L1 relative error (plus the priors) inside their plausible
    ranges: from the start values (`fixed` for those not `free`), Gauss-Newton steps on the linearised
    model with IRLS weights, halved while the loss grows. `soft`: the relative error past which a point
    counts less than squared (a large one: least squares)."""
    space = model.space
    low, high = space.bounds()
    theta = np.where(free, np.clip(space.init(), low, high), fixed)
    low, high, prior = np.where(free, low, fixed), np.where(free, high, fixed), _prior_rows(space, free)
    loss = _loss(model, theta, prior, soft)
    for _ in range(MAX_ROUNDS):
        pred, grad = model.evaluate(theta)
        scale = model.w / model.y
        irls = 1 / np.sqrt(np.sqrt(1 + np.square(scale * (pred - model.y) / soft)))  # sqrt of the weight
        a = np.vstack([(irls * scale)[:, None] * grad, prior[0]])
        b = np.concatenate([irls * scale * (model.y - pred + grad @ theta), prior[1]])
        step = np.zeros(space.n)
        rest = b - a[:, ~free] @ theta[~free] - a[:, free] @ low[free]  # x = low + y, 0 <= y <= high - low
        step[free] = low[free] + bounded_lsq(a[:, free], rest, high[free] - low[free]) - theta[free]
        for _ in range(30):
            new_loss = _loss(model, theta + step, prior, soft)
            if new_loss <= loss:
                break
            step = step / 2
        else:
            break
        theta, moved, loss = theta + step, float(np.max(np.abs(step) / np.maximum(np.abs(theta), 1.0))), new_loss
        if moved < 1e-10:
            break
    return theta
