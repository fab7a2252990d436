"""Budgets: the best quality the router can learn at a spending rate the user names.

A :class:`Budget` is an average spend per call, in USD ("$0.50 per 1,000 calls" is
``Budget(usd_per_call=0.0005, ...)``). The router then maximises quality subject to that rate,
learning quality as it goes (the DESIGN rule "cost is known, quality is learned": every arm's
expected cost is known, from its price list at first and from the mean of its observed costs
after).

The rule: an optimistic linear programme (bandits with knapsacks)
------------------------------------------------------------------
Before each call, with ``U_i`` each arm's optimistic quality (the policy's upper confidence
index, clipped to [0, 1]; 1 for an arm never observed), ``c_i`` its expected cost in USD and
``b`` the spending target of this call, the router solves::

    maximise  sum_i p_i U_i   subject to   sum_i p_i c_i <= b,   sum_i p_i = 1,   p >= 0

and plays the solution ``p``. This is the optimistic LP of Agrawal & Devanur, "Bandits
with concave rewards and convex knapsacks" (EC 2014), and of the UCB-style algorithms of
Badanidiyuru, Kleinberg & Slivkins, "Bandits with Knapsacks" (FOCS 2013; J. ACM 2018), with
optimism on quality only because costs are known. With one budget constraint the solution mixes
at most two arms: the two vertices ``a`` and ``d`` of the upper concave frontier of the points
``(c_i, U_i)`` around ``b``, with ``p_d = (b - c_a) / (c_d - c_a)``; the frontier's slope there,
``(U_d - U_a) / (c_d - c_a)``, is the LP's dual variable, the *price of money* in quality per
USD. If ``b`` is at least the cost of the frontier's best arm, that arm alone (the budget does
not bind, the price is 0); if ``b`` is below the cheapest arm's cost, the cheapest arm (the
price is infinite).

**Contexts share one budget.** With ``context_key`` the LP runs over contexts x arms, each
context weighted by its share of the calls so far (its traffic)::

    maximise  sum_x w_x sum_i p_xi U_xi   s.t.   sum_x w_x sum_i p_xi c_xi <= b,
              sum_i p_xi = 1 for every context x

It is a fractional knapsack: every context starts at its cheapest frontier vertex and the
budget buys the frontier segments of all contexts in decreasing order of slope, so money goes
where it buys the most quality; one price of money for all contexts, and at most one context
mixes two arms. Each context's frontier is the one it had at its last call (:class:`Ledger`
keeps them). With one context it is exactly the two-arm LP above.

**Rounding.** The mixture is played without dice: a carry accumulates the dear arm's share
``p_d`` at every call and the dear arm is called when it reaches one half, then the carry
loses 1 (error diffusion). The dear arm gets its share of the calls within one call, so the
spend does not wander with the luck of draws.

**Pacing.** The target of each call is the budget plus the credit spread over the window::

    b = B + credit / H

where ``credit`` is what the calls so far were allowed (``B`` each) minus what they cost (their
expected cost while in flight, their real cost once settled), and ``H`` the window in calls
(for a time window, the number of calls in the last window, an exponentially weighted count).
Overspending lowers the next targets until it is paid back over about ``H`` calls; savings are
spent the same way. Never more than ``B * H`` is saved, and nothing while the budget does not
bind (price 0: the best arm costs less than the target), so cheap spells do not turn into
bursts of dear calls later. The average spend per call tracks ``B`` within about one dear call
over ``H`` calls, whatever the costs' noise; a budget changed at run time applies from the next
call.

Concurrent calls count their expected cost from the moment they begin, so a burst cannot spend
the same credit twice, and the policy's index hallucinates their outcomes as the engine does
(Desautels, Krause & Burdick 2014). Priors and decay enter through the policy's index.

Example::

    from bandit_router.budget import Budget

    budget = Budget(
        usd_per_call=0.0005,                             # $0.50 per 1,000 calls, on average
        costs={"gpt-4o-mini": 0.0002, "gpt-4o": 0.004},  # USD per call, until observed
    )

Everything here is pure computation: no I/O, no clock (times are given), no LangChain.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Final

from bandit_router._errors import ConfigurationError

__all__ = [
    "DEFAULT_WINDOW",
    "Allocation",
    "Budget",
    "BudgetChoice",
    "BudgetWarning",
    "Ledger",
    "Mixture",
    "allocate",
    "best_mixture",
    "best_shared_mixture",
    "choose",
    "expected_costs",
    "frontier",
    "mixture",
    "optimistic",
]

#: The default window, in calls: deviations from the budget are made up over about this many
#: calls. Small enough that any few hundred calls spend close to the budget although one call
#: of a dear model can cost 20 calls' worth of it; large enough that one such call moves the
#: target of the next calls by a twentieth of its cost at most.
DEFAULT_WINDOW: Final = 50

#: A context's optimistic frontier: its vertices as ``(arm, expected cost, optimistic value)``,
#: cheapest first.
Frontier = tuple[tuple[str, float, float], ...]


class BudgetWarning(UserWarning):
    """A budget that cannot be kept as given (below the cheapest arm's expected cost)."""


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


@dataclass(frozen=True, slots=True)
class Budget:
    """An average spend per call, in USD, and every arm's expected cost.

    Args:
        usd_per_call: The average spend per call to keep, in USD (finite, >= 0). A budget below
            every arm's expected cost cannot be kept: the router then calls the cheapest arm,
            and binding it to the arms warns (:class:`BudgetWarning`).
        costs: ``{arm: USD per call}``: each arm's expected cost before any of its calls is
            observed (its price list times its typical token usage). It counts as one observed
            call: the expected cost is then ``(cost + sum of observed costs) / (1 + observed
            calls)``. Every arm needs one.
        window: How quickly spending above or below the budget is made up, and the most
            savings kept: a number of calls (an ``int`` >= 1, default :data:`DEFAULT_WINDOW`)
            or a duration (a ``timedelta``: the calls of the last such period, e.g.
            ``timedelta(hours=1)``).

    Raises:
        ConfigurationError: If ``usd_per_call`` is negative, NaN or infinite, a cost is not a
            finite number >= 0, or the window is not an int >= 1 nor a positive timedelta; the
            message names the value.

    Example:
        >>> budget = Budget(0.0005, costs={"mini": 0.0002, "big": 0.004})  # $0.50 / 1,000 calls
        >>> budget.usd_per_call
        0.0005
    """

    usd_per_call: float
    costs: Mapping[str, float]
    window: int | timedelta = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        object.__setattr__(self, "usd_per_call", _number("budget usd_per_call", self.usd_per_call))
        if not isinstance(self.costs, Mapping):
            raise ConfigurationError(
                f"budget costs must be a mapping of arm -> USD per call, got {self.costs!r}"
            )
        checked = {}
        for arm, c in self.costs.items():
            if not isinstance(arm, str) or not arm:
                raise ConfigurationError(f"budget cost for an invalid arm name {arm!r}")
            checked[arm] = _number(f"budget cost for arm {arm!r}", c)
        object.__setattr__(self, "costs", MappingProxyType(checked))
        w = self.window
        if isinstance(w, timedelta):
            if w.total_seconds() <= 0:
                raise ConfigurationError(f"budget window must be a positive duration, got {w!r}")
        elif isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ConfigurationError(
                f"budget window must be a number of calls >= 1 or a timedelta, got {w!r}"
            )

    def bind(self, arms: Sequence[str]) -> tuple[float, ...]:
        """Return the arms' configured costs, aligned with ``arms``, checking they are all known.

        Warns (:class:`BudgetWarning`) when the budget is below every arm's expected cost.

        Raises:
            ConfigurationError: If an arm has no cost, or a cost names an unknown arm.
        """
        missing = [a for a in arms if a not in self.costs]
        if missing:
            raise ConfigurationError(
                f"budget costs have no price for arm(s) {missing}: every arm needs its expected "
                "USD per call"
            )
        unknown = sorted(set(self.costs) - set(arms))
        if unknown:
            raise ConfigurationError(
                f"budget cost for unknown arm(s) {unknown}; the arms are {list(arms)}"
            )
        out = tuple(self.costs[a] for a in arms)
        cheapest = min(range(len(arms)), key=out.__getitem__)
        if self.usd_per_call < out[cheapest]:
            warnings.warn(
                f"budget of {self.usd_per_call!r} USD per call is below the cheapest arm's "
                f"expected cost ({arms[cheapest]!r}: {out[cheapest]!r} USD): the router will "
                "call the cheapest arm",
                BudgetWarning,
                stacklevel=3,
            )
        return out

    def horizon(self, ledger: Ledger) -> float:
        """Return the window in calls (for a time window: the recent calls ``ledger`` counted)."""
        w = self.window
        if isinstance(w, timedelta):
            return max(ledger.recent, 1.0)
        return float(w)

    def target(self, ledger: Ledger) -> float:
        """Return the spending target of the next call: ``B + credit / H`` (USD, >= 0)."""
        return max(self.usd_per_call + ledger.credit / self.horizon(ledger), 0.0)


def expected_costs(
    configured: Sequence[float], cost_sum: Sequence[float], cost_count: Sequence[int]
) -> tuple[float, ...]:
    """Return each arm's expected cost: ``(configured + cost_sum) / (1 + cost_count)``.

    The configured cost (price list times typical usage) counts as one observed call, so one
    unusually long first answer does not decide an arm's expected cost alone.
    """
    return tuple(
        (c + s) / (1 + k) for c, s, k in zip(configured, cost_sum, cost_count, strict=True)
    )


# --- the linear programme ------------------------------------------------------------------


def frontier(
    costs: Sequence[float], values: Sequence[float], allowed: Sequence[bool] | None = None
) -> list[int]:
    """Return the vertices of the upper concave frontier of the points ``(costs[i], values[i])``.

    The frontier is what the LP can reach: its vertices, cheapest first, have increasing cost
    and value, and every point lies on or below the broken line through them (an arm that is
    dearer and no better than another, or below the segment between two others, is never part
    of an optimal mixture). Among arms with equal cost and value the first is kept.

    Args:
        costs: Expected cost per arm (finite).
        values: Value per arm (NaN counts as -inf: never preferred).
        allowed: Which arms may be used (default: all); at least one must be.

    Raises:
        ValueError: If no arm is allowed or the lengths differ.
    """
    k = len(costs)
    if len(values) != k or (allowed is not None and len(allowed) != k):
        raise ValueError("costs, values and allowed must have the same length")
    idx = [i for i in range(k) if allowed is None or allowed[i]]
    if not idx:
        raise ValueError("no arm is allowed")

    def val(i: int) -> float:
        v = values[i]
        return -math.inf if v != v else v

    idx.sort(key=lambda i: (costs[i], -val(i), i))
    pts: list[int] = []
    for i in idx:
        if pts and val(i) <= val(pts[-1]):
            continue  # dearer (or as dear) and no better than the last vertex
        while len(pts) >= 2:
            a, b = pts[-2], pts[-1]
            # Drop b if it lies on or below the segment from a to i (cross-multiplied slopes).
            if (val(b) - val(a)) * (costs[i] - costs[a]) <= (val(i) - val(a)) * (
                costs[b] - costs[a]
            ):
                pts.pop()
            else:
                break
        if pts and val(pts[-1]) == -math.inf:
            pts.pop()  # a vertex of value -inf is beaten by anything with a value
        pts.append(i)
    return pts


@dataclass(frozen=True, slots=True)
class Mixture:
    """The LP's solution for one context: at most two arms.

    Attributes:
        cheap: The cheaper arm (position).
        dear: The dearer arm (position; equal to ``cheap`` when the solution is one arm).
        share: The share of calls that go to ``dear`` (0 when one arm).
        value: The LP's value: ``(1 - share) * value[cheap] + share * value[dear]``.
        cost: The mixture's expected cost per call.
        price: The price of money at the solution (quality per USD): the frontier's slope
            between the two arms (at a vertex: of the next segment, what more money would
            buy); 0 when the budget does not bind; ``inf`` when it is below the cheapest arm's
            cost.
    """

    cheap: int
    dear: int
    share: float
    value: float
    cost: float
    price: float


def mixture(
    costs: Sequence[float],
    values: Sequence[float],
    budget: float,
    allowed: Sequence[bool] | None = None,
) -> Mixture:
    """Solve ``max sum p_i values_i  s.t.  sum p_i costs_i <= budget, p a distribution``.

    Exact: the optimum lies on the upper concave frontier (:func:`frontier`), on the segment
    whose ends bracket ``budget``. A budget below every allowed arm's cost is infeasible: the
    cheapest arm is returned (with ``price = inf``).
    """
    front = frontier(costs, values, allowed)
    return _on_frontier(front, costs, values, budget)


def _on_frontier(
    front: Sequence[int], costs: Sequence[float], values: Sequence[float], budget: float
) -> Mixture:
    first, last = front[0], front[-1]
    if budget < costs[first]:  # infeasible: the cheapest arm, at an infinite price of money
        return Mixture(first, first, 0.0, values[first], costs[first], math.inf)
    if budget >= costs[last]:  # the budget does not bind
        return Mixture(last, last, 0.0, values[last], costs[last], 0.0)
    for j in range(len(front) - 1):
        a, d = front[j], front[j + 1]
        if costs[a] <= budget < costs[d]:
            share = (budget - costs[a]) / (costs[d] - costs[a])
            value = values[a] + share * (values[d] - values[a])
            price = _slope(front, j, costs, values)
            if share <= 0.0:  # exactly at a vertex: that arm alone (money would buy more)
                return Mixture(a, a, 0.0, values[a], costs[a], price)
            return Mixture(a, d, share, value, budget, price)
    raise AssertionError("unreachable: the budget lies between the frontier's ends")


def _slope(front: Sequence[int], j: int, costs: Sequence[float], values: Sequence[float]) -> float:
    a, d = front[j], front[j + 1]
    return (values[d] - values[a]) / (costs[d] - costs[a])


def best_mixture(quality: Sequence[float], costs: Sequence[float], budget: float) -> Mixture:
    """The best fixed mixture of arms in hindsight under an average budget per call (exact LP).

    Args:
        quality: Each arm's mean quality over the calls.
        costs: Each arm's mean cost per call over the same calls.
        budget: The average spend per call allowed.

    Returns:
        The mixture (at most two arms) with the highest mean quality whose mean cost is within
        the budget (the cheapest arm if none is).
    """
    return mixture(costs, quality, budget)


@dataclass(frozen=True, slots=True)
class Allocation:
    """The LP's solution over several contexts sharing one budget.

    Attributes:
        mixtures: ``{context: (cheap arm, dear arm, share of dear)}`` (arm names).
        value: The traffic-weighted value (quality per call).
        cost: The traffic-weighted expected cost per call.
        price: The price of money (quality per USD): the slope of the segment the budget
            ends on (at a vertex: of the next segment, what more money would buy); 0 when the
            budget does not bind, ``inf`` when it is below the cheapest mixture.
    """

    mixtures: Mapping[str, tuple[str, str, float]]
    value: float
    cost: float
    price: float


def allocate(
    frontiers: Mapping[str, Frontier], weights: Mapping[str, float], budget: float
) -> Allocation:
    """Solve the LP over contexts x arms with one budget constraint (a fractional knapsack).

    ``maximise sum_x w_x v_x(p_x)  s.t.  sum_x w_x c_x(p_x) <= budget``, each ``p_x`` a mixture
    on context x's frontier. Every context starts at its cheapest vertex; the remaining budget
    buys frontier segments in decreasing order of slope (quality per USD), which is optimal
    because each frontier is concave; at most one segment is bought in part.

    Args:
        frontiers: Each context's frontier (vertices ``(arm, cost, value)``, cheapest first,
            increasing in cost and value, concave), as :class:`Ledger` keeps them.
        weights: Each context's traffic share (any positive scale; normalised here). A
            context without weight counts as 0.
        budget: The average spend per call allowed.

    Raises:
        ValueError: If there is no context or a frontier is empty.
    """
    if not frontiers:
        raise ValueError("no context to allocate a budget to")
    total = math.fsum(max(weights.get(x, 0.0), 0.0) for x in frontiers)
    share = {
        x: (max(weights.get(x, 0.0), 0.0) / total if total > 0 else 1.0 / len(frontiers))
        for x in frontiers
    }
    chosen: dict[str, tuple[str, str, float]] = {}
    base_cost = base_value = 0.0
    segments: list[tuple[float, str, int]] = []
    for x, f in frontiers.items():
        if not f:
            raise ValueError(f"context {x!r} has an empty frontier")
        arm, c, v = f[0]
        chosen[x] = (arm, arm, 0.0)
        base_cost += share[x] * c
        base_value += share[x] * v
        for j in range(len(f) - 1):
            (_, c0, v0), (_, c1, v1) = f[j], f[j + 1]
            segments.append(((v1 - v0) / (c1 - c0), x, j))
    if budget < base_cost:
        return Allocation(MappingProxyType(chosen), base_value, base_cost, math.inf)
    # Slopes decrease along each concave frontier, so this order takes each context's segments
    # in order; ties are taken context by context.
    segments.sort(key=lambda s: (-s[0], s[1], s[2]))
    left = budget - base_cost
    value, cost, price = base_value, base_cost, 0.0
    for slope, x, j in segments:
        if left <= 0.0:  # spent: the next segment's slope is what money would buy
            price = slope
            break
        f = frontiers[x]
        (a, c0, v0), (d, c1, v1) = f[j], f[j + 1]
        w = share[x]
        need = w * (c1 - c0)
        if need <= 0.0:
            continue
        if left >= need:
            left -= need
            chosen[x] = (d, d, 0.0)
            value += w * (v1 - v0)
            cost += need
        else:
            frac = left / need
            chosen[x] = (a, d, frac)
            value += frac * w * (v1 - v0)
            cost += left
            price = slope
            break
    return Allocation(MappingProxyType(chosen), value, cost, price)


def best_shared_mixture(
    weights: Mapping[str, float],
    quality: Mapping[str, Sequence[float]],
    costs: Mapping[str, Sequence[float]],
    arms: Sequence[str],
    budget: float,
) -> Allocation:
    """The best fixed per-context mixtures in hindsight under one shared budget (exact LP).

    Args:
        weights: Each context's number (or share) of calls.
        quality: Each context's mean quality per arm (aligned with ``arms``).
        costs: Each context's mean cost per call per arm (aligned with ``arms``).
        arms: The arm names.
        budget: The average spend per call allowed over all calls.
    """
    fronts = {x: _as_frontier(arms, costs[x], quality[x], None) for x in quality}
    return allocate(fronts, weights, budget)


def _as_frontier(
    arms: Sequence[str],
    costs: Sequence[float],
    values: Sequence[float],
    allowed: Sequence[bool] | None,
) -> Frontier:
    return tuple(
        (arms[i], float(costs[i]), float(values[i])) for i in frontier(costs, values, allowed)
    )


# --- the shared spending state ------------------------------------------------------------


@dataclass(slots=True)
class Ledger:
    """The spending state one budget shares across a router's contexts and workers.

    A store keeps one ledger per router name (all contexts), next to the per-arm statistics
    (whose raw, never-decayed ``cost_sum`` and ``cost_count`` give the expected costs, see
    :func:`expected_costs`), and updates it in the same atomic step as the call's statistics:

    * ``begin`` (a call is routed): with ``B`` the budget in force, ``H`` its window and
      ``c`` the chosen arm's expected cost, ``credit = min(credit + B - c, B * H)``, but when
      the budget did not bind ``credit = min(credit + B - c, max(credit, 0))`` first;
      ``carry += share - (1 if the dear arm was called else 0)`` when the mixture had two
      arms; ``spent += c``; ``calls += 1``; ``traffic[context] += 1``;
      ``frontiers[context] = choice.frontier`` (overwritten); for a time window,
      ``recent = recent * exp(-(now - stamp) / window) + 1`` and ``stamp = now``. The decision
      keeps ``c`` (its expected cost) for the settlement.
    * ``charge`` (a fallback attempt of the same call): ``credit -= c``, ``spent += c``.
    * ``settle`` (the real cost ``x`` is known): ``credit += c - x``, ``spent += x - c`` (plain
      increments); an unknown cost leaves the expected one.

    Nothing decays except ``recent``; a selection reads the whole ledger (a snapshot is fine:
    the next begin applies the cap).

    Attributes:
        credit: USD: the allowance of every call begun (the budget in force when it began)
            minus its cost (expected while in flight, real once settled), capped at
            ``usd_per_call * window`` when a call begins; a call the budget did not bind adds
            nothing above 0. Never decayed.
        carry: The rounding carry of the mixtures, in [-1/2, 1/2): each call adds the share
            of its mixture's dear arm and takes 1 when it calls the dear arm (error diffusion),
            so the dear arm gets its share of the calls within one call, without draws.
        spent: USD spent (expected cost for calls in flight, real cost once settled). Raw.
        calls: Calls begun. Raw.
        recent: Calls in the last time window (an exponentially weighted count; time windows
            only).
        stamp: When the last call began (time windows only), in the caller's clock.
        traffic: Calls begun per context. Raw.
        frontiers: Each context's optimistic frontier at its last call.
    """

    credit: float = 0.0
    carry: float = 0.0
    spent: float = 0.0
    calls: int = 0
    recent: float = 0.0
    stamp: float | None = None
    traffic: dict[str, int] = field(default_factory=dict)
    frontiers: dict[str, Frontier] = field(default_factory=dict)

    def copy(self) -> Ledger:
        """Return an independent copy (a snapshot)."""
        return Ledger(
            self.credit,
            self.carry,
            self.spent,
            self.calls,
            self.recent,
            self.stamp,
            dict(self.traffic),
            dict(self.frontiers),
        )

    def begin(
        self,
        budget: Budget,
        choice: BudgetChoice,
        *,
        context: str = "",
        now: float | None = None,
    ) -> None:
        """Count a new call: its allowance, its expected cost, the carry, its context's frontier.

        A call the budget did not bind (:attr:`BudgetChoice.binding`) saves nothing: its
        allowance only pays back a debt.

        Args:
            budget: The budget in force.
            choice: The call's choice (:func:`choose`).
            context: The call's context.
            now: The time (seconds; used by a time window).
        """
        if isinstance(budget.window, timedelta):
            tau = budget.window.total_seconds()
            t = 0.0 if now is None else now
            if self.stamp is not None:
                self.recent *= math.exp(-max(t - self.stamp, 0.0) / tau)
            self.recent += 1.0
            self.stamp = t
        expected = choice.expected_cost
        credit = self.credit + budget.usd_per_call - expected
        if not choice.binding:
            # Nothing worth buying was left unbought: pay back a debt, but save nothing.
            credit = min(credit, max(self.credit, 0.0))
        self.credit = min(credit, budget.usd_per_call * budget.horizon(self))
        if choice.share > 0.0:
            self.carry += choice.share - (1.0 if choice.arm == choice.dear else 0.0)
        self.spent += expected
        self.calls += 1
        self.traffic[context] = self.traffic.get(context, 0) + 1
        self.frontiers[context] = choice.frontier

    def charge(self, expected_cost: float) -> None:
        """Count another attempt of a call already begun (a fallback to another arm)."""
        self.credit -= expected_cost
        self.spent += expected_cost

    def settle(self, expected_cost: float, cost: float | None) -> None:
        """Replace an attempt's expected cost by its real cost (``None``: keep the expected)."""
        if cost is None:
            return
        self.credit += expected_cost - cost
        self.spent += cost - expected_cost


@dataclass(frozen=True, slots=True)
class BudgetChoice:
    """Why a budgeted selection chose its arm (for spans and statistics).

    Attributes:
        arm: The arm chosen.
        cheap: The cheaper arm of this context's mixture.
        dear: The dearer arm (the same as ``cheap`` when the mixture is one arm).
        share: The share of this context's calls the mixture gives ``dear``.
        target: This call's spending target, ``B + credit / H`` (USD).
        price: The price of money, in quality per USD (0: the budget does not bind).
        credit: The credit before this call (USD).
        expected_cost: The chosen arm's expected cost, to charge while the call is in flight.
        frontier: This context's optimistic frontier, ``(arm, expected cost, value)``.
    """

    arm: str
    cheap: str
    dear: str
    share: float
    target: float
    price: float
    credit: float
    expected_cost: float
    frontier: Frontier

    @property
    def binding(self) -> bool:
        """Whether the budget bound this choice: money would have bought more quality."""
        return self.price > 0.0


def choose(
    budget: Budget,
    ledger: Ledger,
    arms: Sequence[str],
    values: Sequence[float],
    costs: Sequence[float],
    *,
    context: str = "",
    allowed: Sequence[bool] | None = None,
) -> BudgetChoice:
    """Choose an arm for one call under ``budget``: the optimistic LP, then its rounding.

    Args:
        budget: The budget.
        ledger: The shared spending state (read only here; :meth:`Ledger.begin` records).
        arms: The arm names.
        values: Optimistic quality per arm, aligned with ``arms`` (see :func:`optimistic`).
        costs: Expected cost per arm (USD), aligned with ``arms``.
        context: The call's context (other contexts' frontiers come from ``ledger``).
        allowed: Which arms may be chosen (default: all).

    Returns:
        The choice, with the figures it was made from.
    """
    front = _as_frontier(arms, costs, values, allowed)
    target = budget.target(ledger)
    frontiers = dict(ledger.frontiers)
    frontiers[context] = front
    weights = {x: float(ledger.traffic.get(x, 0)) for x in frontiers}
    weights[context] += 1.0  # this call
    if len(frontiers) == 1:
        pos = {a: i for i, a in enumerate(arms)}
        m = _on_frontier([pos[a] for a, _, _ in front], costs, values, target)
        cheap, dear, share, price = arms[m.cheap], arms[m.dear], m.share, m.price
    else:
        alloc = allocate(frontiers, weights, target)
        cheap, dear, share = alloc.mixtures[context]
        price = alloc.price
    # Error diffusion: the dear arm when the carried shares reach one half.
    arm = dear if share > 0.0 and ledger.carry + share >= 0.5 else cheap
    return BudgetChoice(
        arm=arm,
        cheap=cheap,
        dear=dear,
        share=share,
        target=target,
        price=price,
        credit=ledger.credit,
        expected_cost=costs[list(arms).index(arm)],
        frontier=front,
    )


def optimistic(indices: Sequence[float], n: Sequence[float]) -> list[float]:
    """Turn policy indices into the LP's optimistic values: clipped to [0, 1], 1 when untried.

    Qualities lie in [0, 1], so an upper confidence bound above 1 says no more than 1; an arm
    never observed (count ``<= 0``) may be perfect. A NaN index (a broken policy) counts as 0.

    Args:
        indices: The policy's index per arm (anything for untried arms).
        n: Each arm's observation count (with priors and calls in flight).
    """
    out = []
    for v, m in zip(indices, n, strict=True):
        if m <= 0.0:
            out.append(1.0)
        elif v != v:
            out.append(0.0)
        else:
            out.append(min(max(float(v), 0.0), 1.0))
    return out
