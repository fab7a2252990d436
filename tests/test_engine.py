"""Engine and Bandit behaviour: untried arms first, concurrency-aware choice, Selection."""

from __future__ import annotations

import math
from collections import Counter
from random import Random
from typing import cast

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit_router import Bandit, Prior, Selection
from bandit_router._engine import Engine
from bandit_router._stats import BanditState, Outcome
from bandit_router.policies import KLUCB, UCB1, Policy, ThompsonSampling, UCBTuned

ARMS = ("a", "b", "c", "d", "e")
ALL: list[Policy] = [UCB1(), UCBTuned(), KLUCB("log"), KLUCB("anytime"), ThompsonSampling()]
unit = st.floats(min_value=0.0, max_value=1.0)


@pytest.fixture(params=["asyncio", "trio"], scope="module")
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


@st.composite
def states(draw: st.DrawFn) -> BanditState:
    state = BanditState(ARMS)
    for _ in range(draw(st.integers(0, 25))):
        i = draw(st.integers(0, len(ARMS) - 1))
        r = draw(unit)
        state.apply(i, Outcome(reward=r, learn=r), None)
    state.in_flight[:] = draw(st.lists(st.integers(0, 2), min_size=len(ARMS), max_size=len(ARMS)))
    return state


def untried(state: BanditState, priors: tuple[Prior | None, ...] | None = None) -> set[str]:
    n, _, _ = state.discounted(None, priors)
    return {a for i, a in enumerate(ARMS) if n[i] == 0 and state.in_flight[i] == 0}


# --- untried arms first ---------------------------------------------------------------------


@given(
    policy=st.sampled_from(ALL),
    state=states(),
    exclude=st.sets(st.sampled_from(ARMS), max_size=len(ARMS) - 1),
    seed=st.integers(0, 2**32),
)
def test_untried_arms_are_chosen_first(
    policy: Policy, state: BanditState, exclude: set[str], seed: int
) -> None:
    sel = Engine(ARMS, policy=policy, seed=seed).select(state, exclude)
    fresh = untried(state) - exclude
    if fresh:
        assert sel.arm in fresh
        for i, arm in enumerate(ARMS):
            if arm in fresh:
                assert sel.indices[i] == math.inf
    else:
        assert all(not math.isinf(x) for x in sel.indices)
    for i, arm in enumerate(ARMS):
        if arm in exclude:
            assert math.isnan(sel.indices[i])


def _all_but_b_tried() -> BanditState:
    state = BanditState(ARMS)
    for i, _ in enumerate(ARMS):
        if ARMS[i] != "b":
            state.apply(i, Outcome(reward=1.0, learn=1.0), None)
    return state


@pytest.mark.parametrize("policy", ALL, ids=lambda p: p.name)
def test_an_arm_with_a_prior_is_not_untried(policy: Policy) -> None:
    state = _all_but_b_tried()
    engine = Engine(ARMS, policy=policy, priors={"b": Prior(mean=0.0, weight=50)}, seed=3)
    sel = engine.select(state)
    b = ARMS.index("b")
    assert math.isfinite(sel.indices[b])
    assert sel.means[b] == 0.0
    # A confident bad prior keeps "b" from being tried first.
    assert Counter(engine.select(state).arm for _ in range(50))["b"] < 50


def test_a_zero_weight_prior_leaves_the_arm_untried() -> None:
    state = _all_but_b_tried()
    engine = Engine(ARMS, priors={"b": Prior(mean=0.0, weight=0)}, seed=3)
    for _ in range(20):
        sel = engine.select(state)
        assert sel.arm == "b"
        assert sel.indices[ARMS.index("b")] == math.inf
        assert sel.means[ARMS.index("b")] is None


def test_an_arm_in_flight_is_not_untried() -> None:
    state = BanditState(ARMS)
    state.in_flight[0] = 1
    engine = Engine(ARMS, seed=0)
    for _ in range(50):
        assert engine.select(state).arm != "a"


# --- Selection fields --------------------------------------------------------------------------


@settings(max_examples=150)
@given(
    policy=st.sampled_from(ALL),
    state=states(),
    exclude=st.sets(st.sampled_from(ARMS), max_size=len(ARMS) - 1),
    prior=st.one_of(st.none(), st.builds(Prior, mean=unit, weight=st.floats(0.0, 20.0))),
    seed=st.integers(0, 2**32),
)
def test_selection_fields(
    policy: Policy, state: BanditState, exclude: set[str], prior: Prior | None, seed: int
) -> None:
    engine = Engine(ARMS, policy=policy, priors={"c": prior} if prior else None, seed=seed)
    priors = engine.priors
    sel = engine.select(state, exclude)
    assert isinstance(sel, Selection)
    assert sel.policy == policy.name
    assert sel.arms == ARMS
    assert sel.pulls == tuple(state.pulls)
    assert sel.in_flight == tuple(state.in_flight)
    assert len(sel.indices) == len(sel.means) == len(ARMS)
    n, s, _ = state.discounted(None, priors)
    for i in range(len(ARMS)):
        m = sel.means[i]
        if n[i] > 0:
            assert m is not None
            assert math.isclose(m, s[i] / n[i], rel_tol=1e-9, abs_tol=1e-12)
        elif state.in_flight[i] == 0:
            assert m is None
    known = [m for a, m in zip(ARMS, sel.means, strict=True) if m is not None and a not in exclude]
    mine = sel.means[ARMS.index(sel.arm)]
    expected = bool(known) and (mine is None or mine < max(known))
    assert sel.explore is expected


