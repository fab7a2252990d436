"""Properties of the policies' index maths and of the engine's choice among them."""

from __future__ import annotations

import math
from random import Random
from typing import Any, Literal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bandit_router import ConfigurationError, Prior, UnknownArmError
from bandit_router._engine import Engine
from bandit_router._stats import BanditState, Outcome
from bandit_router.policies import KLUCB, UCB1, Policy, ThompsonSampling, UCBTuned
from bandit_router.policies.klucb import bernoulli_kl, kl_upper_bound, variance_kl_upper_bound

DETERMINISTIC: list[Policy] = [
    UCB1(),
    UCB1(c=0.5),
    UCBTuned(),
    KLUCB("log"),
    KLUCB("anytime"),
    KLUCB(variance=False),
]
ALL: list[Policy] = [*DETERMINISTIC, ThompsonSampling(), ThompsonSampling(resample=False)]

policies = st.one_of(
    st.builds(UCB1, c=st.floats(min_value=1e-3, max_value=100.0)),
    st.just(UCBTuned()),
    st.sampled_from([KLUCB("log"), KLUCB("anytime"), KLUCB(variance=False), KLUCB("log", False)]),
)
unit = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def arm_stats(
    draw: st.DrawFn, k: int | None = None
) -> tuple[list[float], list[float], list[float]]:
    """Valid (n, total, total_sq) with every n > 0: rewards in [0, 1], possibly decayed."""
    size = draw(st.integers(1, 6)) if k is None else k
    n: list[float] = []
    s: list[float] = []
    q: list[float] = []
    for _ in range(size):
        m = draw(st.one_of(st.floats(min_value=1e-6, max_value=1e6), st.integers(1, 1000)))
        p = draw(unit)
        u = draw(unit)
        total = p * m
        n.append(float(m))
        s.append(total)
        q.append(p * total + u * (total - p * total))  # between total**2 / n and total
    return n, s, q


# --- index >= mean, KL-UCB <= 1 -------------------------------------------------------------


@given(policy=policies, stats=arm_stats(), seed=st.integers(0, 2**32))
def test_index_is_at_least_the_mean(
    policy: Policy, stats: tuple[list[float], list[float], list[float]], seed: int
) -> None:
    n, s, q = stats
    idx = policy.indices(n, s, q, math.fsum(n), Random(seed))
    assert len(idx) == len(n)
    for m, total, i in zip(n, s, idx, strict=True):
        assert not math.isnan(i)
        assert i >= total / m
        if isinstance(policy, KLUCB):
            assert i <= 1.0


@given(stats=arm_stats(), seed=st.integers(0, 2**32), resample=st.booleans())
def test_thompson_draws_lie_in_unit_interval(
    stats: tuple[list[float], list[float], list[float]], seed: int, resample: bool
) -> None:
    n, s, q = stats
    idx = ThompsonSampling(resample).indices(n, s, q, math.fsum(n), Random(seed))
    assert len(idx) == len(n)
    assert all(0.0 <= i <= 1.0 for i in idx)


# --- more pulls at the same mean: smaller-or-equal bonus (t fixed) ------------------------


@given(
    policy=policies,
    successes=st.integers(0, 200),
    extra=st.integers(0, 200),
    scale=st.integers(1, 50),
    sq_frac=unit,
    t=st.one_of(st.floats(min_value=1e-3, max_value=1e7), st.integers(1, 10**6)),
)
def test_more_pulls_same_mean_smaller_bonus(
    policy: Policy, successes: int, extra: int, scale: int, sq_frac: float, t: float
) -> None:
    # Arm 0: s successes out of m; arm 1: the same mean and second moment over scale * m pulls.
    # Integer counts make s/m bit-identical for both arms, so the comparison is exact.
    m = successes + extra
    assume(m > 0)
    mean = successes / m
    second = mean * mean + sq_frac * (mean - mean * mean)
    n = [float(m), float(m * scale)]
    s = [float(successes), float(successes * scale)]
    q = [second * m, second * m * scale]
    assert s[0] / n[0] == s[1] / n[1]
    idx = policy.indices(n, s, q, float(t), Random(0))
    bonus0, bonus1 = idx[0] - mean, idx[1] - mean
    # UCB-Tuned's variance term can differ by an ulp between the arms (q is a float).
    # So can the variance-adaptive KL-UCB's.
    slack = 1e-12 if isinstance(policy, UCBTuned) or getattr(policy, "variance", False) else 0.0
    assert bonus1 <= bonus0 + slack


