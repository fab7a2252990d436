"""The budgets issue's acceptance runs (slow: ``make soak``; engine path until the router
takes ``budget=``).

10 shuffled orders (seeds 0-9), the default policy and window, budgets as a fraction of the
top-quality model's mean cost per call. The floors are the figures measured
(docs/benchmarks.md, "Budgets") rounded down, so a regression shows; where a goal is not met
on these orders the comment says so.
"""

from __future__ import annotations

import pytest

from bandit_router.replay import (
    BudgetLine,
    OutcomeTable,
    ReplayBudget,
    budget_lines,
    load_dataset,
    replay,
)

from ._tables import SHARED

pytestmark = pytest.mark.slow

FRUGALGPT = SHARED / "frugalgpt_overruling" / "overruling.csv"


@pytest.fixture(scope="module")
def routerbench() -> OutcomeTable:
    return load_dataset("routerbench")


def _line(table: OutcomeTable, budget: ReplayBudget, **kw: object) -> BudgetLine:
    report = replay(table, seeds=10, path="engine", budget=budget, **kw)  # type: ignore[arg-type]
    [line] = budget_lines(report)
    return line


# Goal 97 at every budget; measured 97.69, 96.93 and 96.73 on seeds 0-9 (97.38, 97.43 and
# 97.37 over seeds 10-59).
@pytest.mark.parametrize(("frac", "floor"), [(0.05, 97.6), (0.10, 96.9), (0.25, 96.7)])
def test_routerbench_quality_spend_and_windows(
    routerbench: OutcomeTable, frac: float, floor: float
) -> None:
    line = _line(routerbench, ReplayBudget(frac))
    assert line.pct_best_mixture >= floor
    assert line.pct_budget_max <= 101.0  # every order, not only on average
    assert line.window_max <= 110.0


@pytest.mark.parametrize(("frac", "floor"), [(0.10, 101.2), (0.25, 101.2)])
def test_routerbench_task_contexts_beat_every_context_free_mixture(
    routerbench: OutcomeTable, frac: float, floor: float
) -> None:
    line = _line(routerbench, ReplayBudget(frac), context=True, context_prior_weight=10.0)
    assert line.pct_best_mixture > 100.0  # goal: above the best context-free mixture
    assert line.pct_best_mixture >= floor  # measured 101.29 and 101.24
    assert line.pct_budget_max <= 101.0


@pytest.mark.parametrize("frac", [0.10, 0.25])
def test_routerbench_spend_follows_a_halved_budget(routerbench: OutcomeTable, frac: float) -> None:
    line = _line(routerbench, ReplayBudget(frac, changes=((1500, 0.5),)))
    [follow] = line.follow
    assert follow is not None
    assert follow <= 300  # measured 0: no 100-call window above 110% of its budget
    assert line.pct_budget_max <= 101.0


@pytest.mark.skipif(not FRUGALGPT.exists(), reason="no ../shared/data")
@pytest.mark.parametrize(("frac", "floor"), [(0.05, 99.3), (0.10, 98.6), (0.25, 98.1)])
def test_frugalgpt_same_settings(frac: float, floor: float) -> None:
    line = _line(load_dataset(FRUGALGPT), ReplayBudget(frac))
    assert line.pct_best_mixture >= floor  # measured 99.34, 98.63, 98.12
    assert line.pct_budget_max <= 101.0
    assert line.window_max <= 110.0
