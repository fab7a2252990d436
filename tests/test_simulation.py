"""Seeded regret simulations through the real sans-I/O core, and the helpers they use.

The regret figures come from ``bandit_router.testing.simulate``, which drives
``Engine.select`` and ``BanditState.apply`` exactly as a store does. Bernoulli arms with means
0.9, 0.8, 0.7, 0.6, 0.5, T = 10,000 steps, 20 seeds (``benchmarks/regret.py`` prints the
full table).
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit_router import Bandit, UnknownDecisionError
from bandit_router._engine import Engine
from bandit_router._stats import BanditState, Outcome, Prior, check_reward
from bandit_router.policies import KLUCB, UCB1, Policy, ThompsonSampling, UCBTuned, klucb
from bandit_router.policies.klucb import _kl_index, kl_upper_bound
from bandit_router.testing import FrozenClock, simulate

MEANS = (0.9, 0.8, 0.7, 0.6, 0.5)
AFTER = (0.4, 0.8, 0.7, 0.6, 0.5)  # the best arm drops to 0.4 ...
CHANGE_AT = 5_000  # ... at t = 5,000
HORIZON = 10_000
SEEDS = range(20)

#: The setting recommended for traffic whose arms change (benchmarks/regret.py measured, over
#: 20 seeds, a dynamic regret of about 247 against about 615 for stationary UCB1, and 149 on
#: the stationary bandit): the default KL-UCB with a memory of about 1,000 observations.
RECOMMENDED_POLICY: Callable[[], Policy] = KLUCB
RECOMMENDED_DECAY = 0.999


def mean_regret(
    make: Callable[[], Policy],
    *,
    decay: float | None = None,
    change: tuple[int, Sequence[float]] | None = None,
    seeds: Sequence[int] = SEEDS,
) -> float:
    return statistics.fmean(
        simulate(make(), MEANS, HORIZON, seed=s, decay=decay, change=change) for s in seeds
    )


def textbook_ucb1(means: Sequence[float], horizon: int, seed: int) -> float:
    """Auer et al.'s UCB1, written out plainly: play each arm once, then mean + sqrt(2 ln t / n)."""
    rng = random.Random(seed)
    k = len(means)
    best = max(means)
    n = [0] * k
    total = [0.0] * k
    regret = 0.0
    for t in range(horizon):
        if t < k:
            i = t
        else:
            log_t = math.log(t)
            i = max(range(k), key=lambda a: total[a] / n[a] + math.sqrt(2.0 * log_t / n[a]))
        n[i] += 1
        total[i] += 1.0 if rng.random() < means[i] else 0.0
        regret += best - means[i]
    return regret


# --- stationary regret ------------------------------------------------------------------


def test_ucb1_matches_the_textbook_ucb1() -> None:
    ours = mean_regret(UCB1)
    reference = statistics.fmean(textbook_ucb1(MEANS, HORIZON, s) for s in SEEDS)
    assert abs(ours - reference) <= 0.10 * reference, (ours, reference)
    assert 203.0 <= ours <= 249.0, ours
    assert 203.0 <= reference <= 249.0, reference


@pytest.mark.parametrize(
    "make",
    [KLUCB, lambda: KLUCB(rate="log"), ThompsonSampling],
    ids=["kl-ucb-anytime", "kl-ucb-log", "thompson"],
)
def test_kl_ucb_and_thompson_regret_below_100(make: Callable[[], Policy]) -> None:
    assert mean_regret(make) < 100.0


# --- abrupt change ------------------------------------------------------------------------


def test_decay_beats_stationary_ucb1_after_an_abrupt_change() -> None:
    change = (CHANGE_AT, AFTER)
    stationary = mean_regret(UCB1, change=change)
    assert 550.0 <= stationary <= 750.0, stationary  # about 646
    adaptive = mean_regret(RECOMMENDED_POLICY, decay=RECOMMENDED_DECAY, change=change)
    assert adaptive * 1.5 <= stationary, (adaptive, stationary)
    assert adaptive <= 430.0, adaptive


# --- simulate() itself --------------------------------------------------------------------


def test_simulate_is_deterministic_and_seed_dependent() -> None:
    a = simulate(ThompsonSampling(), MEANS, 500, seed=3)
    b = simulate(ThompsonSampling(), MEANS, 500, seed=3)
    c = simulate(ThompsonSampling(), MEANS, 500, seed=4)
    assert a == b
    assert a != c


