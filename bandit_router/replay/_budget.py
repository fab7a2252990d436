"""Replaying under a budget: the router keeps an average spend per call and learns quality.

A :class:`ReplayBudget` names the spending rate of a replay, as a fraction of the top-quality
model's mean cost per call or in USD, and optionally changes it at given calls. The replay
then learns the score (quality) only; every model's expected cost is known (its mean cost per
call over the table stands for its price list, counted as one observed call, then the mean of
the costs the router observed), as :mod:`bandit_router.budget` prescribes.

The figures (:func:`budget_lines`): quality, spend (per call, and as a share of the budget), the
share of the best fixed mixture of models in hindsight under the same budget (computed exactly:
an LP over the models' mean quality and mean cost on the replayed prompts, at most two models;
for a changed budget, the best mixture of each period), the most any window of calls spent, and
how many calls the spend took to follow a change of the budget.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bandit_router._bandit import context_seed
from bandit_router._engine import Engine
from bandit_router._stats import BanditState, Prior
from bandit_router.budget import (
    DEFAULT_WINDOW,
    Budget,
    Ledger,
    best_mixture,
    best_shared_mixture,
    expected_costs,
)
from bandit_router.policies import Policy
from bandit_router.replay._table import OutcomeTable

if TYPE_CHECKING:
    from bandit_router.replay._run import ReplayReport

__all__ = [
    "BudgetLine",
    "ReplayBudget",
    "budget_lines",
    "format_budget_report",
    "parse_budget",
    "spend_curve",
    "spend_per_call",
]

#: Windows of this many calls measure the spend's excursions (after the first such window).
SPEND_WINDOW = 500
#: Windows of this many calls measure how fast the spend follows a change of the budget.
FOLLOW_WINDOW = 100


@dataclass(frozen=True)
class ReplayBudget:
    """The budget of a replay.

    Attributes:
        amount: The average spend per call: a fraction of the top-quality model's mean cost
            per call (``unit="fraction"``) or USD (``unit="usd"``).
        unit: ``"fraction"`` or ``"usd"``.
        changes: ``(call, factor)`` pairs: from that call on (0-based) the budget is ``factor``
            times ``amount`` (e.g. ``((1500, 0.5),)`` halves it at call 1,500).
        window: The router's budget window, in calls (see :class:`~bandit_router.budget.Budget`).
    """

    amount: float
    unit: Literal["fraction", "usd"] = "fraction"
    changes: tuple[tuple[int, float], ...] = ()
    window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        a = self.amount
        if isinstance(a, bool) or not isinstance(a, int | float) or not math.isfinite(a) or a < 0:
            raise ValueError(f"budget must be a finite number >= 0, got {a!r}")
        if self.unit not in ("fraction", "usd"):
            raise ValueError(f"budget unit must be 'fraction' or 'usd', got {self.unit!r}")
        for call, factor in self.changes:
            if not isinstance(call, int) or call < 0:
                raise ValueError(f"budget change at call {call!r}: must be an integer >= 0")
            if not (math.isfinite(factor) and factor >= 0):
                raise ValueError(f"budget change factor {factor!r} must be a finite number >= 0")
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 1:
            raise ValueError(f"budget window must be an integer >= 1, got {self.window!r}")

    def usd(self, table: OutcomeTable) -> float:
        """Return the initial budget in USD per call for ``table``."""
        if self.unit == "usd":
            return float(self.amount)
        return float(self.amount) * top_cost(table)

    def schedule(self, table: OutcomeTable, n: int) -> list[float]:
        """Return the budget in force at each of ``n`` calls (USD per call)."""
        base = self.usd(table)
        out = [base] * n
        for call, factor in sorted(self.changes):
            for t in range(min(call, n), n):
                out[t] = base * factor
        return out

    def label(self, table: OutcomeTable) -> str:
        """Describe the budget in words, e.g. ``10% of gpt-4's cost ($0.000502 per call)``."""
        top = table.models[_top(table)]
        usd = self.usd(table)
        frac = usd / top_cost(table) if top_cost(table) > 0 else math.nan
        text = f"{frac:.4g}x {top}'s mean cost" if frac >= 10 else f"{100 * frac:.4g}% of {top}'s"
        text += f" mean cost per call (${usd:.6g})" if frac < 10 else f" (${usd:.6g})"
        for call, factor in self.changes:
            text += f", x{factor:g} from call {call:,}"
        return text + f"; window {self.window} calls"


