"""Budgets: the LP's maths, the ledger, validation, and the engine keeping a spending rate."""

from __future__ import annotations

import itertools
import math
import warnings
from datetime import timedelta
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit_router import ConfigurationError, Prior, UnknownArmError
from bandit_router._engine import Engine
from bandit_router._stats import BanditState
from bandit_router.budget import (
    DEFAULT_WINDOW,
    Budget,
    BudgetChoice,
    BudgetWarning,
    Ledger,
    allocate,
    best_mixture,
    best_shared_mixture,
    choose,
    expected_costs,
    frontier,
    mixture,
    optimistic,
)
from bandit_router.policies import KLUCB, ThompsonSampling

# Costs on a grid of 0.01: the brute force's tolerance (1e-12) cannot mistake a cost above
# the budget by a denormal for one within it.
cost = st.integers(0, 1000).map(lambda i: i / 100)
value = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def points(
    draw: st.DrawFn, min_size: int = 1, max_size: int = 6
) -> tuple[list[float], list[float]]:
    k = draw(st.integers(min_size, max_size))
    # A few distinct levels make ties (equal costs, equal values) common.
    c = draw(st.lists(st.one_of(cost, st.sampled_from([0.5, 1.0, 2.0])), min_size=k, max_size=k))
    v = draw(st.lists(st.one_of(value, st.sampled_from([0.25, 0.5, 1.0])), min_size=k, max_size=k))
    return c, v


def brute_force(c: list[float], v: list[float], b: float) -> float:
    """The LP's value by enumerating its basic solutions: one arm, or two arms on the budget."""
    feasible = [v[i] for i in range(len(c)) if c[i] <= b]
    best = max(feasible) if feasible else -math.inf
    for i, j in itertools.permutations(range(len(c)), 2):
        if c[i] < b < c[j]:
            p = (b - c[i]) / (c[j] - c[i])
            best = max(best, (1 - p) * v[i] + p * v[j])
    return best


# --- the LP ---------------------------------------------------------------------------------


@given(pts=points())
def test_frontier_is_increasing_concave_and_above_every_arm(
    pts: tuple[list[float], list[float]],
) -> None:
    c, v = pts
    f = frontier(c, v)
    assert len(set(f)) == len(f)
    for a, b in itertools.pairwise(f):
        assert c[a] < c[b]
        assert v[a] < v[b]
    for a, b, d in zip(f, f[1:], f[2:], strict=False):  # slopes decrease
        assert (v[b] - v[a]) * (c[d] - c[b]) > (v[d] - v[b]) * (c[b] - c[a])
    for i in range(len(c)):  # no arm lies above the broken line
        if c[i] < c[f[0]]:
            raise AssertionError("the frontier starts at the cheapest arm")
        m = mixture(c, v, c[i])
        assert v[i] <= m.value + 1e-12


@settings(max_examples=300)
@given(pts=points(), b=st.floats(min_value=-1.0, max_value=12.0, allow_nan=False))
def test_mixture_is_the_lp_optimum(pts: tuple[list[float], list[float]], b: float) -> None:
    c, v = pts
    m = mixture(c, v, b)
    cheapest = min(c)
    if b < cheapest:  # infeasible: the cheapest arm (the best of the cheapest), price inf
        assert c[m.cheap] == cheapest
        assert m.dear == m.cheap
        assert m.price == math.inf
        assert v[m.cheap] == max(v[i] for i in range(len(c)) if c[i] == cheapest)
        return
    assert m.cost <= b + 1e-12
    assert 0.0 <= m.share < 1.0
    assert m.value == pytest.approx((1 - m.share) * v[m.cheap] + m.share * v[m.dear], abs=1e-12)
    assert m.value == pytest.approx(brute_force(c, v, b), abs=1e-9)
    assert m.price >= 0.0


@given(pts=points(min_size=2), b1=cost, b2=cost)
def test_more_budget_never_buys_less(
    pts: tuple[list[float], list[float]], b1: float, b2: float
) -> None:
    c, v = pts
    lo, hi = sorted((b1, b2))
    if lo < min(c):
        return
    assert mixture(c, v, hi).value >= mixture(c, v, lo).value - 1e-12
    # ... and the price of money (the LP's dual) never rises with the budget.
    assert mixture(c, v, hi).price <= mixture(c, v, lo).price + 1e-9