def test_explore_flag_simple_cases() -> None:
    state = BanditState(("good", "bad"))
    state.apply(0, Outcome(reward=0.9, learn=0.9), None)
    engine = Engine(("good", "bad"), seed=0)
    sel = engine.select(state)
    assert sel.arm == "bad"  # untried
    assert sel.explore is True
    assert sel.indices[1] == math.inf
    for _ in range(20):
        state.apply(1, Outcome(reward=0.1, learn=0.1), None)
    for _ in range(200):
        state.apply(0, Outcome(reward=0.9, learn=0.9), None)
    sel = engine.select(state)
    assert sel.arm == "good"
    assert sel.explore is False
    assert all(math.isfinite(x) for x in sel.indices)
    sel = engine.select(state, exclude=["good"])
    assert sel.arm == "bad"
    assert sel.explore is False  # the best *allowed* mean
    assert math.isnan(sel.indices[0])
    fresh = Engine(("x", "y"), seed=0).select(BanditState(("x", "y")))
    assert fresh.explore is False  # nothing known yet
    assert fresh.means == (None, None)


@pytest.mark.parametrize(
    "policy", [UCB1(), UCBTuned(), KLUCB("log"), KLUCB("anytime")], ids=lambda p: p.name
)
def test_excluded_untried_arm_with_all_others_tried(policy: Policy) -> None:
    # The fallback after an untried arm failed with failure_reward=None: "b" has no data and
    # is excluded, "a" has data. The policy must only see arms with n > 0.
    state = BanditState(("a", "b"))
    state.apply(0, Outcome(reward=1.0, learn=1.0), None)
    sel = Engine(("a", "b"), policy=policy).select(state, exclude=["b"])
    assert sel.arm == "a"
    assert math.isnan(sel.indices[1])


DETERMINISTIC: list[Policy] = [UCB1(), UCBTuned(), KLUCB("log"), KLUCB("anytime")]


@settings(max_examples=150)
@given(
    policy=st.sampled_from(DETERMINISTIC),
    state=states(),
    exclude=st.sets(st.sampled_from(ARMS), max_size=len(ARMS) - 1),
    prior=st.one_of(st.none(), st.builds(Prior, mean=unit, weight=st.floats(0.0, 20.0))),
    decay=st.sampled_from([None, 1.0, 0.9]),
    seed=st.integers(0, 2**32),
)
def test_selection_matches_a_reference_computation(
    policy: Policy,
    state: BanditState,
    exclude: set[str],
    prior: Prior | None,
    decay: float | None,
    seed: int,
) -> None:
    # The reference: discounted statistics plus priors, calls in flight as observations at
    # the current mean, untried arms first, else the policy's index (largest wins).
    engine = Engine(
        ARMS, policy=policy, priors={"c": prior} if prior else None, decay=decay, seed=seed
    )
    n, s, q = state.discounted(decay, engine.priors)
    for i, f in enumerate(state.in_flight):
        if f and n[i] > 0:
            s[i] += f * s[i] / n[i]
            q[i] += f * q[i] / n[i]
        n[i] += f
    allowed = [a not in exclude for a in ARMS]
    sel = engine.select(state, exclude)
    if any(n[i] <= 0 and allowed[i] for i in range(len(ARMS))):
        assert n[ARMS.index(sel.arm)] <= 0
        return
    # The policy sees only the arms it may choose (t sums those), the others get NaN.
    keep = [i for i in range(len(ARMS)) if allowed[i]]
    sub_n = [n[i] for i in keep]
    sub = policy.indices(
        sub_n, [s[i] for i in keep], [q[i] for i in keep], math.fsum(sub_n), Random(0)
    )
    ref = [math.nan] * len(ARMS)
    for j, i in enumerate(keep):
        ref[i] = sub[j]
    for i in range(len(ARMS)):
        if allowed[i]:
            assert sel.indices[i] == ref[i]
        else:
            assert math.isnan(sel.indices[i])
    best = max(ref[i] for i in keep)
    assert ref[ARMS.index(sel.arm)] == best


def test_default_policy_is_anytime_klucb() -> None:
    engine = Engine(ARMS)
    assert engine.policy == KLUCB("anytime")
    assert engine.select(engine.new_state()).policy == "kl-ucb"


# --- Thompson sampling's Bernoulli resampling ---------------------------------------------------