def top_cost(table: OutcomeTable) -> float:
    """The mean cost per call of the model with the highest mean score."""
    return table.mean_costs()[_top(table)]


def _top(table: OutcomeTable) -> int:
    scores = table.mean_scores()
    return max(range(len(scores)), key=lambda j: (scores[j], -j))


_USD = re.compile(r"^\s*\$?\s*([0-9.eE+-]+)\s*(usd|\$)?\s*$", re.IGNORECASE)


def parse_budget(text: str) -> ReplayBudget:
    """Parse a replay budget: a fraction (``0.1`` or ``10%``) or USD (``0.0005usd``, ``$0.0005``).

    Raises:
        ValueError: If the text is neither; the message names it.
    """
    t = text.strip()
    unit: Literal["fraction", "usd"] = "fraction"
    try:
        if t.endswith("%"):
            value = float(t[:-1]) / 100.0
        else:
            m = _USD.match(t)
            if m is None:
                raise ValueError
            value = float(m.group(1))
            if m.group(2) or t.startswith("$"):
                unit = "usd"
    except ValueError:
        raise ValueError(
            f"not a budget: {text!r} (a fraction of the top model's cost per call, e.g. 0.1 or "
            "10%, or USD per call, e.g. 0.0005usd)"
        ) from None
    return ReplayBudget(value, unit)


# --- the engine path -------------------------------------------------------------------------


class BudgetDriver:
    """One replay order through the engine with a budget (what a store-backed Bandit would do).

    Keeps each context's statistics, the cost sums, and the budget's :class:`Ledger` in memory,
    and applies them exactly as a store would: begin (ledger and in-flight), settle (reward,
    real cost). With ``context_prior_weight`` every outcome is also counted in the global
    context and each context selects with the global statistics as its prior (the router's
    context seeding).
    """

    def __init__(
        self,
        table: OutcomeTable,
        budget: Budget,
        *,
        policy: Policy,
        seed: int,
        decay: float | None,
        priors: Mapping[str, Prior] | None,
        context_prior_weight: float | None,
    ) -> None:
        self.engine = Engine(
            table.models, policy=policy, priors=priors, decay=decay, seed=seed, budget=budget
        )
        self.ledger = Ledger()
        self.states: dict[str, BanditState] = {}
        self.cost_sum: dict[str, list[float]] = {}
        self.cost_count: dict[str, list[int]] = {}
        self.context_prior_weight = context_prior_weight
        self.prices = self.engine.budget_costs

    def set_budget(self, usd_per_call: float) -> None:
        """Change the budget at run time (the next call uses it)."""
        old = self.engine.budget
        assert old is not None
        self.engine.set_budget(Budget(usd_per_call, old.costs, old.window))

    def _state(self, context: str) -> BanditState:
        st = self.states.get(context)
        if st is None:
            st = self.states[context] = self.engine.new_state()
            k = len(self.engine.arms)
            self.cost_sum[context] = [0.0] * k
            self.cost_count[context] = [0] * k
        return st

    def step(self, context: str, answer: Callable[[int], tuple[float, float]]) -> int:
        """Route one call: choose, begin, get ``(score, cost)`` of the chosen column, settle."""
        engine = self.engine
        budget = engine.budget
        assert budget is not None
        st = self._state(context)
        priors: tuple[Prior | None, ...] | None = engine.priors
        w = self.context_prior_weight
        if context and w:
            glob = self._state("")
            n, s, q = glob.discounted(engine.decay, engine.priors)
            priors = tuple(
                context_seed(n[i], s[i], q[i], w) if n[i] > 0 else None for i in range(len(n))
            )
        costs = expected_costs(self.prices, self.cost_sum[context], self.cost_count[context])
        sel, choice = engine.select_budgeted(
            st, self.ledger, context=context, priors=priors, costs=costs
        )
        j = engine.arms.index(sel.arm)
        self.ledger.begin(budget, choice, context=context)
        score, cost = answer(j)
        self.ledger.settle(choice.expected_cost, cost)
        self.cost_sum[context][j] += cost
        self.cost_count[context][j] += 1
        outcome = engine.reward_outcome(score)
        st.apply(j, outcome, engine.decay)
        if context and w:
            self._state("").apply(j, outcome, engine.decay)
        return j