@given(
    policy=policies,
    p=unit,
    m1=st.floats(min_value=1e-3, max_value=1e5),
    factor=st.floats(min_value=1.0, max_value=1e3),
    t=st.floats(min_value=1e-3, max_value=1e7),
)
def test_more_pulls_same_mean_smaller_bonus_real_counts(
    policy: Policy, p: float, m1: float, factor: float, t: float
) -> None:
    m2 = m1 * factor
    n = [m1, m2]
    s = [p * m1, p * m2]
    q = [p * p * m1, p * p * m2]
    idx = policy.indices(n, s, q, t, Random(0))
    b0, b1 = idx[0] - s[0] / m1, idx[1] - s[1] / m2
    assert b1 <= b0 + 1e-9


# --- KL-UCB specifics ----------------------------------------------------------------------


@given(stats=arm_stats(), seed=st.integers(0, 2**32))
def test_anytime_klucb_index_is_the_mean_once_an_arm_has_its_share(
    stats: tuple[list[float], list[float], list[float]], seed: int
) -> None:
    n, s, q = stats
    t = math.fsum(n)
    k = len(n)
    idx = KLUCB("anytime").indices(n, s, q, t, Random(seed))
    for m, total, i in zip(n, s, idx, strict=True):
        if m * k >= t * (1 + 1e-12):
            assert i == total / m


@given(m=st.integers(1, 1000), p=unit, k=st.integers(1, 8))
def test_anytime_klucb_equal_shares_give_the_mean(m: int, p: float, k: int) -> None:
    n = [float(m)] * k
    s = [p * m] * k
    idx = KLUCB("anytime").indices(n, s, s, math.fsum(n), Random(0))
    assert idx == [p * m / m] * k


@given(p=unit, level=st.floats(min_value=0.0, max_value=50.0))
def test_kl_upper_bound_is_the_largest_plausible_mean(p: float, level: float) -> None:
    ub = kl_upper_bound(p, level)
    assert p <= ub <= 1.0
    assert bernoulli_kl(p, ub) <= level + 1e-9
    if ub < 1.0 - 1e-6:
        # Just above the bound the divergence exceeds the level.
        assert bernoulli_kl(p, min(1.0, ub + 1e-6)) > level


@settings(max_examples=400)
@given(
    rate=st.sampled_from(["log", "anytime"]),
    p=unit,
    m=st.one_of(st.floats(min_value=1e-4, max_value=1e7), st.integers(1, 10**4)),
    others=st.lists(st.floats(min_value=1e-4, max_value=1e7), max_size=4),
    t_extra=st.floats(min_value=0.0, max_value=1e12),
)
def test_klucb_index_is_the_bisection_bound_bit_for_bit(
    rate: Literal["log", "anytime"], p: float, m: float, others: list[float], t_extra: float
) -> None:
    n = [float(m), *others]
    s = [p * m, *(p * o for o in others)]
    t = math.fsum(n) + t_extra
    k = len(n)
    expected = []
    for mi, si in zip(n, s, strict=True):
        if rate == "log":
            level = (math.log(t) if t > 1.0 else 0.0) / mi
        else:
            ratio = t / (k * mi)
            level = (math.log(ratio) if ratio > 1.0 else 0.0) / mi
        expected.append(kl_upper_bound(si / mi, level))
    assert KLUCB(rate).indices(n, s, s, t, Random(0)) == expected


def test_klucb_log_uses_ln_t() -> None:
    n, s = [10.0, 10.0], [5.0, 5.0]
    idx = KLUCB("log").indices(n, s, s, 20.0, Random(0))
    expected = kl_upper_bound(0.5, math.log(20.0) / 10.0)
    assert idx == [expected, expected]
    assert 0.5 < expected < 1.0


def test_ucb1_formula() -> None:
    idx = UCB1(c=2.0).indices([4.0, 16.0], [2.0, 4.0], [2.0, 4.0], 20.0, Random(0))
    assert idx[0] == pytest.approx(0.5 + math.sqrt(2 * math.log(20) / 4))
    assert idx[1] == pytest.approx(0.25 + math.sqrt(2 * math.log(20) / 16))


def test_ucb_tuned_formula() -> None:
    n, s, q, t = [10.0], [5.0], [5.0], 100.0  # mean 0.5, variance 0.25
    v = 0.25 + math.sqrt(2 * math.log(t) / 10)
    expected = 0.5 + math.sqrt(math.log(t) / 10 * min(0.25, v))
    assert UCBTuned().indices(n, s, q, t, Random(0)) == [pytest.approx(expected)]


# --- the engine's choice ----------------------------------------------------------------------

ARMS = ("a", "b", "c", "d")


@st.composite
def states(draw: st.DrawFn, decay: float | None = None) -> BanditState:
    state = BanditState(ARMS)
    for _ in range(draw(st.integers(0, 30))):
        i = draw(st.integers(0, len(ARMS) - 1))
        r = draw(unit)
        state.apply(i, Outcome(reward=r, learn=r), decay)
    state.in_flight[:] = draw(st.lists(st.integers(0, 3), min_size=len(ARMS), max_size=len(ARMS)))
    return state