@given(reward=unit, seed=st.integers(0, 2**32))
def test_thompson_learn_is_zero_or_one(reward: float, seed: int) -> None:
    rng = Random(seed)
    assert ThompsonSampling().learn(reward, rng) in (0.0, 1.0)
    assert ThompsonSampling(resample=False).learn(reward, rng) == reward
    assert ThompsonSampling().learn(0.0, rng) == 0.0
    assert ThompsonSampling().learn(1.0, rng) == 1.0


@pytest.mark.parametrize("reward", [0.0, 0.3, 0.75, 1.0])
def test_thompson_learned_mean_tracks_the_reward(reward: float) -> None:
    engine = Engine(("a",), policy=ThompsonSampling(), seed=11)
    state = engine.new_state()
    for _ in range(4000):
        out = engine.reward_outcome(reward)
        assert out.reward == reward
        assert out.learn in (0.0, 1.0)
        state.apply(0, out, engine.decay)
    stats = state.statistics(engine.decay)["a"]
    assert stats.mean is not None
    assert abs(stats.mean - reward) < 0.03
    assert stats.raw_mean == pytest.approx(reward)


# --- Bandit over InMemoryStore (pure core: asyncio and trio) -------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("policy", ALL, ids=lambda p: p.name)
async def test_concurrent_choices_without_rewards_spread_over_arms(policy: Policy) -> None:
    bandit = Bandit(ARMS, policy=policy, seed=5)
    picked: list[str] = []

    async def one() -> None:
        picked.append((await bandit.choose()).arm)

    async with anyio.create_task_group() as tg:
        for _ in range(100):
            tg.start_soon(one)
    counts = Counter(picked)
    assert len(picked) == 100
    assert set(counts) == set(ARMS), counts
    assert max(counts.values()) <= 40, counts
    stats = await bandit.statistics()
    assert sum(s.in_flight for s in stats.values()) == 100
    assert all(s.pulls == 0 for s in stats.values())


@pytest.mark.anyio
async def test_sequential_choices_without_rewards_spread_evenly() -> None:
    bandit = Bandit(ARMS, seed=1)
    counts = Counter([(await bandit.choose()).arm for _ in range(100)])
    assert set(counts) == set(ARMS)
    assert max(counts.values()) - min(counts.values()) <= 2, counts


@pytest.mark.anyio
async def test_reward_fail_release_and_record_failure() -> None:
    bandit = Bandit(("a", "b"), seed=0, failure_reward=0.0)
    d1 = await bandit.choose(decision_id="one")
    assert d1.decision_id == "one"
    assert d1.selection.arm == d1.arm
    settled = await bandit.reward("one", 0.8)
    assert (settled.decision_id, settled.arm) == ("one", d1.arm)
    stats = await bandit.statistics()
    assert stats[d1.arm].pulls == 1
    assert stats[d1.arm].mean == 0.8
    assert stats[d1.arm].in_flight == 0

    d2 = await bandit.choose(decision_id="two")
    await bandit.fail("two")
    stats = await bandit.statistics()
    assert stats[d2.arm].failures == 1
    assert stats[d2.arm].in_flight == 0
    assert stats[d2.arm].pulls == (1 if d2.arm == d1.arm else 0)

    before = await bandit.state()
    d3 = await bandit.choose()
    await bandit.release(d3.decision_id)
    after = await bandit.state()
    assert after.clock == before.clock
    assert after.n == before.n
    assert after.in_flight == before.in_flight

    await bandit.record_failure("b")
    assert (await bandit.statistics())["b"].failures == before.failures[1] + 1


@pytest.mark.anyio
async def test_bandit_learns_the_better_arm() -> None:
    rng = Random(0)
    means = {"a": 0.2, "b": 0.5, "c": 0.8}
    bandit = Bandit(tuple(means), seed=0)
    chosen: list[str] = []
    for _ in range(400):
        d = await bandit.choose()
        chosen.append(d.arm)
        await bandit.reward(d.decision_id, rng.random() < means[d.arm])
    assert Counter(chosen[-200:]).most_common(1)[0][0] == "c"


@pytest.mark.anyio
async def test_a_context_is_seeded_with_the_global_spread() -> None:
    bandit = Bandit(list(ARMS), context_prior_weight=4.0, seed=0)
    for r in (1.0, 0.0, 1.0, 1.0):  # pass/fail rewards on the first arm, global context
        d = await bandit.choose(exclude=ARMS[1:])
        await bandit.reward(d.decision_id, r)
    seeds = await bandit._context_priors("tenant-1")
    assert isinstance(seeds, tuple)
    first = seeds[0]
    assert first is not None
    assert (first.mean, first.weight) == (0.75, 4.0)
    # The seed carries the global spread (pass/fail: 0.75 * 0.25), not a variance of 0, so a
    # policy reading the variance sees a new context no surer than the data.
    assert math.isclose(first.variance, 0.75 * 0.25)
    assert all(p is None for p in seeds[1:])