def replay_order(
    table: OutcomeTable,
    rows: Sequence[int],
    budget: ReplayBudget,
    *,
    policy: Policy,
    seed: int,
    context: bool,
    context_prior_weight: float | None,
    decay: float | None,
    priors: Mapping[str, Prior] | None,
    step: Callable[[], None],
) -> tuple[int, ...]:
    """Replay one order under ``budget`` through the engine; return the column chosen per call."""
    schedule = budget.schedule(table, len(rows))
    driver = BudgetDriver(
        table,
        Budget(schedule[0] if schedule else budget.usd(table), router_costs(table), budget.window),
        policy=policy,
        seed=seed,
        decay=decay,
        priors=priors,
        context_prior_weight=context_prior_weight,
    )
    scores, costs, tasks = table.scores, table.costs, table.tasks
    out: list[int] = []
    for t, row in enumerate(rows):
        if t and schedule[t] != schedule[t - 1]:
            driver.set_budget(schedule[t])
        srow, crow = scores[row], costs[row]

        def answer(
            j: int, s: Sequence[float] = srow, c: Sequence[float] = crow
        ) -> tuple[float, float]:
            return s[j], c[j]

        out.append(driver.step(tasks[row] if context else "", answer))
        step()
    return tuple(out)


def router_costs(table: OutcomeTable) -> dict[str, float]:
    """The costs a replayed router is told: each model's mean cost per call over the table.

    It stands for the model's price list times its typical token usage, known before any call.
    """
    return dict(zip(table.models, table.mean_costs(), strict=True))


# --- the figures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetLine:
    """A policy's figures under a budget, averaged over the seeds.

    Attributes:
        label: The policy and its options.
        quality: Mean score per call.
        quality_std: Its standard deviation over the seeds.
        pct_best_mixture: Quality as a percentage of the best fixed mixture's in hindsight under
            the same budget (for each period of a changed budget, that period's best mixture).
        pct_best_mixture_std: Its standard deviation over the seeds.
        pct_best_per_task: Quality as a percentage of the best fixed per-task mixtures' in
            hindsight under one shared budget (what a router learning per task could reach).
        spend_per_call: Mean spend per call (USD).
        pct_budget: Total spend as a percentage of the total budget (mean over the seeds).
        pct_budget_max: The same, the largest over the seeds.
        window_max: The most any window of ``SPEND_WINDOW`` calls after the first spent, as a
            percentage of its budget (the largest over the seeds).
        follow: For each change of the budget, the calls after it until no later window of
            ``FOLLOW_WINDOW`` calls (mean over the seeds) spends more than 110% of its budget
            (``None``: never within the replay).
    """

    label: str
    quality: float
    quality_std: float
    pct_best_mixture: float
    pct_best_mixture_std: float
    pct_best_per_task: float
    spend_per_call: float
    pct_budget: float
    pct_budget_max: float
    window_max: float
    follow: tuple[int | None, ...]


def _mean(v: Sequence[float]) -> float:
    return math.fsum(v) / len(v) if v else math.nan


def _std(v: Sequence[float]) -> float:
    if len(v) < 2:
        return 0.0
    m = _mean(v)
    return math.sqrt(math.fsum((x - m) ** 2 for x in v) / len(v))


