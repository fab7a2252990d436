"""Exact pruning (BoundedPolicy): the same choices, draws and indices as the full computation."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from random import Random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit_router import Prior
from bandit_router._engine import Engine, Selection
from bandit_router._stats import BanditState, Outcome
from bandit_router.policies import KLUCB, BoundedPolicy, Policy, _vector
from bandit_router.policies.klucb import (
    _below,
    _bernstein,
    _split,
    kl_upper_bound,
    variance_kl_upper_bound,
)

KLUCBS = [KLUCB(), KLUCB(variance=False), KLUCB("log"), KLUCB("log", variance=False)]
# Few distinct values, so equal statistics (hence tied indices) are common.
REWARDS = (0.0, 1.0, 0.5, 0.25, 0.8)


class Full:
    """The same policy without ``index_bounds``: the engine computes every index."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    @property
    def name(self) -> str:
        return self.policy.name

    def indices(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
        rng: Random,
    ) -> Sequence[float]:
        return self.policy.indices(n, total, total_sq, t, rng)


def same(a: Selection, b: Selection) -> bool:
    """Field for field (NaN equal to NaN), the pruned indices read last."""
    return repr(a) == repr(b)


@st.composite
def setups(draw: st.DrawFn, max_arms: int = 8) -> dict[str, Any]:
    k = draw(st.integers(1, max_arms))
    arms = tuple(f"arm{i}" for i in range(k))
    decay = draw(st.sampled_from([None, None, 0.97, 0.999]))
    state = BanditState(arms, clock=draw(st.integers(0, 5)))
    for _ in range(draw(st.integers(0, 12 * k))):
        i = draw(st.integers(0, k - 1))
        r = draw(st.one_of(st.sampled_from(REWARDS), st.floats(0.0, 1.0)))
        state.apply(i, Outcome(reward=r, learn=r), decay)
    # Copies of one arm's record make exact ties, also through decay and priors.
    for i in draw(st.sets(st.integers(0, k - 1))):
        state.set_arm_record(i, state.arm_record(0))
    state.clock += draw(st.integers(0, 3))
    state.in_flight[:] = draw(st.lists(st.sampled_from([0, 0, 1, 3]), min_size=k, max_size=k))
    priors = draw(
        st.dictionaries(
            st.sampled_from(arms),
            st.builds(
                lambda m, w, f: Prior(m, w, f * m * (1.0 - m)),
                st.sampled_from(REWARDS),
                st.sampled_from([0.0, 1.0, 3.0, 20.0]),
                st.sampled_from([0.0, 0.5, 1.0]),
            ),
        )
    )
    costs = draw(
        st.dictionaries(
            st.sampled_from(arms), st.one_of(st.sampled_from([0.0, 0.1, 0.25]), st.floats(0, 2))
        )
    )
    exclude = draw(st.sets(st.sampled_from(arms), max_size=k - 1))
    return {
        "arms": arms,
        "state": state,
        "decay": decay,
        "priors": priors or None,
        "costs": costs or None,
        "exclude": exclude,
    }


def engines(policy: Policy, setup: dict[str, Any], seed: int) -> tuple[Engine, Engine]:
    kw = {k: setup[k] for k in ("decay", "priors", "costs")}
    return (
        Engine(setup["arms"], policy=policy, seed=seed, **kw),
        Engine(setup["arms"], policy=Full(policy), seed=seed, **kw),
    )


@settings(max_examples=250, deadline=None)
@given(policy=st.sampled_from(KLUCBS), setup=setups(), seed=st.integers(0, 2**32))
def test_pruned_choice_is_the_full_computations(
    policy: Policy, setup: dict[str, Any], seed: int
) -> None:
    pruned, full = engines(policy, setup, seed)
    assert isinstance(policy, BoundedPolicy)
    assert not isinstance(full.policy, BoundedPolicy)
    state: BanditState = setup["state"]
    for _ in range(3):  # the same random draws, one selection after the other
        a = pruned.select(state, setup["exclude"])
        b = full.select(state, setup["exclude"])
        assert a.arm == b.arm
        assert pruned.rng.getstate() == full.rng.getstate()  # before reading the indices
        assert same(a, b)
        assert pruned.rng.getstate() == full.rng.getstate()  # reading them draws nothing


