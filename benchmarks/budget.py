"""Budgets on real LLM outcomes: the acceptance figures of the budgets issue, side by side.

For RouterBench (embedded) and FrugalGPT OVERRULING (``../shared/data``), with the same
settings (nothing tuned per data set): the default policy (``KLUCB()``), the default window
(50 calls), budgets of 5%, 10% and 25% of the top-quality model's mean cost per call, 10
shuffled orders (``numpy.random.default_rng(seed).permutation(n)``, seeds 0-9):

* quality as a share of the best fixed mixture of models in hindsight under the same budget
  (an exact LP over the models' mean quality and mean cost; at most two models), goal >= 97;
* total spend as a share of the total budget (mean and worst order), goal <= 101;
* the most any 500 calls after the first 500 spent, as a share of their budget (worst order),
  goal <= 110; next to it, the same figure for the best fixed mixture itself, played in the
  same orders with the rounding the router uses (what the costs' noise alone does);
* with ``context=task`` (seeded from the global statistics, weight 10) and one shared budget:
  quality as a share of the best *context-free* fixed mixture, goal > 100 at 10% and 25%;
* the budget halved at call 1,500: calls until no 100-call window spends more than 110% of its
  budget (mean over orders), goal <= 300, and the spend of calls 1,500-1,799 over their budget.

Usage::

    python benchmarks/budget.py                    # both datasets, engine path (~3 min)
    python benchmarks/budget.py --plots docs       # also the PNGs of docs/benchmarks.md
    python benchmarks/budget.py --seeds 30         # more orders
    python benchmarks/budget.py --path router      # through the router (once it takes budget=)
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Literal

from bandit_router.budget import mixture
from bandit_router.replay import (
    OutcomeTable,
    ReplayBudget,
    ReplayReport,
    budget_lines,
    load_dataset,
    plot_budget,
    replay,
)
from bandit_router.replay._budget import _column_means, _windows_max, spend_curve

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
BUDGETS = (0.05, 0.10, 0.25)
HALVE_AT = 1500


def fixed_mixture_window_max(table: OutcomeTable, report: ReplayReport, usd: float) -> float:
    """The worst 500-call window of the best fixed mixture, rounded as the router rounds."""
    worst = -math.inf
    for rows in report.orders:
        q, c = _column_means(table, rows)
        m = mixture(c, q, usd)
        carry, spend = 0.0, []
        for r in rows:
            dear = m.share > 0 and carry + m.share >= 0.5
            if m.share > 0:
                carry += m.share - (1.0 if dear else 0.0)
            spend.append(table.costs[r][m.dear if dear else m.cheap])
        worst = max(worst, _windows_max(spend, [usd] * len(spend), 500))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--path", choices=("engine", "router"), default="engine")
    ap.add_argument("--plots", type=Path, default=None, help="write the PNGs to this folder")
    a = ap.parse_args()
    path: Literal["engine", "router"] = a.path
    tables = [("RouterBench", load_dataset("routerbench"))]
    fg = SHARED / "frugalgpt_overruling" / "overruling.csv"
    if fg.exists():
        tables.append(("FrugalGPT OVERRULING", load_dataset(fg)))
    else:
        print(f"skipped FrugalGPT: no {fg}")
    print(f"through the {path}, {a.seeds} orders, default policy and window\n")
    print(
        "| dataset | budget | best fixed mixture in hindsight | quality | % of best mixture "
        "(goal >= 97) | % budget, mean / worst (goal <= 101) | worst 500-call window "
        "(goal <= 110) | the best mixture's own worst window | context=task: % of best "
        "context-free mixture (goal > 100 at 10%, 25%) | % of best per-task mixtures | halved "
        "at 1,500: follows after (goal <= 300) | spend 1,500-1,799 / budget |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    t0 = time.perf_counter()
    for name, table in tables:
        for frac in BUDGETS:
            budget = ReplayBudget(frac)
            plain = replay(table, seeds=a.seeds, path=path, budget=budget)
            ctx = replay(
                table,
                seeds=a.seeds,
                path=path,
                budget=budget,
                context=True,
                context_prior_weight=10.0,
            )
            halved = ReplayBudget(frac, changes=((HALVE_AT, 0.5),))
            half = replay(table, seeds=a.seeds, path=path, budget=halved)
            [p] = budget_lines(plain)
            [c] = budget_lines(ctx)
            [h] = budget_lines(half)
            usd = budget.usd(table)
            rows0 = plain.orders[0]
            q, cost = _column_means(table, rows0)
            m = mixture(cost, q, usd)
            best = (
                f"{table.models[m.cheap]} {100 * (1 - m.share):.0f}% + "
                f"{table.models[m.dear]} {100 * m.share:.0f}%: {m.value:.4f}"
                if m.share > 0
                else f"{table.models[m.cheap]}: {m.value:.4f}"
            )
            curve = spend_curve(half, window=300)
            after = curve[HALVE_AT + 299] if len(curve) > HALVE_AT + 299 else math.nan
            follow = h.follow[0]
            print(
                f"| {name} | {100 * frac:g}% (${usd:.6f}) | {best} | {p.quality:.4f} "
                f"| **{p.pct_best_mixture:.2f}** +- {p.pct_best_mixture_std:.2f} "
                f"| {p.pct_budget:.2f} / {p.pct_budget_max:.2f} | {p.window_max:.1f} "
                f"| {fixed_mixture_window_max(table, plain, usd):.1f} "
                f"| **{c.pct_best_mixture:.2f}** +- {c.pct_best_mixture_std:.2f} "
                f"| {c.pct_best_per_task:.2f} "
                f"| {'never' if follow is None else follow} | {after:.3f} |",
                flush=True,
            )
            if a.plots and name == "RouterBench" and frac == 0.25:
                plot_budget(half, a.plots / "replay_budget_routerbench.png")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