def test_mixture_by_hand() -> None:
    c, v = [1.0, 2.0, 4.0], [0.5, 0.8, 0.9]
    m = mixture(c, v, 3.0)  # half of arm 1, half of arm 2
    assert (m.cheap, m.dear) == (1, 2)
    assert m.share == pytest.approx(0.5)
    assert m.value == pytest.approx(0.85)
    assert m.price == pytest.approx(0.05)
    assert mixture(c, v, 5.0) == mixture(c, v, 4.0)  # does not bind: the best arm, price 0
    assert mixture(c, v, 5.0).price == 0.0
    assert mixture(c, v, 0.5).cheap == 0
    assert mixture(c, v, 0.5).price == math.inf
    # An arm below the segment of two others is never used.
    assert frontier([1.0, 2.0, 3.0], [0.5, 0.6, 0.9]) == [0, 2]
    # Allowed arms only; NaN values are never preferred.
    assert mixture(c, v, 3.0, allowed=[True, False, True]).dear == 2
    assert frontier([1.0, 2.0], [math.nan, 0.3]) == [1]
    assert best_mixture(v, c, 3.0) == m


def test_frontier_needs_an_allowed_arm() -> None:
    with pytest.raises(ValueError, match="no arm"):
        frontier([1.0], [0.5], [False])
    with pytest.raises(ValueError, match="same length"):
        frontier([1.0], [0.5, 0.6])


@st.composite
def contexts(
    draw: st.DrawFn,
) -> tuple[dict[str, float], dict[str, list[float]], dict[str, list[float]]]:
    k = draw(st.integers(1, 3))
    names = draw(st.lists(st.sampled_from("xyzw"), min_size=1, max_size=3, unique=True))
    weights = {x: draw(st.floats(min_value=0.1, max_value=5.0)) for x in names}
    q = {x: draw(st.lists(value, min_size=k, max_size=k)) for x in names}
    c = {x: draw(st.lists(cost, min_size=k, max_size=k)) for x in names}
    return weights, q, c


def brute_force_shared(
    weights: dict[str, float], q: dict[str, list[float]], c: dict[str, list[float]], b: float
) -> float:
    """Enumerate the LP's basic solutions: every context on one arm, at most one on two."""
    names = list(q)
    total = sum(weights.values())
    w = {x: weights[x] / total for x in names}
    k = len(q[names[0]])
    best = -math.inf
    for pick in itertools.product(range(k), repeat=len(names)):
        base_c = sum(w[x] * c[x][i] for x, i in zip(names, pick, strict=True))
        base_v = sum(w[x] * q[x][i] for x, i in zip(names, pick, strict=True))
        if base_c <= b + 1e-12:
            best = max(best, base_v)
        for m, x in enumerate(names):  # context x mixes arm pick[m] with another arm j
            i = pick[m]
            for j in range(k):
                dc = w[x] * (c[x][j] - c[x][i])
                if dc > 0 and base_c < b < base_c + dc:
                    p = (b - base_c) / dc
                    best = max(best, base_v + p * w[x] * (q[x][j] - q[x][i]))
    return best


@settings(max_examples=300)
@given(ctx=contexts(), b=st.floats(min_value=0.0, max_value=11.0, allow_nan=False))
def test_shared_budget_allocation_is_the_lp_optimum(
    ctx: tuple[dict[str, float], dict[str, list[float]], dict[str, list[float]]], b: float
) -> None:
    weights, q, c = ctx
    arms = [f"a{i}" for i in range(len(next(iter(q.values()))))]
    alloc = best_shared_mixture(weights, q, c, arms, b)
    expected = brute_force_shared(weights, q, c, b)
    if expected == -math.inf:  # infeasible: every context on its cheapest (best) arm
        assert alloc.price == math.inf
        return
    assert alloc.cost <= b + 1e-9
    assert alloc.value == pytest.approx(expected, abs=1e-9)
    mixing = [x for x, (a, d, p) in alloc.mixtures.items() if a != d and p > 0]
    assert len(mixing) <= 1  # one budget constraint: at most one context mixes two arms
    # The allocation's value is what its mixtures give.
    total = sum(weights.values())
    recomputed = 0.0
    for x, (a, d, p) in alloc.mixtures.items():
        va, vd = q[x][arms.index(a)], q[x][arms.index(d)]
        recomputed += weights[x] / total * ((1 - p) * va + p * vd)
    assert recomputed == pytest.approx(alloc.value, abs=1e-9)