def test_simulate_regret_bounds() -> None:
    assert simulate(UCB1(), [0.3], 100, seed=0) == 0.0
    assert simulate(UCB1(), [0.5, 0.5, 0.5], 100, seed=0) == 0.0
    assert simulate(UCB1(), MEANS, 0, seed=0) == 0.0
    # The first five steps try every arm once: 0 + 0.1 + 0.2 + 0.3 + 0.4.
    assert simulate(UCB1(), MEANS, 5, seed=0) == pytest.approx(1.0)
    r = simulate(KLUCB(), MEANS, 300, seed=1)
    assert 1.0 <= r <= 300 * 0.4


def test_simulate_change_uses_the_dynamic_best() -> None:
    # A single arm is always the best arm, whatever its mean does.
    assert simulate(UCB1(), [0.9], 100, seed=0, change=(50, [0.1])) == 0.0
    # A change at step 0 is the same as starting with the new means.
    a = simulate(UCB1(), MEANS, 400, seed=2, change=(0, AFTER))
    b = simulate(UCB1(), AFTER, 400, seed=2)
    assert a == b
    # A change after the horizon changes nothing.
    assert simulate(UCB1(), MEANS, 400, seed=2, change=(400, AFTER)) == simulate(
        UCB1(), MEANS, 400, seed=2
    )


def test_simulate_accepts_an_engine() -> None:
    engine = Engine(["x", "y", "z"], policy=UCB1(), decay=0.99, seed=5)
    r = simulate(engine, [0.2, 0.5, 0.8], 300, seed=1)
    same = simulate(
        Engine(["x", "y", "z"], policy=UCB1(), decay=0.99, seed=5), [0.2, 0.5, 0.8], 300, seed=1
    )
    assert r == same > 0.0
    with pytest.raises(ValueError, match="3 arms but 2 means"):
        simulate(engine, [0.2, 0.5], 10)
    with pytest.raises(ValueError, match="decay"):
        simulate(engine, [0.2, 0.5, 0.8], 10, decay=0.9)


@pytest.mark.parametrize(
    ("means", "horizon", "change", "match"),
    [
        ([], 10, None, "non-empty"),
        ([0.5, 1.5], 10, None, r"\[0, 1\]"),
        ([0.5, math.nan], 10, None, r"\[0, 1\]"),
        ([0.5, True], 10, None, r"\[0, 1\]"),
        ("0.5", 10, None, "non-empty sequence"),
        ([0.5], -1, None, "horizon"),
        ([0.5], 10, (5, [0.1, 0.2]), "2 means for 1 arms"),
        ([0.5], 10, (-1, [0.1]), "change step"),
        ([0.5], 10, [5, [0.1]], "pair"),
    ],
)
def test_simulate_rejects_bad_arguments(
    means: object, horizon: int, change: object, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        simulate(UCB1(), means, horizon, change=change)  # type: ignore[arg-type]


# --- FrozenClock -----------------------------------------------------------------------------


def test_frozen_clock() -> None:
    clock = FrozenClock(100.0)
    assert clock() == 100.0
    assert clock.advance(2.5) == 102.5
    assert clock() == 102.5
    clock.set(50)
    assert clock() == 50.0
    clock.now = 7.0
    assert clock() == 7.0
    assert repr(clock) == "FrozenClock(now=7.0)"
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="finite"):
        clock.advance(math.inf)
    with pytest.raises(ValueError, match="finite"):
        FrozenClock(math.nan)


def test_frozen_clock_drives_pending_expiry() -> None:
    async def scenario() -> None:
        clock = FrozenClock()
        bandit = Bandit(["a", "b"], pending_ttl=10.0, seed=0, clock=clock)
        kept = await bandit.choose()
        lost = await bandit.choose()
        clock.advance(9.0)
        await bandit.reward(kept.decision_id, 1.0)
        clock.advance(2.0)  # 11 s after the choice: past the TTL
        with pytest.raises(UnknownDecisionError, match="expired"):
            await bandit.reward(lost.decision_id, 1.0)

    asyncio.run(scenario())


# --- the fast paths are the same maths as the general ones -----------------------------------


