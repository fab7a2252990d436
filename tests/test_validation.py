"""Invalid input raises a ValueError subclass naming the bad value, and changes nothing.

Reward types: real numbers (``numbers.Real``: int, float, ``Fraction`` and numpy's scalars)
and bools (numpy's too) are rewards. ``Decimal`` is not a ``numbers.Real`` and is rejected with
:class:`InvalidRewardError` like any other non-number: a ``Decimal`` reward is almost always a
bug upstream.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandit_router import (
    Bandit,
    BanditRouterError,
    ConfigurationError,
    DecisionError,
    DuplicateDecisionError,
    InvalidRewardError,
    PendingDecision,
    Prior,
    UnknownArmError,
    UnknownDecisionError,
)
from bandit_router._engine import Engine
from bandit_router._stats import check_reward
from bandit_router.policies import KLUCB, UCB1

ARMS = ("a", "b", "c")


@pytest.fixture(params=["asyncio", "trio"], scope="module")
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


def out_of(lo: float, hi: float, *, lo_open: bool = False) -> st.SearchStrategy[float]:
    """Floats (NaN and infinities included) outside [lo, hi] (or (lo, hi] if ``lo_open``)."""
    return st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda x: not ((lo < x if lo_open else lo <= x) and x <= hi)
    )


garbage_rewards: st.SearchStrategy[object] = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, -1e-300, 1.0000000000000002, 2, -1]),
    out_of(0.0, 1.0),
    st.integers(min_value=2, max_value=2**63),
    st.integers(min_value=-(2**63), max_value=-1),
    st.text(max_size=5),
    st.none(),
    st.complex_numbers(),
    st.sampled_from([Decimal("0.5"), Decimal("NaN"), b"0.5", [0.5], {"r": 1}]),
)
valid_rewards = st.one_of(
    st.floats(min_value=0.0, max_value=1.0), st.sampled_from([0, 1, True, False, -0.0])
)


def names_value(exc: BaseException, value: object) -> bool:
    return repr(value) in str(exc)


# --- rewards ----------------------------------------------------------------------------------


@given(value=garbage_rewards)
def test_check_reward_rejects_garbage(value: object) -> None:
    with pytest.raises(InvalidRewardError) as info:
        check_reward(value)
    assert isinstance(info.value, ValueError)
    assert names_value(info.value, value), str(info.value)


@given(value=valid_rewards)
def test_check_reward_accepts_numbers_and_bools(value: float) -> None:
    r = check_reward(value)
    assert type(r) is float
    assert 0.0 <= r <= 1.0
    assert r == float(value)


async def _snapshot(bandit: Bandit, decision_id: str) -> tuple[object, ...]:
    state = await bandit.state()
    return (
        await bandit.statistics(),
        await bandit.store.pending(bandit.name, decision_id),
        state.clock,
        [state.arm_record(i) for i in range(len(state.arms))],
    )


@pytest.mark.anyio
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=garbage_rewards, warm=st.integers(0, 4))
async def test_invalid_reward_changes_nothing(value: object, warm: int) -> None:
    bandit = Bandit(ARMS, seed=0)
    for k in range(warm):
        d = await bandit.choose()
        await bandit.reward(d.decision_id, k / 4)
    decision = await bandit.choose(decision_id="pending")
    before = await _snapshot(bandit, "pending")
    with pytest.raises(InvalidRewardError) as info:
        await bandit.reward("pending", value)
    assert names_value(info.value, value), str(info.value)
    assert await _snapshot(bandit, "pending") == before
    # The decision can still be settled.
    settled = await bandit.reward("pending", 0.5)
    assert settled.arm == decision.arm
    stats = await bandit.statistics()
    assert stats[decision.arm].pulls == cast(Any, before[0])[decision.arm].pulls + 1
    assert stats[decision.arm].in_flight == 0


@pytest.mark.anyio
async def test_invalid_reward_for_unknown_id_is_an_invalid_reward() -> None:
    bandit = Bandit(ARMS)
    with pytest.raises(InvalidRewardError):
        await bandit.reward("never-issued", math.nan)


# --- decision ids -------------------------------------------------------------------------------

bad_ids: st.SearchStrategy[object] = st.one_of(
    st.just(""),
    st.text(min_size=513, max_size=600),
    st.integers(),
    st.floats(allow_nan=False),
    st.binary(max_size=4),
    st.sampled_from([None, ["x"], ("x",), object]),
)


@pytest.mark.anyio
@settings(max_examples=40, deadline=None)
@given(bad=bad_ids)
async def test_bad_decision_ids_are_decision_errors(bad: object) -> None:
    bandit = Bandit(ARMS, seed=0)
    d = await bandit.choose(decision_id="ok")
    before = await _snapshot(bandit, "ok")
    bad_id = cast(str, bad)
    settlers: list[Callable[[], Awaitable[PendingDecision]]] = [
        lambda: bandit.reward(bad_id, 0.5),
        lambda: bandit.fail(bad_id),
        lambda: bandit.release(bad_id),
    ]
    for settle in settlers:
        with pytest.raises(DecisionError) as info:
            await settle()
        assert not isinstance(info.value, UnknownDecisionError)
        assert isinstance(info.value, ValueError)
        assert names_value(info.value, bad)
    if bad is not None:  # None asks choose() for a fresh id
        with pytest.raises(DecisionError) as info:
            await bandit.choose(decision_id=cast(str, bad))
        assert names_value(info.value, bad)
    assert await _snapshot(bandit, "ok") == before
    assert (await bandit.reward("ok", 1.0)).arm == d.arm


@pytest.mark.anyio
@settings(max_examples=30, deadline=None)
@given(did=st.text(min_size=1, max_size=40))
async def test_unknown_decision_id(did: str) -> None:
    bandit = Bandit(ARMS, seed=0)
    await bandit.choose(decision_id=did + "-other")
    before = await _snapshot(bandit, did + "-other")
    settlers: list[Callable[[], Awaitable[PendingDecision]]] = [
        lambda: bandit.reward(did, 0.5),
        lambda: bandit.fail(did),
        lambda: bandit.release(did),
    ]
    for settle in settlers:
        with pytest.raises(UnknownDecisionError) as info:
            await settle()
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, KeyError)
        assert names_value(info.value, did)
    assert await _snapshot(bandit, did + "-other") == before


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["reward", "fail", "release"])
async def test_a_decision_settles_once(how: str) -> None:
    bandit = Bandit(ARMS, seed=0)
    await bandit.choose(decision_id="d1")
    if how == "reward":
        await bandit.reward("d1", 0.25)
    elif how == "fail":
        await bandit.fail("d1")
    else:
        await bandit.release("d1")
    before = await _snapshot(bandit, "d1")
    with pytest.raises(UnknownDecisionError, match="'d1'") as info:
        await bandit.reward("d1", 0.75)
    assert "already" in str(info.value)
    with pytest.raises(UnknownDecisionError):
        await bandit.fail("d1")
    assert await _snapshot(bandit, "d1") == before


@pytest.mark.anyio
async def test_duplicate_decision_id_at_choose() -> None:
    bandit = Bandit(ARMS, seed=0)
    await bandit.choose(decision_id="dup")
    before = await _snapshot(bandit, "dup")
    with pytest.raises(DuplicateDecisionError, match="'dup'") as info:
        await bandit.choose(decision_id="dup")
    assert isinstance(info.value, DecisionError)
    assert isinstance(info.value, ValueError)
    assert await _snapshot(bandit, "dup") == before
    await bandit.reward("dup", 1.0)
    with pytest.raises(DuplicateDecisionError, match="'dup'"):
        await bandit.choose(decision_id="dup")  # settled ids are not reused either


@pytest.mark.anyio
async def test_unknown_arms_in_exclude_and_record_failure() -> None:
    bandit = Bandit(ARMS, seed=0)
    with pytest.raises(UnknownArmError, match="'zz'"):
        await bandit.choose(exclude=["zz"])
    with pytest.raises(UnknownArmError):
        await bandit.choose(exclude=ARMS)
    with pytest.raises(UnknownArmError, match="'zz'"):
        await bandit.record_failure("zz")
    stats = await bandit.statistics()
    assert all(s.in_flight == 0 and s.failures == 0 for s in stats.values())


# --- configuration ------------------------------------------------------------------------------

bad_decays: st.SearchStrategy[object] = st.one_of(
    out_of(0.0, 1.0, lo_open=True),
    st.sampled_from([0, 0.0, -0.0, 2, True, False, "0.9", b"0.9", Decimal("0.9"), [0.9], 0j]),
    st.integers(min_value=-(2**40), max_value=0),
    st.integers(min_value=2, max_value=2**40),
    st.text(max_size=4),
)


@given(decay=bad_decays)
def test_bad_decay(decay: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        Engine(ARMS, decay=cast(float, decay))
    assert names_value(info.value, decay), str(info.value)
    with pytest.raises(ConfigurationError):
        Bandit(ARMS, decay=cast(float, decay))


@pytest.mark.parametrize("decay", [None, 1, 1.0, 0.5, 5e-324])
def test_good_decay(decay: float | None) -> None:
    assert Engine(ARMS, decay=decay).decay == (None if decay is None else float(decay))


bad_means: st.SearchStrategy[object] = st.one_of(
    out_of(0.0, 1.0), st.sampled_from([True, "0.5", None, Decimal("0.5"), 2, -1])
)
bad_weights: st.SearchStrategy[object] = st.one_of(
    st.floats(max_value=-1e-300),
    st.sampled_from([math.nan, math.inf, -math.inf, True, "1", None, Decimal(1), -1]),
)


@given(mean=bad_means)
def test_bad_prior_mean(mean: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        Prior(mean=cast(float, mean), weight=1.0)
    assert names_value(info.value, mean)


@given(weight=bad_weights)
def test_bad_prior_weight(weight: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        Prior(mean=0.5, weight=cast(float, weight))
    assert names_value(info.value, weight)


def test_prior_for_unknown_arm_or_not_a_prior() -> None:
    with pytest.raises(ConfigurationError, match="'zz'"):
        Engine(ARMS, priors={"zz": Prior(0.5, 1)})
    with pytest.raises(ConfigurationError, match=r"0\.5"):
        Engine(ARMS, priors={"a": cast(Prior, 0.5)})
    with pytest.raises(ConfigurationError, match="'zz'"):
        Bandit(ARMS, priors={"zz": Prior(0.5, 1)})


@pytest.mark.parametrize("arms", [[], (), {}, set(), iter(())])
def test_no_arms(arms: Any) -> None:
    with pytest.raises(ConfigurationError, match="at least one arm"):
        Engine(arms)


@given(
    names=st.lists(st.text(min_size=1, max_size=3), min_size=1, max_size=5),
    dup=st.data(),
)
def test_duplicate_arm_names(names: list[str], dup: st.DataObject) -> None:
    again = dup.draw(st.sampled_from(names))
    with pytest.raises(ConfigurationError) as info:
        Engine([*names, again])
    assert repr(again) in str(info.value)


@pytest.mark.parametrize(
    "arms", [[1], ["a", None], ["a", ""], [b"a"], ["a", ("b",)], "ab", b"ab"], ids=repr
)
def test_arm_names_must_be_non_empty_strings(arms: Any) -> None:
    with pytest.raises(ConfigurationError):
        Engine(arms)


class NotAPolicy:
    """Has an ``indices`` method but no ``name``."""

    def indices(self) -> list[float]:
        return []


@pytest.mark.parametrize(
    "policy", [object(), "ucb1", 42, NotAPolicy(), KLUCB.indices], ids=lambda p: type(p).__name__
)
def test_policy_must_implement_the_protocol(policy: Any) -> None:
    with pytest.raises(ConfigurationError, match="Policy protocol"):
        Engine(ARMS, policy=policy)


@pytest.mark.parametrize("policy", [UCB1, KLUCB], ids=lambda p: p.__name__)
def test_policy_class_instead_of_instance_is_rejected(policy: Any) -> None:
    with pytest.raises(ConfigurationError):
        Engine(ARMS, policy=policy)


@given(
    c=st.one_of(out_of(0.0, math.inf, lo_open=True), st.sampled_from([math.inf, 0, -1, "2", None]))
)
def test_bad_ucb1_coefficient(c: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        UCB1(c=cast(float, c))
    assert names_value(info.value, c)


def test_ucb1_rejects_bool_coefficient() -> None:
    with pytest.raises(ConfigurationError):
        UCB1(c=True)


@given(rate=st.one_of(st.text().filter(lambda r: r not in ("log", "anytime")), st.none()))
def test_bad_klucb_rate(rate: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        KLUCB(rate=cast(Any, rate))
    assert names_value(info.value, rate)


@given(value=garbage_rewards, which=st.sampled_from(["failure_reward", "expired_reward"]))
def test_bad_failure_and_expired_reward(value: object, which: str) -> None:
    kwargs: dict[str, Any] = {which: value}
    if value is None:
        Engine(ARMS, **kwargs)  # None is allowed: learn nothing
        return
    with pytest.raises(ConfigurationError) as info:
        Engine(ARMS, **kwargs)
    assert which in str(info.value)
    assert names_value(info.value, value)


@given(
    ttl=st.one_of(
        st.floats(max_value=0.0),
        st.sampled_from([math.nan, math.inf, True, "60", None, Decimal(60), 0, -5]),
    )
)
def test_bad_pending_ttl(ttl: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        Engine(ARMS, pending_ttl=cast(float, ttl))
    assert names_value(info.value, ttl)


@given(
    cap=st.one_of(
        st.integers(max_value=0),
        st.sampled_from([1.0, 10.5, math.nan, math.inf, True, False, "10", None]),
    )
)
def test_bad_max_pending(cap: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        Engine(ARMS, max_pending=cast(int, cap))
    assert names_value(info.value, cap)


def test_good_optional_settings() -> None:
    engine = Engine(
        ARMS, failure_reward=None, expired_reward=0.0, pending_ttl=1, max_pending=1, seed=3
    )
    assert engine.failure_reward is None
    assert engine.rules.expired.learn == 0.0
    assert engine.rules.pending_ttl == 1.0
    assert engine.rules.max_pending == 1


@pytest.mark.parametrize("name", ["", 1, None])
def test_bad_bandit_name(name: Any) -> None:
    with pytest.raises(ConfigurationError):
        Bandit(ARMS, name=name)


def test_bad_store() -> None:
    with pytest.raises(ConfigurationError, match="StateStore"):
        Bandit(ARMS, store=cast(Any, object()))


HUGE = 10**400  # an int too large for a float


@pytest.mark.parametrize(
    "build",
    [
        lambda: check_reward(HUGE),
        lambda: Prior(mean=HUGE, weight=1),
        lambda: Prior(mean=0.5, weight=HUGE),
        lambda: Engine(ARMS, decay=HUGE),
        lambda: Engine(ARMS, failure_reward=HUGE),
        lambda: Engine(ARMS, pending_ttl=HUGE),
        lambda: UCB1(c=HUGE),
    ],
    ids=["reward", "prior-mean", "prior-weight", "decay", "failure_reward", "pending_ttl", "c"],
)
def test_huge_ints_are_value_errors(build: Any) -> None:
    with pytest.raises(ValueError, match="1000000"):
        build()


def test_every_input_error_is_a_value_error_and_a_bandit_router_error() -> None:
    for cls in (
        ConfigurationError,
        InvalidRewardError,
        UnknownArmError,
        DecisionError,
        UnknownDecisionError,
        DuplicateDecisionError,
    ):
        assert issubclass(cls, ValueError)
        assert issubclass(cls, BanditRouterError)


def test_real_numbers_of_other_types_are_rewards() -> None:
    import numpy as np

    from bandit_router._stats import check_reward

    for value, expected in [
        (Fraction(1, 2), 0.5),
        (np.float32(0.25), 0.25),
        (np.float64(0.75), 0.75),
        (np.int64(1), 1.0),
        (np.bool_(True), 1.0),
        (np.bool_(False), 0.0),
    ]:
        assert check_reward(value) == expected
    for bad in (np.float32("nan"), np.int64(2), Fraction(3, 2), Decimal("0.5")):
        with pytest.raises(InvalidRewardError):
            check_reward(bad)


@given(
    variance=st.one_of(
        st.floats(min_value=0.2501, max_value=1e9),  # above mean * (1 - mean) = 0.25
        st.floats(max_value=-1e-300),
        st.sampled_from([math.nan, math.inf, -math.inf]),
    )
)
def test_bad_prior_variance(variance: float) -> None:
    with pytest.raises(ConfigurationError) as info:
        Prior(mean=0.5, weight=1.0, variance=variance)
    assert names_value(info.value, variance)