@settings(max_examples=40, deadline=None)
@given(
    policy=st.sampled_from(KLUCBS),
    k=st.integers(50, 140),
    pattern=st.integers(0, 2**32),
    seed=st.integers(0, 2**32),
    numpy=st.booleans(),
    costs=st.booleans(),
)
def test_pruned_choice_is_the_full_computations_with_many_arms(
    policy: Policy, k: int, pattern: int, seed: int, numpy: bool, costs: bool
) -> None:
    # Past _NUMPY_MIN_ARMS the bounds come from numpy (if installed): check both paths.
    with numpy_hidden(not numpy):
        run_many_arms(policy, k, pattern, seed, costs)


@contextmanager
def numpy_hidden(hide: bool = True) -> Iterator[None]:
    """Run the policies' pure-Python paths, as without numpy installed."""
    saved = _vector.np
    if hide:
        _vector.np = None
    try:
        yield
    finally:
        _vector.np = saved


def run_many_arms(policy: Policy, k: int, pattern: int, seed: int, costs: bool) -> None:
    rng = random.Random(pattern)
    arms = tuple(f"arm{i}" for i in range(k))
    means = [rng.choice([0.5, 0.6, rng.random()]) for _ in arms]
    cost_map = {a: rng.choice([0.0, 0.05, 0.1]) for a in arms} if costs else None
    pruned = Engine(arms, policy=policy, seed=seed, costs=cost_map)
    full = Engine(arms, policy=Full(policy), seed=seed, costs=cost_map)
    state, twin = pruned.new_state(), full.new_state()
    draw = random.Random(pattern + 1).random
    for step in range(3 * k):
        a, b = pruned.select(state), full.select(twin)
        assert a.arm == b.arm, step
        if step % 50 == 0:
            assert same(a, b)
        i = arms.index(a.arm)
        r = float(draw() < means[i]) if step % 2 else draw() * means[i]
        state.apply(i, pruned.reward_outcome(r), None)
        twin.apply(i, full.reward_outcome(r), None)
    assert pruned.rng.getstate() == full.rng.getstate()


@pytest.mark.parametrize("policy", KLUCBS, ids=lambda p: p.name)
def test_tied_arms_are_all_computed_and_drawn_among(policy: Policy) -> None:
    arms = tuple(f"arm{i}" for i in range(6))
    state = BanditState(arms)
    for i in range(6):  # arms 1, 3, 4 identical and best; the others worse
        for r in (1.0, 1.0, 0.0) if i in (1, 3, 4) else (1.0, 0.0, 0.0):
            state.apply(i, Outcome(reward=r, learn=r), None)
    pruned, full = Engine(arms, policy=policy, seed=5), Engine(arms, policy=Full(policy), seed=5)
    chosen = [pruned.select(state).arm for _ in range(60)]
    assert chosen == [full.select(state).arm for _ in range(60)]
    assert set(chosen) == {"arm1", "arm3", "arm4"}


def test_pruned_indices_are_filled_from_the_choices_statistics() -> None:
    arms = tuple(f"arm{i}" for i in range(30))
    engine = Engine(arms, seed=1)
    state = engine.new_state()
    for i in range(30):
        for r in (1.0, 0.0, i / 30):
            state.apply(i, Outcome(reward=r, learn=r), None)
    sel = engine.select(state)
    expected = KLUCB().indices(state.n, state.total, state.total_sq, math.fsum(state.n), Random())
    for _ in range(50):  # the state moves on before the indices are read
        state.apply(0, Outcome(reward=1.0, learn=1.0), None)
    assert sel.indices == tuple(expected)
    assert sel.indices is sel.indices  # filled once
    assert sel == Selection(**{f: getattr(sel, f) for f in Selection.__dataclass_fields__})


def test_a_third_party_policy_without_bounds_is_unaffected() -> None:
    arms = ("a", "b", "c")
    engine = Engine(arms, policy=Full(KLUCB()), seed=1)
    assert engine._bounded is None
    state = engine.new_state()
    for i in range(3):
        state.apply(i, Outcome(reward=0.5, learn=0.5), None)
    assert type(Selection.__dict__["indices"]) is property
    assert isinstance(engine.select(state).indices, tuple)