@settings(max_examples=300, deadline=None)
@given(
    p=st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 1e-13, 1.0 - 1e-13, 0.5])),
    level=st.one_of(
        st.floats(0.0, 60.0),
        st.floats(0.0, 1e-9),
        st.builds(lambda t, n: math.log(t) / n, st.floats(1.0, 1e7), st.floats(0.01, 1e6)),
    ),
)
def test_fast_kl_bound_is_bit_identical(p: float, level: float) -> None:
    assert _kl_index(p, level) == kl_upper_bound(p, level)


def test_fast_kl_bound_on_a_grid() -> None:
    for i in range(101):
        p = i / 100
        for n in (1, 2, 3, 10, 47, 300, 5000, 100_000):
            for t in (2, 10, 1000, 10_000, 1_000_000):
                level = math.log(t) / n
                assert _kl_index(p, level) == kl_upper_bound(p, level), (p, level)


def _random_state(rng: random.Random, k: int, *, ties: bool) -> BanditState:
    state = BanditState(tuple(f"arm{i}" for i in range(k)))
    for _ in range(rng.randrange(k, 60)):
        i = rng.randrange(k)
        r = float(rng.random() < 0.5) if ties else rng.random()
        state.apply(i, Outcome(reward=r, learn=r), None)
    if ties:  # make every arm look the same, so the choice is a tie broken at random
        for i in range(k):
            state.n[i], state.total[i], state.total_sq[i] = 4.0, 2.0, 2.0
    return state


@pytest.mark.parametrize(
    "make", [UCB1, UCBTuned, KLUCB, lambda: KLUCB(rate="log"), ThompsonSampling]
)
@pytest.mark.parametrize("decay", [None, 0.97])
@pytest.mark.parametrize("priors", [False, True])
def test_fast_select_equals_general_select(
    make: Callable[[], Policy], decay: float | None, priors: bool
) -> None:
    rng = random.Random(11)
    for case in range(60):
        k = rng.randrange(1, 6)
        arms = tuple(f"arm{i}" for i in range(k))
        prior_map = {"arm0": Prior(mean=0.7, weight=3.0)} if priors else None
        engine = Engine(arms, policy=make(), priors=prior_map, decay=decay, seed=case)
        state = _random_state(rng, k, ties=case % 3 == 0)
        state.clock += rng.randrange(0, 20)
        before = engine.rng.getstate()
        fast = engine.select(state)
        after_fast = engine.rng.getstate()
        engine.rng.setstate(before)
        general = engine._select_general(state, (), engine.priors)
        assert repr(fast) == repr(general)
        assert engine.rng.getstate() == after_fast


def test_fast_select_handles_a_nan_first_index() -> None:
    class Broken:
        name = "broken"

        def indices(
            self,
            n: Sequence[float],
            total: Sequence[float],
            total_sq: Sequence[float],
            t: float,
            rng: random.Random,
        ) -> Sequence[float]:
            return (math.nan, 0.3, 0.7, 0.7)

    engine = Engine(["a", "b", "c", "d"], policy=Broken(), seed=0)
    state = engine.new_state()
    for i in range(4):
        state.apply(i, Outcome(reward=0.5, learn=0.5), None)
    chosen = {engine.select(state).arm for _ in range(50)}
    assert chosen == {"c", "d"}


def _reference_reward_outcome(self: Engine, reward: object) -> Outcome:
    r = check_reward(reward)
    learn = self._learn
    return Outcome(reward=r, learn=learn(r, self.rng) if learn else r)


def _reference_select(self: Engine, state: BanditState, exclude: Sequence[str] = ()) -> object:
    return self._select_general(state, exclude, self.priors)


@pytest.mark.parametrize(
    "make", [UCB1, UCBTuned, KLUCB, lambda: KLUCB(rate="log"), ThompsonSampling]
)
@pytest.mark.parametrize("decay", [None, 0.99])
def test_fast_paths_give_the_same_runs(
    monkeypatch: pytest.MonkeyPatch, make: Callable[[], Policy], decay: float | None
) -> None:
    fast = simulate(make(), MEANS, 1_000, seed=9, decay=decay)
    monkeypatch.setattr(Engine, "select", _reference_select)
    monkeypatch.setattr(Engine, "reward_outcome", _reference_reward_outcome)
    monkeypatch.setattr(klucb, "_kl_index", kl_upper_bound)
    assert simulate(make(), MEANS, 1_000, seed=9, decay=decay) == fast