@given(pts=points(), b=cost)
def test_one_context_allocation_is_the_two_arm_lp(
    pts: tuple[list[float], list[float]], b: float
) -> None:
    c, v = pts
    arms = [f"a{i}" for i in range(len(c))]
    alloc = best_shared_mixture({"x": 1.0}, {"x": v}, {"x": c}, arms, b)
    m = mixture(c, v, b)
    assert alloc.value == pytest.approx(m.value, abs=1e-12)
    assert alloc.mixtures["x"][:2] == (arms[m.cheap], arms[m.dear])


def test_allocate_spends_where_money_buys_most() -> None:
    # Context x gains 0.4 for 1.0 of cost; context y gains 0.1 for 1.0: x is upgraded first.
    fronts = {
        "x": (("cheap", 0.0, 0.5), ("dear", 1.0, 0.9)),
        "y": (("cheap", 0.0, 0.5), ("dear", 1.0, 0.6)),
    }
    alloc = allocate(fronts, {"x": 1.0, "y": 1.0}, 0.5)  # enough to upgrade x fully
    assert alloc.mixtures["x"] == ("dear", "dear", 0.0)
    assert alloc.mixtures["y"] == ("cheap", "cheap", 0.0)
    assert alloc.price == pytest.approx(0.1)  # what more money would buy: y's upgrade
    assert allocate(fronts, {"x": 1.0, "y": 1.0}, 0.25).price == pytest.approx(0.4)
    alloc = allocate(fronts, {"x": 1.0, "y": 1.0}, 0.75)
    assert alloc.mixtures["y"][:2] == ("cheap", "dear")
    assert alloc.mixtures["y"][2] == pytest.approx(0.5)
    assert alloc.price == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no context"):
        allocate({}, {}, 1.0)


def test_optimistic_values() -> None:
    assert optimistic([1.7, -0.2, math.nan, 0.4, 5.0], [3, 2, 1, 0, 0.5]) == [
        1.0,
        0.0,
        0.0,
        1.0,
        1.0,
    ]


def test_expected_costs_count_the_configured_cost_as_one_call() -> None:
    assert expected_costs([0.01, 0.02], [0.0, 0.09], [0, 3]) == pytest.approx((0.01, 0.0275))


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.001, math.nan, math.inf, -math.inf, "0.5", None, True])
def test_bad_budget_is_refused_naming_it(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="usd_per_call") as err:
        Budget(bad, costs={"a": 0.1})  # type: ignore[arg-type]
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "x"])
def test_bad_cost_is_refused_naming_arm_and_value(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="'a'") as err:
        Budget(0.1, costs={"a": bad})  # type: ignore[dict-item]
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "50", timedelta(0), timedelta(seconds=-1)])
def test_bad_window_is_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="window"):
        Budget(0.1, costs={"a": 0.1}, window=bad)  # type: ignore[arg-type]


def test_unknown_prices_are_refused_naming_the_arm() -> None:
    budget = Budget(0.1, costs={"a": 0.1})
    with pytest.raises(ConfigurationError, match=r"\['b'\]"):
        Engine(["a", "b"], budget=budget)
    with pytest.raises(ConfigurationError, match=r"unknown arm.*\['z'\]"):
        Engine(["a"], budget=Budget(0.1, costs={"a": 0.1, "z": 0.1}))
    with pytest.raises(ConfigurationError, match="mapping"):
        Budget(0.1, costs=[0.1])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="budget must be a Budget"):
        Engine(["a"]).set_budget(0.1)  # type: ignore[arg-type]


