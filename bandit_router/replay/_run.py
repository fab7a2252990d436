"""Replaying an outcome table through a real router, with baselines and the figures of a report.

For every seed, the prompts are visited in one order (``numpy.random.default_rng(seed)
.permutation(n)``, as the reference replay does); at each prompt the router picks an arm, the
arm answers with its logged outcome, and the router learns. Only the chosen arm's outcome is
shown to the router, but every arm's is known, so the regret against any fixed arm, or against
the per-prompt oracle, is exact.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from bandit_router._bandit import Bandit
from bandit_router._stats import Prior
from bandit_router.core._loops import run_on_portal
from bandit_router.langchain.runnable import BanditRouterRunnable
from bandit_router.policies import KLUCB, UCB1, Policy, ThompsonSampling, UCBTuned
from bandit_router.replay._arm import replay_arms
from bandit_router.replay._budget import ReplayBudget, replay_order
from bandit_router.replay._table import DatasetError, OutcomeTable
from bandit_router.rewards import inline

__all__ = [
    "POLICIES",
    "Line",
    "PolicyRun",
    "ReplayReport",
    "areplay",
    "load_priors",
    "make_orders",
    "make_policy",
    "replay",
    "save_priors",
]

#: Policies by name, as the CLI's ``--policy`` accepts them.
POLICIES: Final[dict[str, Callable[[], Policy]]] = {
    "klucb": KLUCB,
    "klucb-log": lambda: KLUCB(rate="log"),
    "klucb-bernoulli": lambda: KLUCB(variance=False),
    "klucb-log-bernoulli": lambda: KLUCB(rate="log", variance=False),
    "ucb1": UCB1,
    "ucb-tuned": UCBTuned,
    "thompson": ThompsonSampling,
}

#: How the prompts are ordered: shuffled per seed, grouped by task (shuffled inside each
#: task, tasks in the order they first appear), or the table's own order.
Order = Literal["shuffled", "blocked", "table"]
#: Which machinery replays: the LangChain router (the real thing) or the Bandit engine under
#: it (the same policy code and store, without LangChain; much faster).
ReplayPath = Literal["router", "engine"]

Progress = Callable[[int, int], None]


def make_policy(name: str) -> Policy:
    """Return a new policy from its name in :data:`POLICIES`.

    Raises:
        ValueError: For an unknown name; the message lists the known ones.
    """
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}") from None


def _permutation(seed: int, n: int) -> list[int]:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover (numpy is a dev dependency)
        raise RuntimeError(
            "shuffled replay orders need numpy (they are numpy.random.default_rng(seed)"
            ".permutation(n), as in the reference replay): pip install numpy, or use "
            "order='table'"
        ) from None
    out: list[int] = np.random.default_rng(seed).permutation(n).tolist()
    return out


def make_orders(
    table: OutcomeTable, seeds: Sequence[int], order: Order = "shuffled", limit: int | None = None
) -> list[list[int]]:
    """Return, for each seed, the rows of ``table`` in the order they are replayed.

    Args:
        table: The outcome table.
        seeds: One order per seed.
        order: ``"shuffled"``: ``numpy.random.default_rng(seed).permutation(n)``;
            ``"blocked"``: the same permutation, stably grouped by task (tasks in the order
            they first appear in the table); ``"table"``: the table's order for every seed.
        limit: Keep only the first ``limit`` prompts of each order.
    """
    n = len(table)
    out: list[list[int]] = []
    rank = {t: i for i, t in enumerate(table.task_names())}
    for seed in seeds:
        if order == "table":
            rows = list(range(n))
        else:
            rows = _permutation(seed, n)
            if order == "blocked":
                rows.sort(key=lambda r: rank[table.tasks[r]])
            elif order != "shuffled":
                raise ValueError(f"order must be shuffled, blocked or table, got {order!r}")
        out.append(rows[:limit] if limit is not None else rows)
    return out


@dataclass(frozen=True)
class PolicyRun:
    """One policy replayed over every seed's order.

    Attributes:
        label: How reports name it (the policy's name plus its options).
        choices: For each seed, the model (column) chosen at each step.
        seconds: Wall-clock time the replay took.
    """

    label: str
    choices: tuple[tuple[int, ...], ...]
    seconds: float


@dataclass(frozen=True)
class Line:
    """One line of a report's results table (a policy or a baseline), averaged over seeds.

    Attributes:
        label: The policy or baseline.
        mean_reward: Mean normalised reward per prompt.
        pct_best: Mean reward as a percentage of the best fixed arm's (in hindsight).
        pct_best_std: Standard deviation of ``pct_best`` over the seeds.
        pct_oracle: Mean reward as a percentage of the per-prompt oracle's.
        mean_score: Mean quality (score) per prompt.
        total_cost: Total cost of the replay (sum over its prompts).
        cost_vs_top: ``total_cost`` as a percentage of always calling the model with the
            highest mean score.
        regret: Cumulative regret against the best fixed arm: the sum over the prompts of
            its reward minus this line's (negative: better than the best fixed arm).
    """

    label: str
    mean_reward: float
    pct_best: float
    pct_best_std: float
    pct_oracle: float
    mean_score: float
    total_cost: float
    cost_vs_top: float
    regret: float


@dataclass
class ReplayReport:
    """The outcome of a replay: policies and baselines over the same orders.

    Attributes:
        table: The outcome table replayed.
        lam: The cost weight of the reward.
        order: How the prompts were ordered.
        seeds: The seeds, one order each.
        orders: The rows visited, per seed.
        runs: The policies replayed.
        path: ``"router"`` or ``"engine"``.
        settings: The options of the run, for the report's header.
        learned: What the router learned for each cell (the clipped reward, or the score
            when costs are known).
        budget: The budget the router kept, if any (``bandit_router.replay._budget``).
    """

    table: OutcomeTable
    lam: float
    order: Order
    seeds: tuple[int, ...]
    orders: list[list[int]]
    runs: list[PolicyRun]
    path: ReplayPath
    settings: dict[str, Any] = field(default_factory=dict)
    learned: list[list[float]] = field(default_factory=list)
    budget: ReplayBudget | None = None
    _rewards: list[list[float]] | None = field(default=None, repr=False)

    @property
    def rewards(self) -> list[list[float]]:
        """Every cell's normalised reward (unclipped), as the figures use it."""
        if self._rewards is None:
            self._rewards = self.table.rewards(self.lam)
        return self._rewards

    def best_fixed(self, seed_index: int = 0) -> int:
        """Return the column of the best fixed arm in hindsight over one seed's prompts."""
        return _argmax_mean(self.rewards, self.orders[seed_index])

    def top_quality(self, seed_index: int = 0) -> int:
        """Return the column of the model with the highest mean score over one seed's prompts."""
        return _argmax_mean(self.table.scores, self.orders[seed_index])

    def run(self, label: str | None = None) -> PolicyRun:
        """Return the run named ``label`` (default: the first)."""
        if label is None:
            return self.runs[0]
        for r in self.runs:
            if r.label == label:
                return r
        raise KeyError(f"no run {label!r}; the runs are {[r.label for r in self.runs]}")

    # --- the figures ---------------------------------------------------------------------

    def _columns(self, seed_index: int, chooser: Callable[[int, int], int]) -> list[int]:
        return [chooser(t, row) for t, row in enumerate(self.orders[seed_index])]

    def _line(self, label: str, columns: Callable[[int], Sequence[int]] | None) -> Line:
        """Summarise per-seed choices (``columns(seed_index)``); ``None``: uniform random."""
        rw, sc, co = self.rewards, self.table.scores, self.table.costs
        k = len(self.table.models)
        means, pb, po, ms, tc, ct, rg = [], [], [], [], [], [], []
        for si, rows in enumerate(self.orders):
            if columns is None:  # the expectation of a uniformly random choice
                r = [math.fsum(rw[row]) / k for row in rows]
                s = [math.fsum(sc[row]) / k for row in rows]
                c = [math.fsum(co[row]) / k for row in rows]
            else:
                cols = columns(si)
                r = [rw[row][j] for row, j in zip(rows, cols, strict=True)]
                s = [sc[row][j] for row, j in zip(rows, cols, strict=True)]
                c = [co[row][j] for row, j in zip(rows, cols, strict=True)]
            n = len(rows)
            best = self.best_fixed(si)
            top = self.top_quality(si)
            best_sum = math.fsum(rw[row][best] for row in rows)
            oracle_sum = math.fsum(max(rw[row]) for row in rows)
            top_cost = math.fsum(co[row][top] for row in rows)
            total = math.fsum(r)
            means.append(total / n)
            pb.append(100.0 * total / best_sum if best_sum else math.nan)
            po.append(100.0 * total / oracle_sum if oracle_sum else math.nan)
            ms.append(math.fsum(s) / n)
            tc.append(math.fsum(c))
            ct.append(100.0 * math.fsum(c) / top_cost if top_cost else math.nan)
            rg.append(best_sum - total)
        return Line(
            label=label,
            mean_reward=_mean(means),
            pct_best=_mean(pb),
            pct_best_std=_std(pb),
            pct_oracle=_mean(po),
            mean_score=_mean(ms),
            total_cost=_mean(tc),
            cost_vs_top=_mean(ct),
            regret=_mean(rg),
        )

    def lines(self, baselines: bool = True) -> list[Line]:
        """Return the results table: every run, then the baselines."""
        out = [self._line(r.label, _choices_of(r)) for r in self.runs]
        if not baselines:
            return out
        models = self.table.models
        k = len(models)
        rw = self.rewards
        best = self.best_fixed()
        top = self.top_quality()
        out.append(self._line(f"best fixed arm: {models[best]}", lambda si: self._fixed(si)))
        if top != best:
            out.append(
                self._line(
                    f"always {models[top]} (top quality)",
                    lambda si: [self.top_quality(si)] * len(self.orders[si]),
                )
            )
        out.append(self._line("uniform random (expected)", None))
        out.append(self._line("round-robin", lambda si: self._columns(si, lambda t, row: t % k)))
        out.append(
            self._line(
                "oracle (best arm per prompt)",
                lambda si: self._columns(
                    si, lambda t, row: _oracle(rw[row], self.table.costs[row])
                ),
            )
        )
        return out

    def _fixed(self, si: int) -> list[int]:
        return [self.best_fixed(si)] * len(self.orders[si])

    def regret_curve(self, label: str | None = None) -> list[float]:
        """Return the cumulative regret against the best fixed arm after each step (seed mean)."""
        run = self.run(label)
        rw = self.rewards
        curves = []
        for si, rows in enumerate(self.orders):
            best = self.best_fixed(si)
            acc, curve = 0.0, []
            for row, j in zip(rows, run.choices[si], strict=True):
                acc += rw[row][best] - rw[row][j]
                curve.append(acc)
            curves.append(curve)
        return [math.fsum(v) / len(v) for v in zip(*curves, strict=True)]

    def ratio_curve(self, label: str | None = None) -> list[float]:
        """Return, after each step, the reward so far over the best fixed arm's (seed mean)."""
        run = self.run(label)
        rw = self.rewards
        curves = []
        for si, rows in enumerate(self.orders):
            best = self.best_fixed(si)
            got = ref = 0.0
            curve = []
            for row, j in zip(rows, run.choices[si], strict=True):
                got += rw[row][j]
                ref += rw[row][best]
                curve.append(got / ref if ref else math.nan)
            curves.append(curve)
        return [math.fsum(v) / len(v) for v in zip(*curves, strict=True)]

    def allocation(self, label: str | None = None, bins: int = 50) -> list[list[float]]:
        """Return, for each of ``bins`` consecutive windows of steps, each arm's share of calls."""
        run = self.run(label)
        k = len(self.table.models)
        steps = min(len(c) for c in run.choices)
        bins = max(1, min(bins, steps))
        out = []
        for b in range(bins):
            lo, hi = b * steps // bins, (b + 1) * steps // bins
            counts = [0] * k
            for choices in run.choices:
                for j in choices[lo:hi]:
                    counts[j] += 1
            total = sum(counts) or 1
            out.append([c / total for c in counts])
        return out

    def priors(self, label: str | None = None, max_weight: float | None = None) -> dict[str, Prior]:
        """Return what a run learned as priors for a later router: ``{arm: Prior}``.

        Each arm's prior mean is the mean learned value over its calls in every seed; its
        weight is its mean number of calls per seed, capped at ``max_weight``.
        """
        run = self.run(label)
        k = len(self.table.models)
        sums, counts = [0.0] * k, [0] * k
        for si, rows in enumerate(self.orders):
            for row, j in zip(rows, run.choices[si], strict=True):
                sums[j] += self.learned[row][j]
                counts[j] += 1
        seeds = len(self.orders)
        out = {}
        for j, m in enumerate(self.table.models):
            if counts[j]:
                w = counts[j] / seeds
                if max_weight is not None:
                    w = min(w, max_weight)
                out[m] = Prior(mean=min(max(sums[j] / counts[j], 0.0), 1.0), weight=w)
        return out


def _choices_of(run: PolicyRun) -> Callable[[int], Sequence[int]]:
    return lambda si: run.choices[si]


def _argmax_mean(matrix: Sequence[Sequence[float]], rows: Sequence[int]) -> int:
    k = len(matrix[rows[0]])
    sums = [math.fsum(matrix[r][j] for r in rows) for j in range(k)]
    return max(range(k), key=lambda j: (sums[j], -j))


def _oracle(rewards: Sequence[float], costs: Sequence[float]) -> int:
    """The best arm on one prompt; among equals, the cheapest (then the first)."""
    return min(range(len(rewards)), key=lambda j: (-rewards[j], costs[j], j))


def _mean(v: Sequence[float]) -> float:
    return math.fsum(v) / len(v) if v else math.nan


def _std(v: Sequence[float]) -> float:
    if len(v) < 2:
        return 0.0
    m = _mean(v)
    return math.sqrt(math.fsum((x - m) ** 2 for x in v) / len(v))


# --- running -----------------------------------------------------------------------------


def known_costs(table: OutcomeTable, lam: float) -> dict[str, float]:
    """Return each arm's known cost in quality units: ``lam * mean cost / cost_scale``.

    The arm's mean cost per call over the table stands for its price list times its typical
    token usage: known before any call, so the router need not learn it.
    """
    return {
        m: lam * c / table.cost_scale for m, c in zip(table.models, table.mean_costs(), strict=True)
    }


def learned_values(table: OutcomeTable, lam: float, prices: bool) -> list[list[float]]:
    """Return what the router learns from each cell.

    With ``prices`` the score (quality only: the cost is known); otherwise the normalised
    reward, clipped into [0, 1] because a router only accepts rewards there (a call dearer than
    the cost scale can fall below 0; the figures use the unclipped value).
    """
    if prices:
        return [list(row) for row in table.scores]
    return [[min(max(r, 0.0), 1.0) for r in row] for row in table.rewards(lam)]


async def _replay_one(
    table: OutcomeTable,
    rows: Sequence[int],
    *,
    policy: Policy,
    seed: int,
    learned: list[list[float]],
    costs: Mapping[str, float] | None,
    context: bool,
    context_prior_weight: float | None,
    decay: float | None,
    priors: Mapping[str, Prior] | None,
    path: ReplayPath,
    step: Callable[[], None],
    budget: ReplayBudget | None = None,
) -> tuple[int, ...]:
    if budget is not None:
        if path != "engine":
            raise RuntimeError(
                "budget replays run through the engine until BanditRouterRunnable takes "
                "budget=: use path='engine' (bandit-router replay --engine)"
            )
        return replay_order(
            table,
            rows,
            budget,
            policy=policy,
            seed=seed,
            context=context,
            context_prior_weight=context_prior_weight,
            decay=decay,
            priors=priors,
            step=step,
        )
    col = {m: j for j, m in enumerate(table.models)}
    tasks = table.tasks
    ids = table.prompt_ids
    out: list[int] = []
    if path == "engine":
        bandit = Bandit(
            table.models,
            name="replay",
            policy=policy,
            priors=priors,
            decay=decay,
            seed=seed,
            context_prior_weight=context_prior_weight,
            costs=costs,
        )
        choose, reward = bandit.choose, bandit.reward
        for row in rows:
            d = await choose(context=tasks[row] if context else "")
            j = col[d.arm]
            await reward(d.decision_id, learned[row][j])
            out.append(j)
            step()
        return tuple(out)

    # Inline: a table lookup, scored before the next call is routed, as the engine path does.
    @inline
    def evaluate(outputs: Any) -> float:
        meta = outputs.response_metadata
        return float(learned[meta["row"]][col[meta["model_name"]]])

    index = {pid: i for i, pid in enumerate(ids)}
    extra: dict[str, Any] = {}
    if costs is not None:
        if "costs" not in BanditRouterRunnable.model_fields:  # pragma: no cover
            raise RuntimeError("this BanditRouterRunnable has no costs= option: use the engine")
        extra["costs"] = costs
    router = BanditRouterRunnable(
        arms=replay_arms(table),
        policy=policy,
        priors=dict(priors) if priors else None,
        decay=decay,
        reward=evaluate,
        name="replay",
        context_key=(lambda pid: tasks[index[pid]]) if context else None,
        context_prior_weight=context_prior_weight,
        max_attempts=1,
        timeout=None,
        seed=seed,
        telemetry=False,
        **extra,
    )
    for row in rows:
        msg = await router.ainvoke(ids[row])
        out.append(col[msg.response_metadata["bandit_router"]["arm"]])
        step()
    return tuple(out)


async def areplay(
    table: OutcomeTable,
    policies: Sequence[str | Policy] = ("klucb",),
    *,
    lam: float = 0.0,
    seeds: int | Sequence[int] = 10,
    order: Order = "shuffled",
    limit: int | None = None,
    prices: bool = False,
    context: bool = False,
    context_prior_weight: float | None = None,
    decay: float | None = None,
    priors: Mapping[str, Prior] | None = None,
    path: ReplayPath = "router",
    progress: Progress | None = None,
    budget: ReplayBudget | None = None,
) -> ReplayReport:
    """Replay ``table`` with each policy over the same orders; see :func:`replay`."""
    if not (isinstance(lam, int | float) and math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    if budget is not None:
        if lam or prices:
            raise ValueError(
                "a budget replay learns the score only, with the costs known: lam and prices "
                "do not apply"
            )
        if not isinstance(budget, ReplayBudget):
            raise ValueError(f"budget must be a ReplayBudget, got {budget!r}")
    if path not in ("router", "engine"):
        raise ValueError(f"path must be 'router' or 'engine', got {path!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit!r}")
    seed_list = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    if not seed_list:
        raise ValueError("at least one seed is needed")
    pols = [make_policy(p) if isinstance(p, str) else p for p in policies]
    if not pols:
        raise ValueError("at least one policy is needed")
    orders = make_orders(table, seed_list, order, limit)
    learned = learned_values(table, lam, prices or budget is not None)
    costs = known_costs(table, lam) if prices else None
    total = len(pols) * sum(len(o) for o in orders)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    suffix = "".join(
        s
        for s, on in (
            (" +prices", prices),
            (" +context", context),
            (f" decay={decay:g}" if decay else "", decay is not None),
            (" +priors", bool(priors)),
            (
                f" budget={budget.amount:g}{'usd' if budget.unit == 'usd' else ''}"
                if budget
                else "",
                budget is not None,
            ),
        )
        if on
    )
    runs: list[PolicyRun] = []
    for pol in pols:
        t0 = time.perf_counter()
        choices = []
        for seed, rows in zip(seed_list, orders, strict=True):
            choices.append(
                await _replay_one(
                    table,
                    rows,
                    policy=pol,
                    seed=seed,
                    learned=learned,
                    costs=costs,
                    context=context,
                    context_prior_weight=context_prior_weight,
                    decay=decay,
                    priors=priors,
                    path=path,
                    step=step,
                    budget=budget,
                )
            )
        runs.append(PolicyRun(pol.name + suffix, tuple(choices), time.perf_counter() - t0))
    return ReplayReport(
        table=table,
        lam=float(lam),
        order=order,
        seeds=seed_list,
        orders=orders,
        runs=runs,
        path=path,
        settings={
            "prices": prices,
            "context": context,
            "context_prior_weight": context_prior_weight,
            "decay": decay,
            "priors": bool(priors),
            "limit": limit,
        },
        learned=learned,
        budget=budget,
    )


def replay(
    table: OutcomeTable,
    policies: Sequence[str | Policy] = ("klucb",),
    *,
    lam: float = 0.0,
    seeds: int | Sequence[int] = 10,
    order: Order = "shuffled",
    limit: int | None = None,
    prices: bool = False,
    context: bool = False,
    context_prior_weight: float | None = None,
    decay: float | None = None,
    priors: Mapping[str, Prior] | None = None,
    path: ReplayPath = "router",
    progress: Progress | None = None,
    budget: ReplayBudget | None = None,
) -> ReplayReport:
    """Replay an outcome table through a real router, once per policy and seed.

    For each seed the prompts are visited in one order; for each prompt a
    :class:`~bandit_router.BanditRouterRunnable` whose arms are ReplayArm chat models picks
    a model, the model "answers" with its logged outcome, and the router learns the reward

        r = score - lam * cost / cost_scale,  normalised as (r + lam) / (1 + lam)

    (clipped into [0, 1] for learning). With ``prices`` the arms' costs are known instead
    (their mean cost per call over the table, as a price list gives it): the router learns the
    score alone and subtracts ``lam * cost / cost_scale`` from each arm's index. Every figure of
    the report uses the unclipped reward of the cell the router chose.

    Args:
        table: The outcome table.
        policies: Policy names (see :data:`POLICIES`) or policy objects.
        lam: Weight of cost in the reward (>= 0).
        seeds: A number of seeds (0, 1, ...) or the seeds themselves; one order each.
        order: ``"shuffled"``, ``"blocked"`` (grouped by task) or ``"table"``.
        limit: Replay only the first ``limit`` prompts of each order.
        prices: Cost is known, quality is learned (see above).
        context: Separate statistics per task (the router's ``context_key``).
        context_prior_weight: Seed each task's statistics from the global ones, worth at most
            this many observations.
        decay: The router's decay (``None``: stationary).
        priors: ``{arm: Prior}`` to start from (e.g. :meth:`ReplayReport.priors` of an
            earlier replay).
        path: ``"router"``: through the LangChain router (the default); ``"engine"``: through
            the :class:`~bandit_router.Bandit` under it (same policies and store, no LangChain,
            about 10x faster).
        progress: Called as ``progress(done, total)`` after every step.
        budget: Keep this average spend per call (:class:`ReplayBudget`) instead of trading
            quality for cost with ``lam``: the router learns the score only, knows every model's
            expected cost, and solves the optimistic LP of :mod:`bandit_router.budget`
            (engine path only, until the router takes a budget). See
            ``bandit_router.replay._budget.budget_lines`` for its figures.

    Returns:
        The report: results table, curves, and the priors learned.

    Raises:
        ValueError: On an invalid argument.
        RuntimeError: If shuffled orders are asked for and numpy is not installed.
    """
    coro = areplay(
        table,
        policies,
        lam=lam,
        seeds=seeds,
        order=order,
        limit=limit,
        prices=prices,
        context=context,
        context_prior_weight=context_prior_weight,
        decay=decay,
        priors=priors,
        path=path,
        progress=progress,
        budget=budget,
    )
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    return run_on_portal(coro)  # called from async code: run on the portal loop


# --- priors files ----------------------------------------------------------------------------


def save_priors(
    path: str | os.PathLike[str], priors: Mapping[str, Prior], *, learned: str, dataset: str
) -> None:
    """Write priors as JSON: ``{"learned": ..., "dataset": ..., "arms": {arm: {mean, weight}}}``.

    Args:
        path: The file to write.
        priors: ``{arm: Prior}``.
        learned: What the means measure (``"quality"`` or ``"reward lam=<lam>"``): priors only
            fit a router that learns the same thing.
        dataset: Where they were learned.
    """
    data = {
        "learned": learned,
        "dataset": dataset,
        "arms": {a: {"mean": p.mean, "weight": p.weight} for a, p in priors.items()},
    }
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def load_priors(path: str | os.PathLike[str]) -> tuple[dict[str, Prior], str]:
    """Read a priors file written by :func:`save_priors`.

    Returns:
        ``({arm: Prior}, learned)``.

    Raises:
        DatasetError: If the file is missing or malformed (one line naming file and problem).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(p, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(p, f"is not a priors JSON file ({exc})") from None
    arms = data.get("arms") if isinstance(data, dict) else None
    if not isinstance(arms, dict):
        raise DatasetError(p, "is not a priors JSON file (no 'arms' object)")
    out = {}
    for arm, v in arms.items():
        try:
            out[arm] = Prior(mean=v["mean"], weight=v["weight"])
        except (TypeError, KeyError, ValueError) as exc:
            raise DatasetError(p, f"bad prior for arm {arm!r}: {exc}") from None
    return out, str(data.get("learned", ""))