# --- the bounds themselves ------------------------------------------------------------------

levels = st.one_of(
    st.floats(0.0, 60.0),
    st.floats(0.0, 1e-9),
    st.sampled_from([0.0, 1e-14, 2e-12, 1e-6]),
    st.builds(lambda t, n: math.log(t) / n, st.floats(1.0, 1e7), st.floats(0.01, 1e6)),
)
means = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, 1e-13, 1.0 - 1e-13, 0.5]))


@settings(max_examples=500)
@given(p=means, frac=st.floats(0.0, 1.0), level=levels, nudge=st.integers(-3, 3))
def test_bounds_are_certified_against_the_computed_index(
    p: float, frac: float, level: float, nudge: int
) -> None:
    v = frac * p * (1.0 - p)
    for variance, exact in (
        (False, kl_upper_bound(p, level)),
        (True, variance_kl_upper_bound(p, v, level)),
    ):
        arm = _split(p, v, level, variance)
        if isinstance(arm, float):  # no bisection needed: the value is the index
            assert arm == exact
            continue
        a, w, y, lev = arm
        assert a + w * y <= exact <= a + w * _bernstein(y, lev) <= 1.0
        # Thresholds a few ulps around the index: "below" may say True only if it is below.
        x = exact
        for _ in range(abs(nudge)):
            x = math.nextafter(x, math.inf if nudge > 0 else -math.inf)
        for target in (x, exact + 1e-12, exact + 1e-9, exact + 1e-4, 1.0, 2.0):
            if _below(arm, target):
                assert exact < target
        assert not _below(arm, exact)


@settings(max_examples=30, deadline=None)
@given(policy=st.sampled_from(KLUCBS), k=st.integers(64, 200), pattern=st.integers(0, 2**32))
def test_numpy_bounds_are_the_python_bounds(policy: KLUCB, k: int, pattern: int) -> None:
    rng = random.Random(pattern)
    n = [rng.choice([1.0, 2.0, 10.0, rng.uniform(0.01, 100.0)]) for _ in range(k)]
    s = [m * rng.choice([0.0, 1.0, 0.5, rng.random()]) for m in n]
    q = [si * rng.choice([1.0, si / m, rng.random()]) for si, m in zip(s, n, strict=True)]
    q = [max(x, si * si / m) for x, si, m in zip(q, s, n, strict=True)]
    t = math.fsum(n) * rng.choice([1.0, 3.0])
    fast = policy.index_bounds(n, s, q, t)
    with numpy_hidden():
        slow = policy.index_bounds(n, s, q, t)
    exact = [fast.exact(i) for i in range(k)]
    assert exact == [slow.exact(i) for i in range(k)]
    assert fast.lower == slow.lower  # the same operations on the same numbers
    for i in range(k):
        assert fast.lower[i] <= exact[i] <= fast.upper[i]
        assert slow.lower[i] <= exact[i] <= slow.upper[i]
    # Both ways of testing a batch keep every arm that is not certainly below.
    xs = [e + rng.choice([0.0, 1e-12, 1e-6, 1e-3, -1e-3]) for e in exact]
    kept = fast.keep(range(k), xs)
    assert kept == sorted(kept)
    assert kept == [i for i in range(k) if i in kept]
    for i in range(k):
        if exact[i] >= xs[i]:
            assert i in kept
    with numpy_hidden():
        assert set(slow.keep(range(k), xs)) <= set(range(k))
        for i in range(k):
            if exact[i] >= xs[i]:
                assert i in slow.keep([i], [xs[i]])