@settings(max_examples=150)
@given(
    policy=st.sampled_from(ALL),
    state=states(),
    exclude=st.sets(st.sampled_from(ARMS), max_size=len(ARMS) - 1),
    prior=st.one_of(st.none(), st.builds(Prior, mean=unit, weight=st.floats(0.0, 20.0))),
    seed=st.integers(0, 2**32),
)
def test_select_returns_a_known_allowed_arm(
    policy: Policy, state: BanditState, exclude: set[str], prior: Prior | None, seed: int
) -> None:
    engine = Engine(ARMS, policy=policy, priors={"b": prior} if prior else None, seed=seed)
    for _ in range(5):
        sel = engine.select(state, exclude)
        assert sel.arm in ARMS
        assert sel.arm not in exclude
        assert sel.arms == ARMS
        for arm in exclude:
            assert math.isnan(sel.indices[ARMS.index(arm)])


@given(state=states(), seed=st.integers(0, 2**32))
def test_excluding_every_arm_or_an_unknown_arm_raises(state: BanditState, seed: int) -> None:
    engine = Engine(ARMS, seed=seed)
    with pytest.raises(UnknownArmError, match="every arm is excluded"):
        engine.select(state, ARMS)
    with pytest.raises(UnknownArmError, match="'zz'"):
        engine.select(state, ["zz"])


# Engine configurations that reach the different selection code paths with identical arms.
TIE_SETUPS: dict[str, dict[str, Any]] = {
    "plain": {},
    "decay": {"decay": 0.9},
    "zero-prior": {"priors": {"a": Prior(0.5, 0)}},
    "priors": {"priors": {a: Prior(0.5, 3) for a in ARMS}},
    "in-flight": {"in_flight": 2},
    "exclude": {"exclude": ["d"]},
}


@pytest.mark.parametrize("policy", DETERMINISTIC, ids=lambda p: p.name)
@pytest.mark.parametrize("pulls", [0, 1, 7])
@pytest.mark.parametrize("setup", sorted(TIE_SETUPS))
def test_ties_are_broken_at_random_and_reproducibly(policy: Policy, pulls: int, setup: str) -> None:
    kwargs = dict(TIE_SETUPS[setup])
    in_flight = kwargs.pop("in_flight", 0)
    exclude = kwargs.pop("exclude", ())
    # Identical arms, all up to date with the clock (so decay discounts them alike).
    k = len(ARMS)
    state = BanditState(ARMS, clock=pulls * k)
    state.n[:] = [float(pulls)] * k
    state.total[:] = [0.5 * pulls] * k
    state.total_sq[:] = [0.25 * pulls] * k
    state.stamp[:] = [pulls * k] * k
    state.pulls[:] = [pulls] * k
    state.in_flight[:] = [in_flight] * k
    allowed = set(ARMS) - set(exclude)

    def run(seed: int) -> list[str]:
        engine = Engine(ARMS, policy=policy, seed=seed, **kwargs)
        return [engine.select(state, exclude).arm for _ in range(200)]

    first = run(1234)
    assert set(first) == allowed
    assert run(1234) == first
    assert run(4321) != first


def test_same_seed_same_thompson_sequence() -> None:
    state = BanditState(ARMS)
    for i in range(len(ARMS)):
        state.apply(i, Outcome(reward=0.5, learn=0.5), None)

    def run(seed: int) -> list[str]:
        engine = Engine(ARMS, policy=ThompsonSampling(), seed=seed)
        return [engine.select(state).arm for _ in range(100)]

    assert run(7) == run(7)
    assert set(run(7)) == set(ARMS)


@settings(max_examples=60)
@given(
    policy=st.sampled_from(DETERMINISTIC),
    state=states(),
    seed=st.integers(0, 2**32),
)
def test_chosen_arm_has_the_largest_index(policy: Policy, state: BanditState, seed: int) -> None:
    sel = Engine(ARMS, policy=policy, seed=seed).select(state)
    chosen = sel.indices[ARMS.index(sel.arm)]
    assert all(chosen >= x for x in sel.indices if not math.isnan(x))


def test_policy_names_are_distinct() -> None:
    policies = (
        UCB1(),
        UCBTuned(),
        KLUCB("log"),
        KLUCB(),
        KLUCB(variance=False),
        ThompsonSampling(),
    )
    names = [p.name for p in policies]
    assert len(set(names)) == len(names)


# --- variance-adaptive KL-UCB (KLUCB(variance=True)) ----------------------------------------


