"""Pictures of a plan (and of a verify report): matplotlib is an optional extra, imported lazily."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from tpuplan.compat import zip_strict
from tpuplan.planner.plan import Plan
from tpuplan.profiles.errors import TpuplanError

INSTALL_HINT = "drawing needs matplotlib: pip install 'tpuplan[plot]' (or pip install matplotlib)"


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise TpuplanError(INSTALL_HINT) from None
    return plt


def _units(plan: Plan) -> str:
    """Where the stages run, for the title: TPUs, the host CPU, or both."""
    cpus = sum(1 for d in plan.devices if d.backend == "cpu")
    if cpus == len(plan.devices):
        return "the host CPU"
    return f"{plan.tpus - cpus} TPUs" + (f" and {cpus} CPU stages" if cpus else "")


def plan_figure(
    plan: Plan,
    measured_us: list[float] | None = None,
    title: str | None = None,
    *,
    measured_label: str = "measured",
    predicted_label: str = "predicted",
    simulated: bool = False,
) -> bytes:
    """PNG bytes: stage times (predicted, measured beside), parameter bytes vs on-chip capacity, cuts.
    The labels say which backend measured what (a CPU run beside Edge TPU predictions says so); a
    simulated run says SIMULATED in the title too."""
    plt = _pyplot()
    tpu = any(d.backend == "edgetpu" for d in plan.devices)
    heights = [3, 3, 1.2] if tpu else [3, 1.2]
    fig, axes = plt.subplots(
        len(heights),
        1,
        figsize=(8, 7.5 if tpu else 4.8),
        gridspec_kw={"height_ratios": heights},
        constrained_layout=True,
    )
    _times(axes[0], plan, measured_us, measured_label, predicted_label)
    axes[0].set_title(
        ("SIMULATED (no hardware): " if simulated else "")
        + (
            title
            or f"{Path(plan.model.path).name}: {len(plan.stages)} stages on {_units(plan)}\n"
            f"{plan.predicted_throughput_per_s:.1f} inputs/s predicted ({plan.solver.status})"
        ),
        fontsize=10,
        color="#C44E52" if simulated else "black",
    )
    if tpu:
        _memory(axes[1], plan)
    _cuts(axes[-1], plan)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _times(ax_t: Any, plan: Plan, measured_us: list[float] | None, measured_label: str, predicted_label: str) -> None:
    """Stage times: predicted, with copies the time between results, measured beside; the bottleneck."""
    xs = list(range(len(plan.stages)))
    width = 0.38 if measured_us else 0.6
    pred_ms = [s.predicted_us / 1000 for s in plan.stages]
    offset = -width / 2 if measured_us else 0.0
    ax_t.bar([x + offset for x in xs], pred_ms, width, label=predicted_label, color="#4C72B0")
    if any(s.copies > 1 for s in plan.stages):
        ax_t.bar(
            [x + offset for x in xs],
            [s.predicted_interval_us / 1000 for s in plan.stages],
            width,
            label="between results, with copies (predicted)",
            color="#8172B2",
            hatch="//",
        )
    if measured_us:
        ax_t.bar(
            [x + width / 2 for x in xs], [m / 1000 for m in measured_us], width, label=measured_label, color="#DD8452"
        )
    ax_t.axhline(plan.predicted_period_us / 1000, color="#4C72B0", ls="--", lw=1, label="predicted bottleneck")
    tallest = max([*pred_ms, *((m / 1000) for m in measured_us or [])])
    ax_t.set_ylim(0, tallest * 1.35 + 1e-9)  # room for the legend
    ax_t.set_ylabel("stage time (ms)")
    ax_t.set_xticks(
        xs,
        [
            f"stage {s.index}\n{s.device}"
            + (f" x{s.copies}" if s.copies > 1 else "")
            + ("\ninvoke measured" if s.measured_invoke_us is not None else "")
            for s in plan.stages
        ],
    )
    ax_t.legend(loc="upper right", fontsize=8)


def _memory(ax_m: Any, plan: Plan) -> None:
    """Parameters on chip and streamed, against each Edge TPU's on-chip capacity."""
    xs = list(range(len(plan.stages)))
    mib = 2**20
    on = [s.predicted_onchip_bytes / mib for s in plan.stages]
    off = [s.predicted_offchip_bytes / mib for s in plan.stages]
    ax_m.bar(xs, on, 0.6, label="on chip (predicted)", color="#55A868")
    ax_m.bar(xs, off, 0.6, bottom=on, label="streamed off chip (predicted)", color="#C44E52")
    tpus = [i for i, dev in enumerate(plan.devices) if dev.backend == "edgetpu"]
    for i in tpus:
        label = "on-chip capacity" if i == tpus[0] else None
        ax_m.hlines(plan.devices[i].onchip_bytes / mib, i - 0.4, i + 0.4, colors="black", lw=2, label=label)
    caps = [d.onchip_bytes / mib for d in plan.devices if d.backend == "edgetpu"]
    ax_m.set_ylim(0, max([*caps, *(a + b for a, b in zip_strict(on, off))]) * 1.45 + 1e-9)
    ax_m.set_ylabel("parameters (MiB)")
    ax_m.set_xticks(xs, [f"stage {s.index}" for s in plan.stages])
    ax_m.legend(loc="upper right", fontsize=8)


def _cuts(ax_c: Any, plan: Plan) -> None:
    """The stages as spans of the operator list, a line at each cut."""
    for s in plan.stages:
        ax_c.barh(0, s.last_op - s.first_op + 1, left=s.first_op, height=0.6)
        ax_c.text((s.first_op + s.last_op + 1) / 2, 0, str(s.index), ha="center", va="center", fontsize=8)
    for c in plan.cuts:
        ax_c.axvline(c + 1, color="black", lw=1)
    ax_c.set_xlim(0, plan.n_ops)
    ax_c.set_yticks([])
    ax_c.set_xlabel(f"operator index (cuts after ops {', '.join(map(str, plan.cuts)) or '-'})")