def _periods(schedule: Sequence[float]) -> list[tuple[int, int, float]]:
    """Split a budget schedule into ``(start, end, budget)`` periods of constant budget."""
    out: list[tuple[int, int, float]] = []
    start = 0
    for t in range(1, len(schedule) + 1):
        if t == len(schedule) or schedule[t] != schedule[start]:
            out.append((start, t, schedule[start]))
            start = t
    return out


def _column_means(table: OutcomeTable, rows: Sequence[int]) -> tuple[list[float], list[float]]:
    k = len(table.models)
    n = len(rows)
    q = [math.fsum(table.scores[r][j] for r in rows) / n for j in range(k)]
    c = [math.fsum(table.costs[r][j] for r in rows) / n for j in range(k)]
    return q, c


def hindsight_best(table: OutcomeTable, rows: Sequence[int], schedule: Sequence[float]) -> float:
    """The total quality of the best fixed mixture in hindsight, period by period (exact LP)."""
    total = 0.0
    for a, b, usd in _periods(schedule):
        part = rows[a:b]
        q, c = _column_means(table, part)
        total += best_mixture(q, c, usd).value * len(part)
    return total


def hindsight_best_per_context(
    table: OutcomeTable, rows: Sequence[int], schedule: Sequence[float]
) -> float:
    """The total quality of the best fixed per-task mixtures under one shared budget (exact LP)."""
    total = 0.0
    for a, b, usd in _periods(schedule):
        part = rows[a:b]
        by_task: dict[str, list[int]] = {}
        for r in part:
            by_task.setdefault(table.tasks[r], []).append(r)
        q: dict[str, Sequence[float]] = {}
        c: dict[str, Sequence[float]] = {}
        for task, rs in by_task.items():
            q[task], c[task] = _column_means(table, rs)
        weights = {task: float(len(rs)) for task, rs in by_task.items()}
        total += best_shared_mixture(weights, q, c, table.models, usd).value * len(part)
    return total


def describe_mixture(table: OutcomeTable, rows: Sequence[int], usd: float) -> str:
    """Name the best fixed mixture in hindsight, e.g. ``Yi-34B-Chat 96% + gpt-4 4%: 0.777``."""
    q, c = _column_means(table, rows)
    m = best_mixture(q, c, usd)
    names = table.models
    if m.cheap == m.dear or m.share == 0.0:
        return f"{names[m.cheap]} 100%: {m.value:.4f}"
    return (
        f"{names[m.cheap]} {100 * (1 - m.share):.0f}% + {names[m.dear]} {100 * m.share:.0f}%: "
        f"{m.value:.4f}"
    )


def _windows_max(spend: Sequence[float], budget: Sequence[float], w: int) -> float:
    """The largest spend of a window of ``w`` calls after the first, over its budget (%)."""
    n = len(spend)
    if n < 2 * w:
        return math.nan
    best = -math.inf
    s = math.fsum(spend[w : 2 * w])
    b = math.fsum(budget[w : 2 * w])
    for t in range(w, n - w + 1):
        if t > w:
            s += spend[t + w - 1] - spend[t - 1]
            b += budget[t + w - 1] - budget[t - 1]
        if b > 0:
            best = max(best, s / b)
    return 100.0 * best


def spend_curve(
    report: ReplayReport, label: str | None = None, window: int = FOLLOW_WINDOW
) -> list[float]:
    """Mean over the seeds of the spend of the last ``window`` calls over their budget, per call."""
    run = report.run(label)
    budget = report.budget
    assert budget is not None
    curves = []
    for si, rows in enumerate(report.orders):
        sched = budget.schedule(report.table, len(rows))
        spend = [report.table.costs[r][j] for r, j in zip(rows, run.choices[si], strict=True)]
        acc_s = acc_b = 0.0
        curve = []
        for t in range(len(rows)):
            acc_s += spend[t]
            acc_b += sched[t]
            if t >= window:
                acc_s -= spend[t - window]
                acc_b -= sched[t - window]
            curve.append(acc_s / acc_b if acc_b > 0 else math.nan)
        curves.append(curve)
    return [math.fsum(v) / len(v) for v in zip(*curves, strict=True)]


