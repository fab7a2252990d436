"""Properties of the statistics maths: priors as pseudo-observations, lazy global-clock decay."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from bandit_router import Prior
from bandit_router._engine import Engine
from bandit_router._stats import BanditState, Outcome

ARMS = ("a", "b", "c")
K = len(ARMS)

rewards = st.floats(min_value=0.0, max_value=1.0)
decays = st.one_of(st.floats(min_value=0.01, max_value=1.0), st.sampled_from([0.5, 0.9, 0.999]))
priors_st = st.one_of(
    st.none(),
    st.builds(
        Prior,
        mean=rewards,
        weight=st.one_of(st.integers(0, 30), st.floats(min_value=0.0, max_value=50.0)),
    ),
)


@dataclass(frozen=True)
class Event:
    """One settled call: which arm, and what it does to the statistics."""

    arm: int
    outcome: Outcome


@st.composite
def events(draw: st.DrawFn) -> Event:
    arm = draw(st.integers(0, K - 1))
    kind = draw(st.sampled_from(["reward", "reward", "reward", "failure", "release"]))
    if kind == "reward":
        r = draw(rewards)
        return Event(arm, Outcome(reward=r, learn=r))
    if kind == "failure":
        credit = draw(st.sampled_from([0.0, None, 0.25]))
        return Event(arm, Outcome(reward=None, learn=credit, failure=True))
    return Event(arm, Outcome(reward=None, learn=None))


event_lists = st.lists(events(), max_size=60)


def build(evs: Sequence[Event], decay: float | None) -> BanditState:
    state = BanditState(ARMS)
    for e in evs:
        state.apply(e.arm, e.outcome, decay)
    return state


def eager(
    evs: Sequence[Event],
    decay: float | None,
    priors: Sequence[Prior | None] = (None,) * K,
) -> tuple[list[float], list[float], list[float]]:
    """The reference: priors as observations at clock 0, then on every observation of any arm
    multiply every arm by ``decay`` and add the new value to its arm."""
    n = [0.0] * K
    s = [0.0] * K
    q = [0.0] * K
    for i, p in enumerate(priors):
        if p is not None:
            n[i], s[i], q[i] = p.weight, p.weight * p.mean, p.weight * p.mean * p.mean
    for e in evs:
        v = e.outcome.learn
        if v is None:
            continue
        if decay is not None:
            for j in range(K):
                n[j] *= decay
                s[j] *= decay
                q[j] *= decay
        n[e.arm] += 1.0
        s[e.arm] += v
        q[e.arm] += v * v
    return n, s, q


def close(a: Sequence[float], b: Sequence[float], rel: float = 1e-9, abs_: float = 1e-12) -> bool:
    return len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=rel, abs_tol=abs_) for x, y in zip(a, b, strict=True)
    )


# --- lazy decay == eager decay ----------------------------------------------------------


@given(evs=event_lists, decay=decays)
def test_lazy_decay_equals_eager_reference(evs: list[Event], decay: float) -> None:
    n, s, q = build(evs, decay).discounted(decay)
    rn, rs, rq = eager(evs, decay)
    assert close(n, rn), (n, rn)
    assert close(s, rs), (s, rs)
    assert close(q, rq), (q, rq)


@given(evs=event_lists, decay=decays, priors=st.tuples(priors_st, priors_st, priors_st))
def test_prior_fades_like_observations_at_clock_zero(
    evs: list[Event], decay: float, priors: tuple[Prior | None, ...]
) -> None:
    n, s, q = build(evs, decay).discounted(decay, priors)
    rn, rs, rq = eager(evs, decay, priors)
    assert close(n, rn), (n, rn)
    assert close(s, rs), (s, rs)
    assert close(q, rq), (q, rq)


@given(evs=event_lists, decay=decays)
def test_an_update_touches_one_arm(evs: list[Event], decay: float) -> None:
    state = build(evs, decay)
    for e in evs[-1:]:
        before = state.copy()
        state.apply(e.arm, e.outcome, decay)
        for j in range(K):
            if j != e.arm:
                assert state.n[j] == before.n[j]
                assert state.total[j] == before.total[j]
                assert state.total_sq[j] == before.total_sq[j]
                assert state.stamp[j] == before.stamp[j]
                assert state.pulls[j] == before.pulls[j]


@given(evs=event_lists, decay=decays)
def test_clock_counts_observations_only(evs: list[Event], decay: float) -> None:
    state = build(evs, decay)
    assert state.clock == sum(e.outcome.learn is not None for e in evs)


@given(evs=event_lists, decay=st.one_of(st.none(), decays))
def test_raw_counts_are_never_decayed(evs: list[Event], decay: float | None) -> None:
    stats = build(evs, decay).statistics(decay)
    for i, arm in enumerate(ARMS):
        mine = [e.outcome for e in evs if e.arm == i]
        rs = [o.reward for o in mine if o.reward is not None]
        assert stats[arm].pulls == len(rs)
        assert stats[arm].failures == sum(o.failure for o in mine)
        assert math.isclose(stats[arm].reward_sum, math.fsum(rs), abs_tol=1e-9)
        raw = stats[arm].raw_mean
        if rs:
            assert raw is not None
            assert math.isclose(raw, math.fsum(rs) / len(rs), abs_tol=1e-9)
        else:
            assert raw is None


# --- decay=None is the stationary maths, and so is decay=1.0 ------------------------------


@given(evs=event_lists, priors=st.tuples(priors_st, priors_st, priors_st))
def test_no_decay_is_plain_sums_and_equals_decay_one(
    evs: list[Event], priors: tuple[Prior | None, ...]
) -> None:
    none_state = build(evs, None)
    one_state = build(evs, 1.0)
    rn, rs, rq = eager(evs, None)
    # Same operations in the same order: exact equality, not closeness.
    assert none_state.n == rn
    assert none_state.total == rs
    assert none_state.total_sq == rq
    assert one_state.n == rn
    assert one_state.total == rs
    assert one_state.total_sq == rq
    assert none_state.discounted(None, priors) == one_state.discounted(1.0, priors)
    assert none_state.statistics(None, priors) == one_state.statistics(1.0, priors)


# --- Prior(m, w) == w observations of mean m -----------------------------------------------


class RecordingPolicy:
    """A policy that records what the engine feeds it and returns equal indices."""

    def __init__(self) -> None:
        self.seen: list[tuple[list[float], list[float], list[float], float]] = []

    @property
    def name(self) -> str:
        return "recording"

    def indices(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
        rng: Random,
    ) -> list[float]:
        self.seen.append((list(n), list(total), list(total_sq), t))
        return [0.0] * len(n)


@given(
    evs=event_lists,
    prior_arm=st.integers(0, K - 1),
    mean=rewards,
    weight=st.integers(1, 25),
    in_flight=st.lists(st.integers(0, 3), min_size=K, max_size=K),
)
def test_integer_prior_equals_replayed_observations(
    evs: list[Event], prior_arm: int, mean: float, weight: int, in_flight: list[int]
) -> None:
    prior = Prior(mean=mean, weight=weight)
    priors = tuple(prior if i == prior_arm else None for i in range(K))
    with_prior = build(evs, None)
    replayed = BanditState(ARMS)
    for _ in range(weight):
        replayed.apply(prior_arm, Outcome(reward=mean, learn=mean), None)
    for e in evs:
        replayed.apply(e.arm, e.outcome, None)

    n, s, q = with_prior.discounted(None, priors)
    rn, rs, rq = replayed.discounted(None)
    assert close(n, rn)
    assert close(s, rs)
    assert close(q, rq)

    a = with_prior.statistics(None, priors)
    b = replayed.statistics(None)
    for arm in ARMS:
        assert math.isclose(a[arm].weight, b[arm].weight, rel_tol=1e-12)
        ma, mb = a[arm].mean, b[arm].mean
        assert (ma is None) == (mb is None)
        if ma is not None and mb is not None:
            assert math.isclose(ma, mb, rel_tol=1e-9, abs_tol=1e-12)

    # The engine's selection inputs (after counting calls in flight) are the same.
    with_prior.in_flight[:] = in_flight
    replayed.in_flight[:] = in_flight
    pa, pb = RecordingPolicy(), RecordingPolicy()
    sa = Engine(ARMS, policy=pa, priors={ARMS[prior_arm]: prior}).select(with_prior)
    sb = Engine(ARMS, policy=pb).select(replayed)
    assert [math.isinf(x) for x in sa.indices] == [math.isinf(x) for x in sb.indices]
    assert len(pa.seen) == len(pb.seen)
    for (n1, s1, q1, t1), (n2, s2, q2, t2) in zip(pa.seen, pb.seen, strict=True):
        assert close(n1, n2)
        assert close(s1, s2)
        assert close(q1, q2)
        assert math.isclose(t1, t2, rel_tol=1e-12)


@given(
    evs=event_lists,
    priors=st.tuples(priors_st, priors_st, priors_st),
)
def test_prior_is_the_pseudo_observation_formula(
    evs: list[Event], priors: tuple[Prior | None, ...]
) -> None:
    state = build(evs, None)
    n, s, q = state.discounted(None, priors)
    for i, p in enumerate(priors):
        w, m = (p.weight, p.mean) if p is not None else (0.0, 0.0)
        assert math.isclose(n[i], state.n[i] + w, rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(s[i], state.total[i] + w * m, rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(q[i], state.total_sq[i] + w * m * m, rel_tol=1e-12, abs_tol=1e-12)
    stats = state.statistics(None, priors)
    for i, arm in enumerate(ARMS):
        assert stats[arm].weight == n[i]
        assert stats[arm].mean == (s[i] / n[i] if n[i] > 0 else None)


def test_prior_alone_gives_mean_and_weight() -> None:
    state = BanditState(ARMS)
    stats = state.statistics(None, (Prior(0.8, 10), Prior(0.3, 0), None))
    assert stats["a"].mean == 0.8
    assert stats["a"].weight == 10
    assert stats["a"].pulls == 0
    assert stats["b"].mean is None  # weight 0 disables a prior
    assert stats["c"].mean is None


@settings(max_examples=50)
@given(decay=st.floats(min_value=0.01, max_value=0.999), steps=st.integers(1, 40))
def test_prior_weight_fades_with_the_global_clock(decay: float, steps: int) -> None:
    state = BanditState(ARMS)
    for _ in range(steps):
        state.apply(1, Outcome(reward=1.0, learn=1.0), decay)  # observations of another arm
    stats = state.statistics(decay, (Prior(0.7, 10.0), None, None))
    assert math.isclose(stats["a"].weight, 10.0 * decay**steps, rel_tol=1e-9)
    assert stats["a"].mean is not None
    assert math.isclose(stats["a"].mean, 0.7, rel_tol=1e-9)


@given(
    m=st.floats(min_value=0.0, max_value=1.0),
    w=st.floats(min_value=0.0, max_value=1e6),
    frac=st.floats(min_value=0.0, max_value=1.0),
)
def test_a_prior_with_a_variance_is_observations_with_that_spread(
    m: float, w: float, frac: float
) -> None:
    v = frac * m * (1.0 - m)
    n, s, q = BanditState(ARMS).discounted(None, (Prior(m, w, variance=v), None, None))
    assert (n[0], s[0]) == (w, w * m)
    assert math.isclose(q[0], w * (v + m * m), rel_tol=1e-12, abs_tol=1e-300)
    # The default is observations exactly at the mean (variance 0).
    q0 = BanditState(ARMS).discounted(None, (Prior(m, w), None, None))[2][0]
    assert math.isclose(q0, w * m * m, rel_tol=1e-12, abs_tol=1e-300)