def _k_inf(xs: list[float], mu: float) -> float:
    """Honda & Takemura's K_inf(F, mu) of the empirical law of ``xs`` (support bound 1), by
    its dual: max over 0 <= lam <= 1 / (1 - mu) of mean(log(1 - lam (x - mu))), concave."""
    lo, hi = 0.0, (1.0 - 1e-12) / (1.0 - mu)

    def f(lam: float) -> float:
        return math.fsum(math.log(1.0 - lam * (x - mu)) for x in xs) / len(xs)

    for _ in range(200):  # golden-section search
        a = hi - (hi - lo) * 0.618033988749895
        b = lo + (hi - lo) * 0.618033988749895
        if f(a) < f(b):
            lo = a
        else:
            hi = b
    return f((lo + hi) / 2)


@given(p=unit, frac=unit, level=st.floats(min_value=0.0, max_value=50.0))
def test_variance_bound_lies_between_the_mean_and_the_bernoulli_bound(
    p: float, frac: float, level: float
) -> None:
    v = frac * p * (1.0 - p)
    b = variance_kl_upper_bound(p, v, level)
    # Near level 0 both bounds stop where the computed divergence rises above its rounding
    # noise (KL(p, p + d) ~ d**2 is lost in the two logarithms' cancellation below d ~ 1e-8),
    # a few 1e-9 above the mean: hence the tolerance, far below any decision's scale.
    assert p <= b <= kl_upper_bound(p, level) + 1e-7
    assert b <= 1.0


@given(m=st.integers(1, 1000), frac=unit, t=st.floats(min_value=1.0, max_value=1e7))
def test_variance_klucb_of_zero_one_rewards_is_klucb(m: int, frac: float, t: float) -> None:
    # 0/1 rewards: sum of squares = sum, the variance is p (1 - p): the Bernoulli index.
    s = float(round(frac * m))
    for rate in ("anytime", "log"):
        idx = KLUCB(rate, variance=True).indices([float(m)], [s], [s], t, Random(0))
        assert idx == KLUCB(rate, variance=False).indices([float(m)], [s], [s], t, Random(0))


@given(
    p=unit,
    frac=unit,
    l1=st.floats(min_value=0.0, max_value=20.0),
    l2=st.floats(min_value=0.0, max_value=20.0),
    f2=unit,
)
def test_variance_bound_grows_with_the_level_and_the_variance(
    p: float, frac: float, l1: float, l2: float, f2: float
) -> None:
    # More pulls at the same moments = a smaller level: a smaller bound; so does less variance.
    vmax = p * (1.0 - p)
    lo, hi = sorted((l1, l2))
    assert (
        variance_kl_upper_bound(p, frac * vmax, lo)
        <= variance_kl_upper_bound(p, frac * vmax, hi) + 1e-12
    )
    va, vb = sorted((frac * vmax, f2 * vmax))
    assert variance_kl_upper_bound(p, va, hi) <= variance_kl_upper_bound(p, vb, hi) + 1e-12


@settings(max_examples=200)
@given(
    xs=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=30),
    level=st.floats(min_value=1e-3, max_value=5.0),
)
def test_variance_bound_is_at_least_the_empirical_klucb_bound(
    xs: list[float], level: float
) -> None:
    # Valid: the bound is at least the empirical KL-UCB bound (Cappé et al. 2013) of the
    # sample, sup {mu : K_inf(F_n, mu) <= level}, i.e. K_inf(F_n, bound) >= level.
    n = len(xs)
    p = math.fsum(xs) / n
    v = math.fsum(x * x for x in xs) / n - p * p
    b = variance_kl_upper_bound(p, v, level)
    assume(b < 1.0 - 1e-6 and b > p + 1e-9)
    assert _k_inf(xs, b) >= level * (1.0 - 1e-6) - 1e-9


def test_variance_klucb_explores_less_on_a_narrow_reward() -> None:
    # Arm 0: 30 rewards of 0.5 and 70 of 1 (mean 0.85); arm 1: 0/1 rewards of the same mean.
    n, s, q = [100.0, 100.0], [85.0, 85.0], [30 * 0.25 + 70.0, 85.0]
    narrow, bern = KLUCB(variance=True).indices(n, s, q, 2000.0, Random(0))
    assert bern == KLUCB(variance=False).indices(n, s, q, 2000.0, Random(0))[0]
    assert 0.85 < narrow < bern
    # The two-point law on {0.5, 1} is exactly the KL-UCB bound on [0.5, 1].
    assert narrow == pytest.approx(0.5 + 0.5 * kl_upper_bound(0.7, math.log(2000 / 200) / 100))


def test_variance_klucb_configuration() -> None:
    assert KLUCB().name == KLUCB(variance=True).name == "kl-ucb"
    assert KLUCB("log").name == "kl-ucb-log"
    assert KLUCB(variance=False).name == "kl-ucb-bernoulli"
    assert KLUCB("log", variance=False).name == "kl-ucb-log-bernoulli"
    with pytest.raises(ConfigurationError):
        KLUCB(variance=1)  # type: ignore[arg-type]