def _follow(
    report: ReplayReport, label: str | None, changes: Sequence[tuple[int, float]]
) -> tuple[int | None, ...]:
    if not changes:
        return ()
    run = report.run(label)
    budget = report.budget
    assert budget is not None
    n = min(len(r) for r in report.orders)
    w = FOLLOW_WINDOW
    # Mean over the seeds of the spend of the window of w calls ending at t, over its budget.
    sums = [0.0] * n
    for si, rows in enumerate(report.orders):
        sched = budget.schedule(report.table, len(rows))
        spend = [report.table.costs[r][j] for r, j in zip(rows, run.choices[si], strict=True)]
        acc_s = acc_b = 0.0
        for t in range(n):
            acc_s += spend[t]
            acc_b += sched[t]
            if t >= w:
                acc_s -= spend[t - w]
                acc_b -= sched[t - w]
            sums[t] += acc_s / acc_b if acc_b > 0 else math.nan
    ratio = [x / len(report.orders) for x in sums]
    out: list[int | None] = []
    bounds = [*sorted(c for c, _ in changes), n]
    for i, start in enumerate(bounds[:-1]):
        end = bounds[i + 1]
        lag: int | None = None
        # The first t from which no window ending in [t, end) spends above 110% of its budget.
        for t in range(end - 1, start - 1, -1):
            if ratio[t] <= 1.1:
                lag = t - start
            else:
                break
        out.append(lag)
    return tuple(out)


def budget_lines(report: ReplayReport) -> list[BudgetLine]:
    """Return each run's figures under the report's budget (see :class:`BudgetLine`)."""
    budget = report.budget
    if budget is None:
        raise ValueError("this replay had no budget")
    table = report.table
    out = []
    for run in report.runs:
        qs, pb, pt, sp, pct, wmax = [], [], [], [], [], []
        for si, rows in enumerate(report.orders):
            sched = budget.schedule(table, len(rows))
            cols = run.choices[si]
            got = math.fsum(table.scores[r][j] for r, j in zip(rows, cols, strict=True))
            spend = [table.costs[r][j] for r, j in zip(rows, cols, strict=True)]
            n = len(rows)
            qs.append(got / n)
            free = hindsight_best(table, rows, sched)
            pb.append(100.0 * got / free if free else math.nan)
            per_task = hindsight_best_per_context(table, rows, sched)
            pt.append(100.0 * got / per_task if per_task else math.nan)
            total_budget = math.fsum(sched)
            sp.append(math.fsum(spend) / n)
            pct.append(100.0 * math.fsum(spend) / total_budget if total_budget else math.nan)
            wmax.append(_windows_max(spend, sched, SPEND_WINDOW))
        out.append(
            BudgetLine(
                label=run.label,
                quality=_mean(qs),
                quality_std=_std(qs),
                pct_best_mixture=_mean(pb),
                pct_best_mixture_std=_std(pb),
                pct_best_per_task=_mean(pt),
                spend_per_call=_mean(sp),
                pct_budget=_mean(pct),
                pct_budget_max=max(pct),
                window_max=max(wmax),
                follow=_follow(report, run.label, budget.changes),
            )
        )
    return out


def spend_per_call(
    report: ReplayReport, label: str | None = None, window: int = FOLLOW_WINDOW
) -> tuple[list[float], list[float]]:
    """Mean over the seeds of the spend per call (USD) of the last ``window`` calls and so far."""
    run = report.run(label)
    last, total = [], []
    for si, rows in enumerate(report.orders):
        spend = [report.table.costs[r][j] for r, j in zip(rows, run.choices[si], strict=True)]
        acc = acc_all = 0.0
        a, b = [], []
        for t in range(len(spend)):
            acc += spend[t]
            acc_all += spend[t]
            if t >= window:
                acc -= spend[t - window]
            a.append(acc / min(t + 1, window))
            b.append(acc_all / (t + 1))
        last.append(a)
        total.append(b)
    return (
        [math.fsum(v) / len(v) for v in zip(*last, strict=True)],
        [math.fsum(v) / len(v) for v in zip(*total, strict=True)],
    )


