"""Calibration, part 2: the time parameters, fitted jointly to the single-TPU sweeps and the pipelines.

Once the caching is fixed (`profiles.calibration.memory`), every stage quantity of `profiles.pricing.stagecost` is
linear in the parameters: the device part (invoke overhead, per padded MMAC, per KiB of conv output,
link in/out per KiB, streaming per KiB), the runner part (stage_us, stream_extra_us) and the one-offs
(stream_cold_us, upload per KiB, start_us). Two things are not: the serialized share S = serialized x
runner + serialized_device x device (a product of two parameters) and the period P = max(max T, sum S,
sum V). Both are handled by Gauss-Newton: linearise at the current parameters, solve a non-negative
least-squares problem, step back while the loss grows, repeat until nothing moves.

The loss is soft-L1 on relative errors, each file weighing the same (1/sqrt(rows) per row), so that
one glitch (conv_profiling F=242) does not pull the fit; it is minimised by reweighting (IRLS). A weak
prior pulls the few parameters that these data cannot separate (start-up against per-stage work from
batch 1 alone; the first-inference upload against pycoral's stage_us) towards physical guesses; the
research that chose them is /work/research/hostmodel/FINDINGS.md (sections 2 and 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tpuplan.profiles.model import OpProfile
from tpuplan.profiles.pricing.device import MAX_RATE, MAX_US, OpClass
from tpuplan.profiles.pricing.host import HostSpec

F64 = npt.NDArray[np.float64]
KIB = 1024
SOFT_SCALE = 0.02  # soft-L1 scale of a weighted relative residual
PRIOR_WEIGHT = 0.1
MAX_ROUNDS = 200
COVERED: tuple[OpClass, ...] = ("fc", "conv")  # op classes the measurements time: their costs are fitted


@dataclass(frozen=True)
class Param:
    """One fitted number: where it goes (`group` is "device", "link", an op class or a runner's name),
    its start value, its upper bound and an optional weak prior (value, scale), pulled towards the value
    of another parameter instead when `tie` names it."""

    group: str
    field: str
    init: float
    upper: float = MAX_RATE
    prior: tuple[float, float] | None = None
    tie: tuple[str, str] | None = None


DEVICE_PARAMS = (
    Param("device", "invoke_overhead_us", 100.0, upper=MAX_US),
    Param("fc", "us_per_mmac", 13.0),
    Param("conv", "us_per_mmac", 0.7),
    Param("conv", "us_per_kib_act", 0.2, prior=(0.0, 5.0)),
    Param("link", "in_us_per_kib", 10.0),
    Param("link", "out_us_per_kib", 9.0),
    Param("fc", "stream_us_per_kib", 2.7),
    Param("conv", "stream_us_per_kib", 10.0),
    # the same bytes over the same link as streamed FC weights (research section 6: not identifiable)
    Param("link", "upload_us_per_kib", 2.7, prior=(0.0, 10.0), tie=("fc", "stream_us_per_kib")),
)


def runner_params(name: str, base: HostSpec) -> tuple[Param, ...]:
    """What is fitted for a runner. One that does its host work under a lock (`serialized` > 0: Python
    threads under the interpreter lock, which also start inside the timed region) gets the per-stage work,
    the serialized share of the device time, the start-up and the streaming extras; a runner without
    one (pycoral's C++ threads, built before the clock) only its per-stage work. The structural fields
    (serialized, stage_us_per_kib, the bus) stay the base's."""
    if base.serialized > 0:
        return (
            Param(name, "stage_us", 200.0, upper=MAX_US),
            Param(name, "serialized_device", 0.3, upper=1.0),
            Param(name, "start_us", 50.0, upper=MAX_US, prior=(50.0, 50.0)),
            Param(name, "stream_extra_us", 0.0, upper=MAX_US, prior=(0.0, 3000.0)),
            Param(name, "stream_cold_us", 0.0, upper=MAX_US, prior=(0.0, 3000.0)),
        )
    return (Param(name, "stage_us", 50.0, upper=MAX_US, prior=(50.0, 500.0)),)


class ParamSpace:
    """The fitted parameters in a fixed order, with the fixed values of the runner fields not fitted."""

    def __init__(self, runners: Sequence[tuple[str, HostSpec]]) -> None:
        self.params = list(DEVICE_PARAMS) + [p for name, base in runners for p in runner_params(name, base)]
        self.index = {(p.group, p.field): i for i, p in enumerate(self.params)}
        self.hosts = dict(runners)
        self.n = len(self.params)

    def unit(self, group: str, field: str, value: float = 1.0) -> F64:
        """Coefficients of `value` x that parameter (zero when it is not fitted)."""
        out = np.zeros(self.n)
        if (group, field) in self.index:
            out[self.index[(group, field)]] = value
        return out

    def fixed(self, runner: str, field: str) -> float:
        """A runner field's value when it is not fitted (the base's), else 0 (it is in the coefficients)."""
        return 0.0 if (runner, field) in self.index else float(getattr(self.hosts[runner], field))

    def init(self) -> F64:
        return np.array([p.init for p in self.params])

    def upper(self) -> F64:
        return np.array([p.upper for p in self.params])


@dataclass(frozen=True)
class StageTerms:
    """One stage's quantities of `profiles.pricing.stagecost` as linear forms in the parameters (coefficients over
    the fitted ones, plus a constant: the fixed fields and the costs priced by the base specs)."""

    device: F64  # invoke overhead + compute + streaming + link
    device_const: float  # Edge TPU ops of classes not fitted, at the base device's prices
    host_ops: float  # ops the host runs, at the host's own prices
    runner: F64  # runner work: stage_us + stage_us_per_kib x boundary KiB
    runner_const: float
    extra: F64  # stream_extra_us when a layer streams
    extra_const: float
    oneoff: F64  # stream_cold_us when a layer streams + upload of the cached bytes (fresh runners)
    oneoff_const: float
    bus: float


@dataclass(frozen=True)
class RowTerms:
    """One measured row: its stages and how it was run (runner None: one invoke(), no runner)."""

    stages: list[StageTerms]
    runner: str | None
    batch: int
    measured_us: float
    weight: float  # 1/sqrt(rows of its file): every file weighs the same


def stage_terms(
    space: ParamSpace,
    ops: Sequence[OpProfile],
    tpu: Sequence[bool],
    streamed: Sequence[bool],
    row: dict[str, int],
    runner: str | None,
) -> StageTerms:
    """The linear forms of one stage, from its priced ops, which of them the Edge TPU runs and streams,
    and the pricer's row entry (boundary bytes, host ops, on-chip bytes, bus time)."""
    u = space.unit
    device = (
        u("device", "invoke_overhead_us")
        + u("link", "in_us_per_kib", row["tpu_in"] / KIB)
        + u("link", "out_us_per_kib", row["tpu_out"] / KIB)
    )
    const = 0.0
    for op, on_tpu, streams in zip(ops, tpu, streamed, strict=True):
        if on_tpu and op.op_class in COVERED:
            device += u(op.op_class, "us_per_mmac", op.tpu_macs / 1e6) + u(
                op.op_class, "us_per_kib_act", op.output_bytes / KIB
            )
            device += u(op.op_class, "stream_us_per_kib", op.cached_bytes / KIB) if streams else 0.0
        elif on_tpu:
            const += op.tpu_us + (op.stream_us if streams else 0)
    zero, flag = np.zeros(space.n), row["off"] > 0
    if runner is None:
        return StageTerms(device, const, row["host_ops"], zero, 0.0, zero, 0.0, zero, 0.0, 0.0)
    host, kib = space.hosts[runner], (row["seg_in"] + row["seg_out"]) / KIB
    upload = u("link", "upload_us_per_kib", row["on"] / KIB) if host.fresh_upload else zero
    return StageTerms(
        device,
        const,
        row["host_ops"],
        u(runner, "stage_us"),
        space.fixed(runner, "stage_us") + host.stage_us_per_kib * kib,
        u(runner, "stream_extra_us") * flag,
        space.fixed(runner, "stream_extra_us") * flag,
        u(runner, "stream_cold_us") * flag + upload,
        space.fixed(runner, "stream_cold_us") * flag,
        row["bus"],
    )


class TimeModel:
    """Every row at once: predicted time and its derivatives at any parameters, as the pricer and
    `planner.costs.totals` compute them (before their rounding to whole microseconds)."""

    def __init__(self, space: ParamSpace, rows: Sequence[RowTerms]) -> None:
        self.space, n, k = space, space.n, max(len(r.stages) for r in rows)
        pad = [r.stages + [r.stages[0]] * (k - len(r.stages)) for r in rows]
        self.valid = np.array([[j < len(r.stages) for j in range(k)] for r in rows])

        def stack(key: str) -> F64:
            return np.array([[getattr(s, key) for s in st] for st in pad], dtype=np.float64)

        self.dev, self.dev_c, self.host = stack("device"), stack("device_const"), stack("host_ops")
        self.run, self.run_c = stack("runner"), stack("runner_const")
        self.t_coef = self.dev + self.run + stack("extra")
        self.t_c = self.dev_c + self.host + self.run_c + stack("extra_const")
        self.one, self.one_c, self.bus = stack("oneoff"), stack("oneoff_const"), stack("bus")
        self.single = np.array([r.runner is None for r in rows])
        self.batch = np.array([r.batch for r in rows], dtype=np.float64)
        self.y = np.array([r.measured_us for r in rows])
        self.w = np.array([r.weight for r in rows])
        names = [r.runner or "" for r in rows]
        self.ser = np.array([space.hosts[r].serialized if r else 0.0 for r in names])
        self.sd = np.array([space.unit(r, "serialized_device") if r else np.zeros(n) for r in names])
        self.sd_c = np.array([space.fixed(r, "serialized_device") if r else 0.0 for r in names])
        self.start = np.array([space.unit(r, "start_us") if r else np.zeros(n) for r in names])
        self.start_c = np.array([space.fixed(r, "start_us") if r else 0.0 for r in names])

    def used(self) -> npt.NDArray[np.bool_]:
        """The parameters that some row depends on (the others cannot be fitted here)."""
        arrays = (self.dev, self.run, self.t_coef, self.one)
        per_stage = np.any([np.any(np.where(self.valid[..., None], a, 0.0) != 0, axis=(0, 1)) for a in arrays], axis=0)
        return np.asarray(per_stage | np.any(self.sd != 0, axis=0) | np.any(self.start != 0, axis=0))

    def evaluate(self, theta: F64) -> tuple[F64, F64]:
        """(predicted us per row, d predicted / d theta)."""
        v = self.valid
        dev = np.where(v, self.dev @ theta + self.dev_c, 0.0)
        run = np.where(v, self.run @ theta + self.run_c, 0.0)
        t = np.where(v, self.t_coef @ theta + self.t_c, -np.inf)
        sd = self.sd @ theta + self.sd_c
        serial = (self.ser[:, None] * run + sd[:, None] * dev).sum(axis=1)
        d_serial = (
            np.where(v[..., None], self.ser[:, None, None] * self.run + sd[:, None, None] * self.dev, 0.0).sum(axis=1)
            + dev.sum(axis=1)[:, None] * self.sd
        )
        slow = np.argmax(t, axis=1)
        rows = np.arange(len(t))
        bus = np.where(v, self.bus, 0.0).sum(axis=1)
        period = np.maximum(np.maximum(t[rows, slow], serial), bus)
        d_period = np.where(
            (t[rows, slow] >= serial)[:, None],
            self.t_coef[rows, slow],
            np.where((serial >= bus)[:, None], d_serial, 0.0),
        )
        latency = np.where(v, t, 0.0).sum(axis=1)
        d_latency = np.where(v[..., None], self.t_coef, 0.0).sum(axis=1)
        oneoff = self.start @ theta + self.start_c + np.where(v, self.one @ theta + self.one_c, 0.0).sum(axis=1)
        d_oneoff = self.start + np.where(v[..., None], self.one, 0.0).sum(axis=1)
        b = self.batch[:, None]
        pred = (oneoff + latency + (self.batch - 1) * period) / self.batch
        grad = (d_oneoff + d_latency + (b - 1) * d_period) / b
        single = self.single
        pred = np.where(single, dev[:, 0] + self.host[:, 0], pred)
        grad = np.where(single[:, None], self.dev[:, 0], grad)
        return pred, grad


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


def _prior_rows(space: ParamSpace) -> tuple[F64, F64]:
    """The weak priors as extra least-squares rows: weight / scale x (param - value or - tied param)."""
    rows, rhs = [], []
    for i, p in enumerate(space.params):
        if p.prior is None:
            continue
        value, scale = p.prior
        row = np.zeros(space.n)
        row[i] = PRIOR_WEIGHT / scale
        if p.tie is not None and p.tie in space.index:
            row[space.index[p.tie]] -= PRIOR_WEIGHT / scale
        rows.append(row)
        rhs.append(PRIOR_WEIGHT * value / scale)
    return np.array(rows).reshape(-1, space.n), np.array(rhs)


def _loss(model: TimeModel, theta: F64, prior: tuple[F64, F64]) -> float:
    pred, _ = model.evaluate(theta)
    z = np.square(model.w * (pred - model.y) / model.y / SOFT_SCALE)
    return float(2 * SOFT_SCALE**2 * np.sum(np.sqrt(1 + z) - 1) + np.sum(np.square(prior[0] @ theta - prior[1])))


def fit_times(model: TimeModel, free: npt.NDArray[np.bool_], fixed: F64) -> F64:
    """The parameters minimising the soft-L1 relative error (plus the priors): from the fixed start values
    (`fixed` for those not `free`), Gauss-Newton steps on the linearised model with IRLS weights, halved
    while the loss grows."""
    space = model.space
    theta = np.where(free, space.init(), fixed)
    upper, prior = np.where(free, space.upper(), fixed), _prior_rows(space)
    loss = _loss(model, theta, prior)
    for _ in range(MAX_ROUNDS):
        pred, grad = model.evaluate(theta)
        scale = model.w / model.y
        irls = 1 / np.sqrt(np.sqrt(1 + np.square(scale * (pred - model.y) / SOFT_SCALE)))  # sqrt of the weight
        a = np.vstack([(irls * scale)[:, None] * grad, prior[0]])
        b = np.concatenate([irls * scale * (model.y - pred + grad @ theta), prior[1]])
        step = np.zeros(space.n)
        step[free] = bounded_lsq(a[:, free], b - a[:, ~free] @ theta[~free], upper[free]) - theta[free]
        for _ in range(30):
            new_loss = _loss(model, theta + step, prior)
            if new_loss <= loss:
                break
            step = step / 2
        else:
            break
        theta, moved, loss = theta + step, float(np.max(np.abs(step) / np.maximum(np.abs(theta), 1.0))), new_loss
        if moved < 1e-10:
            break
    return theta
