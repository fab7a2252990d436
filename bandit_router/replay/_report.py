"""Text output of a replay: the results table and a progress bar (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from bandit_router.replay._run import Line, ReplayReport

__all__ = ["ProgressBar", "format_report"]


def _money(x: float) -> str:
    return f"{x:,.2f}" if x >= 1 else f"{x:.4f}"


def format_report(report: ReplayReport, *, source: bool = True) -> str:
    """Return the report as text: what was replayed, then one line per policy and baseline.

    Columns: mean normalised reward; % of the best fixed arm (in hindsight) with its standard
    deviation over the seeds; % of the per-prompt oracle; mean score (quality); total cost of
    the replay; that cost as % of always calling the highest-quality model; cumulative regret
    against the best fixed arm (in reward units; negative is better than that arm).
    """
    t = report.table
    s = report.settings
    lam = report.lam
    top = t.models[report.top_quality()]
    n = len(report.orders[0])
    head = [
        f"{t.name}: {n:,} prompts x {len(t.models)} models"
        + (f" ({t.dropped} incomplete prompts dropped)" if t.dropped else ""),
        f"reward: (score - {lam:g} x cost / {t.cost_scale:.6g} + {lam:g}) / {1 + lam:g}"
        + ("  [the cost is known to the router: it learns the score only]" if s["prices"] else ""),
        f"order: {report.order}, {len(report.seeds)} seed{'s' if len(report.seeds) > 1 else ''}"
        f" (mean shown); through: "
        + ("BanditRouterRunnable (LangChain)" if report.path == "router" else "Bandit engine")
        + f"; context: {'task' if s['context'] else 'none'}"
        + (f" (seeded, weight {s['context_prior_weight']:g})" if s["context_prior_weight"] else "")
        + (f"; decay {s['decay']:g}" if s["decay"] else "; stationary")
        + ("; warm start (priors)" if s["priors"] else ""),
    ]
    lines = report.lines()
    width = max(32, *(len(line.label) for line in lines))
    cols = f"{'':{width}}  {'reward':>7} {'% best':>7} {'+-':>5} {'% oracle':>8} {'score':>6}"
    cols += f" {'cost $':>9} {'% cost':>7} {'regret':>8}"
    rows = [_row(line, width) for line in lines]
    foot = [
        f"% best: of the best fixed arm in hindsight; % cost: of always calling {top} "
        f"(the highest mean score); regret: against the best fixed arm, in reward units.",
    ]
    foot.extend(f"{r.label}: {r.seconds:.1f} s" for r in report.runs)
    if source and t.source:
        # The attribution: the first two lines of the source (the rest are derivation notes).
        foot.append("data: " + "\n      ".join(t.source.splitlines()[:2]))
    return "\n".join([*head, "", cols, *rows, "", *foot])


def _row(line: Line, width: int) -> str:
    return (
        f"{line.label:{width}}  {line.mean_reward:7.4f} {line.pct_best:7.2f} "
        f"{line.pct_best_std:5.2f} {line.pct_oracle:8.2f} {line.mean_score:6.3f} "
        f"{_money(line.total_cost):>9} {line.cost_vs_top:7.1f} {line.regret:8.1f}"
    )


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ten times a second.

    Args:
        label: Text before the bar.
        stream: Where to draw (default ``sys.stderr``).
        width: Characters of the bar itself.
    """

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._t0 = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        """Record progress; redraws when enough time has passed or the work is done."""
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        frac = done / total if total else 1.0
        fill = int(frac * self.width)
        bar = "#" * fill + "." * (self.width - fill)
        elapsed = now - self._t0
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        self.stream.write(
            f"\r{self.label} [{bar}] {frac:4.0%} {done:,}/{total:,} "
            f"{elapsed:5.1f}s (eta {eta:4.0f}s) "
        )
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