def format_budget_report(report: ReplayReport, *, source: bool = True) -> str:
    """Return a budget replay as text: what was replayed, each run's figures, the references."""
    budget = report.budget
    if budget is None:
        raise ValueError("this replay had no budget")
    t = report.table
    s = report.settings
    rows0 = report.orders[0]
    n = len(rows0)
    sched = budget.schedule(t, n)
    head = [
        f"{t.name}: {n:,} prompts x {len(t.models)} models"
        + (f" ({t.dropped} incomplete prompts dropped)" if t.dropped else ""),
        f"budget: {budget.label(t)}  [the router learns the score only; every model's "
        "expected cost is known]",
        f"order: {report.order}, {len(report.seeds)} seed{'s' if len(report.seeds) > 1 else ''}"
        " (mean shown); through: "
        + ("BanditRouterRunnable (LangChain)" if report.path == "router" else "Bandit engine")
        + f"; context: {'task (one shared budget)' if s['context'] else 'none'}"
        + (f" (seeded, weight {s['context_prior_weight']:g})" if s["context_prior_weight"] else "")
        + (f"; decay {s['decay']:g}" if s["decay"] else "; stationary")
        + ("; warm start (priors)" if s["priors"] else ""),
    ]
    lines = budget_lines(report)
    width = max(34, *(len(line.label) for line in lines))
    follow = bool(budget.changes)
    cols = (
        f"{'':{width}}  {'quality':>7} {'+-':>5} {'% best mix':>10} {'+-':>5} {'% per-task':>10}"
        f" {'$ per call':>10} {'% budget':>8} {'(max)':>8} {'window max':>10}"
        + ("  follows after" if follow else "")
    )
    body = []
    for line in lines:
        row = (
            f"{line.label:{width}}  {line.quality:7.4f} {line.quality_std:5.3f} "
            f"{line.pct_best_mixture:10.2f} {line.pct_best_mixture_std:5.2f} "
            f"{line.pct_best_per_task:10.2f} {line.spend_per_call:10.6f} "
            f"{line.pct_budget:8.2f} {line.pct_budget_max:8.2f} {line.window_max:10.1f}"
        )
        if follow:
            row += "  " + ", ".join("never" if f is None else f"{f} calls" for f in line.follow)
        body.append(row)
    # References, over the first seed's prompts (a full order: the same prompts for every seed).
    best = hindsight_best(t, rows0, sched) / n
    per_task = hindsight_best_per_context(t, rows0, sched) / n
    q, c = _column_means(t, rows0)
    top = _top(t)
    cheap = min(range(len(c)), key=c.__getitem__)
    refs = [
        "best fixed mixture in hindsight: "
        + (describe_mixture(t, rows0, sched[0]) if not follow else f"{best:.4f} (per period)"),
        f"best fixed per-task mixtures in hindsight, one shared budget: {per_task:.4f}",
        f"always {t.models[top]} (top quality): {q[top]:.4f} at ${c[top]:.6f} per call; "
        f"always {t.models[cheap]} (cheapest): {q[cheap]:.4f} at ${c[cheap]:.6f}",
    ]
    legend = (
        "% best mix: quality over the best fixed mixture's in hindsight under the same budget "
        "(an exact LP); % per-task: over the best fixed per-task mixtures' under one shared "
        "budget; % budget: total spend over total budget (max: the worst seed); window max: "
        f"the most any {SPEND_WINDOW} calls after the first {SPEND_WINDOW} spent, % of their "
        "budget (worst seed)"
        + (
            f"; follows after: calls after a change until no {FOLLOW_WINDOW}-call window "
            "spends more than 110% of its budget (mean over seeds)"
            if follow
            else ""
        )
        + "."
    )
    foot = textwrap.wrap(legend, 100)
    foot.extend(f"{r.label}: {r.seconds:.1f} s" for r in report.runs)
    if source and t.source:
        foot.append("data: " + "\n      ".join(t.source.splitlines()[:2]))
    return "\n".join([*head, "", cols, *body, "", *refs, "", *foot])