def test_costs_and_budget_are_exclusive() -> None:
    with pytest.raises(ConfigurationError, match="give one"):
        Engine(["a"], costs={"a": 0.1}, budget=Budget(0.1, costs={"a": 0.1}))


def test_select_budgeted_needs_a_budget() -> None:
    engine = Engine(["a"])
    with pytest.raises(ConfigurationError, match="no budget"):
        engine.select_budgeted(engine.new_state(), Ledger())


def test_budget_below_the_cheapest_arm_warns_and_calls_the_cheapest() -> None:
    with pytest.warns(BudgetWarning, match=r"0\.001.*'cheap'.*0\.01"):
        engine = Engine(["dear", "cheap"], budget=Budget(0.001, costs={"dear": 0.1, "cheap": 0.01}))
    state, ledger = engine.new_state(), Ledger()
    for _ in range(20):
        sel, choice = engine.select_budgeted(state, ledger)
        assert sel.arm == "cheap"
        assert choice.price == math.inf
        ledger.begin(engine.budget, choice)  # type: ignore[arg-type]
        ledger.settle(choice.expected_cost, 0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Engine(["a"], budget=Budget(0.5, costs={"a": 0.5}))  # exactly affordable: no warning


# --- the ledger -----------------------------------------------------------------------------


def _choice(
    arm: str, cost_: float, *, share: float = 0.0, dear: str | None = None, price: float = 1.0
) -> BudgetChoice:
    return BudgetChoice(arm, arm, dear or arm, share, 0.0, price, 0.0, cost_, ())


def test_ledger_counts_expected_then_real_costs() -> None:
    b = Budget(1.0, costs={"a": 0.5}, window=10)
    led = Ledger()
    led.begin(b, _choice("a", 0.5))
    assert led.credit == pytest.approx(0.5)
    assert led.spent == pytest.approx(0.5)
    led.begin(b, _choice("a", 0.5), context="x")  # a second call in flight
    assert led.credit == pytest.approx(1.0)
    assert led.calls == 2
    assert led.traffic == {"": 1, "x": 1}
    assert led.frontiers == {"": (), "x": ()}
    led.settle(0.5, 2.0)  # it cost 2.0
    assert led.credit == pytest.approx(-0.5)
    assert led.spent == pytest.approx(2.5)
    led.settle(0.5, None)  # unknown real cost: the expected one stays
    assert led.credit == pytest.approx(-0.5)
    led.charge(0.5)  # a fallback attempt of the same call
    assert led.credit == pytest.approx(-1.0)
    assert led.spent == pytest.approx(3.0)
    assert b.target(led) == pytest.approx(1.0 - 1.0 / 10)


def test_ledger_savings_are_capped_and_not_kept_when_the_budget_does_not_bind() -> None:
    b = Budget(1.0, costs={"a": 0.0}, window=5)
    led = Ledger()
    for _ in range(20):
        led.begin(b, _choice("a", 0.0))
    assert led.credit == pytest.approx(5.0)  # at most the window's budget is kept
    led = Ledger(credit=-2.0)
    for _ in range(5):
        led.begin(b, _choice("a", 0.0, price=0.0))  # the budget does not bind
    assert led.credit == 0.0  # a debt is paid back, nothing is saved
    led.credit = 0.7
    led.begin(b, _choice("a", 0.2, price=0.0))
    assert led.credit == pytest.approx(0.7)
    copy = led.copy()
    copy.traffic["z"] = 1
    assert "z" not in led.traffic


@given(shares=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=200))
def test_rounding_carry_is_bounded_and_gives_each_dear_arm_its_share(shares: list[float]) -> None:
    b = Budget(1.0, costs={"a": 0.0, "d": 0.0})
    led = Ledger()
    dear_calls = 0
    for p in shares:
        arm = "d" if p > 0 and led.carry + p >= 0.5 else "a"
        dear_calls += arm == "d"
        led.begin(b, _choice(arm, 0.0, share=p, dear="d"))
        assert -0.5 - 1e-9 <= led.carry < 0.5 + 1e-9
    assert abs(dear_calls - sum(shares)) <= 0.5 + 1e-6