def test_pruning_skips_the_exact_computation_of_losing_arms(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bandit_router.policies import klucb

    arms = tuple(f"arm{i}" for i in range(100))
    engine = Engine(arms, seed=3)
    state = engine.new_state()
    for i in range(100):
        for j in range(5 + i % 7):  # unequal shares: most arms keep a confidence bonus
            r = 1.0 if j % 3 else i / 100
            state.apply(i, Outcome(reward=r, learn=r), None)
    calls = 0
    exact = klucb.variance_kl_upper_bound

    def counted(p: float, v: float, level: float) -> float:
        nonlocal calls
        calls += 1
        return exact(p, v, level)

    monkeypatch.setattr(klucb, "variance_kl_upper_bound", counted)
    sel = engine.select(state)
    assert calls < 10  # not 100
    at_choice = calls
    full = KLUCB().indices(state.n, state.total, state.total_sq, math.fsum(state.n), Random())
    assert sel.indices == tuple(full)
    assert sel.arm == arms[full.index(max(full))]
    assert calls > at_choice + 100  # the indices not needed for the choice, once read


# --- the memo of caps between choices (many arms, stationary) ---------------------------------


def warm_state(arms: tuple[str, ...], rng: random.Random, means: list[float]) -> BanditState:
    """A state some way into a run: pulls decreasing with the arm's mean gap, some fractional."""
    state = BanditState(arms)
    best = max(means)
    for i, mu in enumerate(means):
        for _ in range(2 + int(rng.expovariate(1.0) * 40 * (1.0 - (best - mu)) ** 4)):
            r = float(rng.random() < mu) if rng.random() < 0.7 else rng.random() * mu * 2 % 1.0
            state.apply(i, Outcome(reward=r, learn=r), None)
    return state


@settings(max_examples=30, deadline=None)
@given(
    policy=st.sampled_from(KLUCBS),
    k=st.integers(16, 48),
    pattern=st.integers(0, 2**32),
    seed=st.integers(0, 2**32),
    costs=st.booleans(),
    priors=st.booleans(),
    contexts=st.sampled_from([1, 1, 2]),
)
def test_memo_choices_are_the_full_computations(
    policy: Policy, k: int, pattern: int, seed: int, costs: bool, priors: bool, contexts: int
) -> None:
    rng = random.Random(pattern)
    arms = tuple(f"arm{i}" for i in range(k))
    means = [rng.choice([0.5, 0.7, 0.75, rng.random()]) for _ in arms]
    config: dict[str, Any] = {
        "costs": {a: rng.choice([0.0, 0.02, 0.05]) for a in arms} if costs else None,
        "priors": {arms[0]: Prior(0.6, 5.0, 0.1), arms[-1]: Prior(0.9, 1.0)} if priors else None,
    }
    memo = Engine(arms, policy=policy, seed=seed, **config)
    full = Engine(arms, policy=Full(policy), seed=seed, **config)
    mine = [warm_state(arms, rng, means) for _ in range(contexts)]
    theirs = [state.copy() for state in mine]
    draw = random.Random(pattern + 1).random
    for step in range(400):
        c = step % contexts
        if step % 97 == 50:  # another worker's update: a sum changes, not the count
            i = rng.randrange(k)
            for state in (mine[c], theirs[c]):
                state.total[i] = state.total_sq[i] = min(state.total[i] + 0.5, state.n[i])
        a, b = memo.select(mine[c]), full.select(theirs[c])
        assert a.arm == b.arm, step
        assert memo.rng.getstate() == full.rng.getstate()
        if step % 40 == 0:
            assert same(a, b)
        i = arms.index(a.arm)
        r = float(draw() < means[i]) if step % 3 else draw() * means[i]
        mine[c].apply(i, memo.reward_outcome(r), None)
        theirs[c].apply(i, full.reward_outcome(r), None)


def test_the_memo_serves_a_settled_bandit(monkeypatch: pytest.MonkeyPatch) -> None:
    arms = tuple(f"arm{i}" for i in range(40))
    means = [0.9 - 0.4 * i / 39 for i in range(40)]
    engine = Engine(arms, seed=2)
    state = warm_state(arms, random.Random(3), means)
    served = 0
    choose = Engine._choose_incremental

    def counted(self: Engine, *args: Any) -> Any:
        nonlocal served
        pick = choose(self, *args)
        served += pick is not None
        return pick

    monkeypatch.setattr(Engine, "_choose_incremental", counted)
    draw = random.Random(4).random
    for _ in range(300):
        i = arms.index(engine.select(state).arm)
        state.apply(i, engine.reward_outcome(float(draw() < means[i])), None)
    assert served > 250
