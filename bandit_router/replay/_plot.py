"""PNG plots of a replay (matplotlib is an optional extra: ``pip install bandit-router[plot]``)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from typing import Any

from bandit_router.replay._run import ReplayReport

__all__ = ["PlotUnavailableError", "check_plotting", "plot_budget", "plot_curves", "plot_report"]


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def check_plotting() -> None:
    """Raise :class:`PlotUnavailableError` now if plots cannot be drawn (before a long run)."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotUnavailableError(
            "--plot needs matplotlib, which is not installed: pip install 'bandit-router[plot]'"
        )


def _pyplot() -> Any:
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_report(
    report: ReplayReport,
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Write a PNG: cumulative regret of each run, and the first run's arm allocation over time.

    Args:
        report: The replay.
        path: The PNG file to write.
        labels: The runs to draw (default: all); the first one's allocation is drawn.
        title: The figure's title (default: dataset, lambda, order and seeds).

    Raises:
        PlotUnavailableError: If matplotlib is not installed.
    """
    plt = _pyplot()
    chosen = list(labels) if labels is not None else [r.label for r in report.runs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    for label in chosen:
        curve = report.regret_curve(label)
        ax1.plot(range(1, len(curve) + 1), curve, label=label, linewidth=1.6)
    ax1.axhline(0.0, color="grey", linewidth=0.8)
    ax1.set_xlabel("prompt")
    ax1.set_ylabel("cumulative regret vs best fixed arm (reward units)")
    ax1.set_title("regret (mean over seeds)")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)

    _allocation_panel(plt, ax2, report, chosen[0])
    fig.suptitle(
        title
        or f"{report.table.name}: lambda = {report.lam:g}, {report.order} order, "
        f"{len(report.seeds)} seeds, through the {report.path}"
    )
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    plt.close(fig)


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str],
    *,
    title: str,
    ylabel: str,
    hline: float | None = None,
    ylim: tuple[float, float] | None = None,
) -> None:
    """Write a PNG of a few named curves against the step (e.g. cold vs warm start).

    Raises:
        PlotUnavailableError: If matplotlib is not installed.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, label=label, linewidth=1.6)
    if hline is not None:
        ax.axhline(hline, color="grey", linestyle="--", linewidth=0.9)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("prompt")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    plt.close(fig)


def plot_budget(
    report: ReplayReport,
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Write a PNG of a budget replay: spend over time against the budget, and arm allocation.

    Left: for each run, the mean spend per call of the last 100 calls and of all calls so far
    (USD, mean over seeds), under the budget in force (a step line when it changes). Right: the
    first run's allocation of calls over time.

    Raises:
        PlotUnavailableError: If matplotlib is not installed.
        ValueError: If the replay had no budget.
    """
    from bandit_router.replay._budget import FOLLOW_WINDOW, spend_per_call

    budget = report.budget
    if budget is None:
        raise ValueError("this replay had no budget")
    plt = _pyplot()
    chosen = list(labels) if labels is not None else [r.label for r in report.runs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    steps = len(report.orders[0])
    sched = budget.schedule(report.table, steps)
    xs = range(1, steps + 1)
    ax1.plot(xs, sched, color="black", linewidth=1.2, label="budget")
    ax1.plot(
        xs,
        [1.1 * b for b in sched],
        color="grey",
        linewidth=0.7,
        linestyle=":",
        label="budget + 10%",
    )
    for label in chosen:
        window, total = spend_per_call(report, label, FOLLOW_WINDOW)
        line = ax1.plot(xs, window, linewidth=1.0, label=f"{label}: last {FOLLOW_WINDOW} calls")
        ax1.plot(
            xs,
            total,
            linewidth=1.8,
            linestyle="--",
            color=line[0].get_color(),
            label=f"{label}: so far",
        )
    ax1.set_ylim(0.0, 2.0 * max(sched))
    ax1.set_xlabel("call")
    ax1.set_ylabel("spend per call, USD (mean over seeds)")
    ax1.set_title("spend over time")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    _allocation_panel(plt, ax2, report, chosen[0])
    fig.suptitle(
        title
        or f"{report.table.name}: budget {budget.label(report.table)}, {report.order} order, "
        f"{len(report.seeds)} seeds, through the {report.path}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    plt.close(fig)


def _allocation_panel(plt: Any, ax: Any, report: ReplayReport, label: str) -> None:
    share = report.allocation(label, bins=min(60, len(report.orders[0])))
    steps = len(report.orders[0])
    xs = [(b + 0.5) * steps / len(share) for b in range(len(share))]
    models = report.table.models
    order = sorted(range(len(models)), key=lambda j: -sum(row[j] for row in share))
    cmap = plt.get_cmap("tab20")
    ax.stackplot(
        xs,
        [[row[j] for row in share] for j in order],
        labels=[models[j] for j in order],
        colors=[cmap(i % 20) for i in range(len(order))],
    )
    ax.set_xlim(0, steps)
    ax.set_ylim(0, 1)
    ax.set_xlabel("prompt")
    ax.set_ylabel("share of calls")
    ax.set_title(f"arm allocation over time: {label}")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