def test_time_window_counts_the_recent_calls() -> None:
    b = Budget(1.0, costs={"a": 1.0}, window=timedelta(seconds=10))
    led = Ledger()
    for t in range(100):  # one call a second: about 10 calls in a window of 10 s
        led.begin(b, _choice("a", 1.0), now=float(t))
    assert b.horizon(led) == pytest.approx((1 - math.exp(-10)) / (1 - math.exp(-0.1)))
    led.begin(b, _choice("a", 1.0), now=1000.0)  # after a long pause: this call only
    assert b.horizon(led) == pytest.approx(1.0, abs=1e-6)
    assert Budget(1.0, costs={"a": 1.0}).horizon(led) == DEFAULT_WINDOW


# --- the engine keeps the rate ----------------------------------------------------------------

QUALITY = {"small": 0.4, "mid": 0.7, "large": 0.9}
PRICE = {"small": 0.001, "mid": 0.004, "large": 0.02}


def simulate(
    budget: Budget,
    calls: int,
    *,
    seed: int = 0,
    engine: Engine | None = None,
    change: tuple[int, float] | None = None,
    contexts: tuple[str, ...] = ("",),
    quality: dict[str, dict[str, float]] | None = None,
) -> tuple[Engine, Ledger, list[str], list[float]]:
    """Route ``calls`` calls of Bernoulli arms whose cost is their price times 0.5-1.5."""
    rng = Random(seed)
    engine = engine or Engine(list(QUALITY), budget=budget, seed=seed)
    states = {x: engine.new_state() for x in contexts}
    ledger = Ledger()
    arms, spend = [], []
    for t in range(calls):
        if change is not None and t == change[0]:
            engine.set_budget(Budget(change[1], budget.costs, budget.window))
        x = contexts[t % len(contexts)]
        sel, choice = engine.select_budgeted(states[x], ledger, context=x)
        assert engine.budget is not None
        ledger.begin(engine.budget, choice, context=x)
        c = PRICE[sel.arm] * rng.uniform(0.5, 1.5)
        ledger.settle(choice.expected_cost, c)
        q = (quality or {}).get(x, QUALITY)[sel.arm]
        states[x].apply(
            states[x].index(sel.arm), engine.reward_outcome(float(rng.random() < q)), engine.decay
        )
        arms.append(sel.arm)
        spend.append(c)
    return engine, ledger, arms, spend


@pytest.mark.parametrize("rate", [0.002, 0.006, 0.012])
def test_engine_keeps_the_rate_and_finds_the_best_mixture(rate: float) -> None:
    budget = Budget(rate, costs=PRICE)
    _, ledger, arms, spend = simulate(budget, 4000)
    assert sum(spend) <= 1.01 * rate * len(spend)
    assert ledger.spent == pytest.approx(sum(spend))
    best = best_mixture(list(QUALITY.values()), list(PRICE.values()), rate)
    got = sum(QUALITY[a] for a in arms[2000:]) / 2000
    assert got >= 0.95 * best.value  # the second half plays (close to) the best mixture
    # No window of 500 calls after the first spends more than 110% of its budget.
    for s in range(500, len(spend) - 500, 50):
        assert sum(spend[s : s + 500]) <= 1.1 * rate * 500


def test_budget_that_does_not_bind_calls_the_best_arm_and_saves_nothing() -> None:
    _, ledger, arms, _ = simulate(Budget(1.0, costs=PRICE), 600)
    assert arms[-200:].count("large") >= 190
    # Nothing is banked (it would be 600 calls x 0.98 USD); only the costs' noise remains.
    assert ledger.credit < 0.1


def test_spend_follows_a_budget_halved_at_run_time() -> None:
    budget = Budget(0.012, costs=PRICE)
    _, _, arms, spend = simulate(budget, 3000, change=(1500, 0.006))
    assert sum(spend[1500:1800]) <= 1.1 * 0.006 * 300
    assert sum(spend[1600:]) <= 1.02 * 0.006 * 1400
    assert arms[1500:].count("large") < arms[:1500].count("large")


