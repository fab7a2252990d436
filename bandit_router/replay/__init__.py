"""Replay logged multi-model outcomes through a real router: how much would routing have saved?

A full-information outcome table holds, for every prompt, every model's score and cost
(:class:`OutcomeTable`). :func:`replay` routes the prompts, in shuffled orders, through a real
:class:`~bandit_router.BanditRouterRunnable` whose arms are :class:`ReplayArm` chat models
answering with the logged outcomes, and reports the policy against the best fixed arm in
hindsight, uniform random, round-robin and the per-prompt oracle (:class:`ReplayReport`).

The embedded default, ``load_dataset("routerbench")``, is derived from the RouterBench 0-shot
subset (Hu et al. 2024, arXiv 2403.12031, as distributed by RouterDC): 3,150 prompts x 11 models,
scores and costs only. From the command line: ``bandit-router replay --help``.

Example::

    from bandit_router.replay import load_dataset, replay

    report = replay(load_dataset("routerbench"), ["klucb"], lam=1.0, seeds=10)
    for line in report.lines():
        print(line.label, round(line.pct_best, 2))

Under a budget (10% of the top-quality model's mean cost per call; engine path)::

    report = replay(table, budget=ReplayBudget(0.10), path="engine")
    print(format_budget_report(report))
"""

from __future__ import annotations

from bandit_router.replay._arm import ReplayArm, replay_arms
from bandit_router.replay._budget import (
    BudgetLine,
    ReplayBudget,
    budget_lines,
    format_budget_report,
    parse_budget,
)
from bandit_router.replay._plot import PlotUnavailableError, plot_budget, plot_curves, plot_report
from bandit_router.replay._report import ProgressBar, format_report
from bandit_router.replay._run import (
    POLICIES,
    Line,
    PolicyRun,
    ReplayReport,
    areplay,
    known_costs,
    learned_values,
    load_priors,
    make_orders,
    make_policy,
    replay,
    save_priors,
)
from bandit_router.replay._table import (
    DATASETS,
    DatasetError,
    OutcomeTable,
    load_dataset,
    read_frugalgpt,
    read_outcomes,
    read_routerbench,
    write_outcomes,
)

__all__ = [
    "DATASETS",
    "POLICIES",
    "BudgetLine",
    "DatasetError",
    "Line",
    "OutcomeTable",
    "PlotUnavailableError",
    "PolicyRun",
    "ProgressBar",
    "ReplayArm",
    "ReplayBudget",
    "ReplayReport",
    "areplay",
    "budget_lines",
    "format_budget_report",
    "format_report",
    "known_costs",
    "learned_values",
    "load_dataset",
    "load_priors",
    "make_orders",
    "make_policy",
    "parse_budget",
    "plot_budget",
    "plot_curves",
    "plot_report",
    "read_frugalgpt",
    "read_outcomes",
    "read_routerbench",
    "replay",
    "replay_arms",
    "save_priors",
    "write_outcomes",
]