def test_calls_in_flight_count_their_expected_cost() -> None:
    budget = Budget(0.006, costs=PRICE)
    engine = Engine(
        list(QUALITY), budget=budget, priors={a: Prior(q, 50) for a, q in QUALITY.items()}
    )
    state, ledger = engine.new_state(), Ledger()
    begun = []
    for _ in range(200):  # a burst: nothing settles
        sel, choice = engine.select_budgeted(state, ledger)
        ledger.begin(budget, choice)
        state.in_flight[state.index(sel.arm)] += 1
        begun.append(choice.expected_cost)
    # The burst is charged its expected cost, so it cannot spend the same credit twice.
    assert ledger.spent == pytest.approx(sum(begun))
    assert sum(begun) <= budget.usd_per_call * 200 + max(PRICE.values())


def test_exclusions_priors_and_decay() -> None:
    budget = Budget(0.006, costs=PRICE)
    engine = Engine(list(QUALITY), budget=budget, decay=0.99, priors={"large": Prior(0.9, 20)})
    state, ledger = engine.new_state(), Ledger()
    sel, choice = engine.select_budgeted(state, ledger, exclude=["large"])
    assert sel.arm != "large"
    assert math.isnan(sel.indices[2])
    assert choice.frontier
    assert all(a != "large" for a, _, _ in choice.frontier)
    with pytest.raises(UnknownArmError):
        engine.select_budgeted(state, ledger, exclude=["nope"])
    with pytest.raises(UnknownArmError):
        engine.select_budgeted(state, ledger, exclude=list(QUALITY))
    with pytest.raises(ValueError, match="one expected cost per arm"):
        engine.select_budgeted(state, ledger, costs=[0.1])
    # With decay and a prior the engine still keeps the rate.
    _, ledger, _, spend = simulate(budget, 2000, engine=engine)
    assert sum(spend) <= 1.01 * 0.006 * 2000
    # Thompson sampling's indices work the same way.
    _, _, _, spend = simulate(
        budget, 1000, engine=Engine(list(QUALITY), budget=budget, policy=ThompsonSampling(), seed=3)
    )
    assert sum(spend) <= 1.01 * 0.006 * 1000


def test_contexts_share_one_budget_and_spend_where_it_buys_most() -> None:
    # In context "hard" only the large model is good; in "easy" the small one is as good.
    quality = {
        "hard": {"small": 0.1, "mid": 0.2, "large": 0.9},
        "easy": {"small": 0.9, "mid": 0.9, "large": 0.9},
    }
    budget = Budget(0.011, costs=PRICE)
    _, ledger, arms, spend = simulate(
        budget,
        6000,
        contexts=("hard", "easy"),
        quality=quality,
        engine=Engine(list(QUALITY), budget=budget, policy=KLUCB()),
    )
    assert sum(spend) <= 1.01 * 0.011 * 6000
    assert set(ledger.traffic) == {"hard", "easy"}
    hard = arms[3000::2]  # even calls are "hard"
    easy = arms[3001::2]
    assert hard.count("large") >= 0.85 * len(hard)  # the budget goes where it buys quality
    assert easy.count("small") >= 0.85 * len(easy)


def test_choose_is_the_engine_rule() -> None:
    budget = Budget(0.5, costs={"a": 0.1, "b": 1.0})
    ledger = Ledger()
    choice = choose(budget, ledger, ["a", "b"], [0.5, 0.9], [0.1, 1.0])
    assert (choice.cheap, choice.dear) == ("a", "b")
    assert choice.share == pytest.approx(4 / 9)
    assert choice.price == pytest.approx(0.4 / 0.9)
    assert choice.binding
    assert choice.target == 0.5
    assert choice.arm == "a"
    ledger.begin(budget, choice)
    assert choice == choose(budget, Ledger(), ["a", "b"], [0.5, 0.9], [0.1, 1.0])
    assert BanditState(("a",)).arms == ("a",)
