"""The StateStore contract: every store (see conftest.STORES) passes these tests unchanged."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from bandit_router._engine import Engine, PendingDecision, Rules
from bandit_router._errors import DuplicateDecisionError, UnknownArmError, UnknownDecisionError
from bandit_router._stats import BanditState, Outcome
from bandit_router.stores import Chooser, StateStore

from ._procs import StoreSpec

pytestmark = pytest.mark.anyio

NS = "router"
CTX = "ctx"
ARMS = ("a", "b", "c")
NOTHING = Outcome(reward=None, learn=None)
FAILURE = Outcome(reward=None, learn=0.0, failure=True)
BOTH_BACKENDS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


def make_rules(
    *,
    decay: float | None = None,
    expired: Outcome = NOTHING,
    ttl: float = 3600.0,
    max_pending: int = 100_000,
) -> Rules:
    return Rules(decay=decay, expired=expired, pending_ttl=ttl, max_pending=max_pending)


RULES = make_rules()


def pick(arm: str) -> Chooser:
    """A chooser that always picks ``arm``."""
    return lambda state: arm


def rec(state: BanditState, arm: str) -> dict[str, Any]:
    return state.arm_record(state.index(arm))


def empty_record() -> dict[str, Any]:
    return BanditState(("x",)).arm_record(0)


async def snapshot(
    store: StateStore, ids: tuple[str, ...] = (), arms: tuple[str, ...] = ARMS
) -> tuple[object, ...]:
    """Everything observable about NS: a rejected call must leave it identical."""
    contexts = await store.contexts(NS)
    states = []
    for ctx in [*contexts, CTX]:
        st = await store.load(NS, ctx, arms, RULES)
        states.append((ctx, st.arms, st.clock, [st.arm_record(i) for i in range(len(arms))]))
    pending = [await store.pending(NS, d) for d in ids]
    return (contexts, states, pending)


# --- 1. basics ------------------------------------------------------------------------------


async def test_load_of_unknown_namespace_and_context_is_empty(store: StateStore) -> None:
    st = await store.load("nowhere", "nothing", ARMS, RULES)
    assert st.arms == ARMS
    assert st.clock == 0
    assert [st.arm_record(i) for i in range(3)] == [empty_record()] * 3
    # Loading creates nothing.
    assert await store.contexts("nowhere") == []
    assert await store.pending("nowhere", "d") is None


@BOTH_BACKENDS
async def test_begin_chooses_counts_in_flight_and_records_pending(store: StateStore) -> None:
    seen: list[BanditState] = []

    def choose(state: BanditState) -> str:
        seen.append(state)
        return "b"

    arm = await store.begin(NS, CTX, ARMS, choose, "d1", RULES, 100.0)
    assert arm == "b"
    assert len(seen) == 1
    assert seen[0].arms == ARMS
    assert seen[0].in_flight == [0, 0, 0]
    st = await store.load(NS, CTX, ARMS, RULES)
    assert st.in_flight == [0, 1, 0]
    assert st.pulls == [0, 0, 0]
    assert st.clock == 0
    assert await store.pending(NS, "d1") == PendingDecision("d1", CTX, "b", 100.0, 3700.0)
    assert await store.pending(NS, "d2") is None

    # The chooser sees calls in flight, and its snapshot is not the store's live state.
    await store.begin(NS, CTX, ARMS, choose, "d2", RULES, 101.0)
    assert seen[1].in_flight == [0, 1, 0]
    assert seen[0].in_flight == [0, 0, 0]
    seen[1].in_flight[0] = 99  # a chooser scribbling on its snapshot changes nothing
    assert (await store.load(NS, CTX, ARMS, RULES)).in_flight == [0, 2, 0]


@BOTH_BACKENDS
async def test_settle_applies_the_outcome_exactly_and_releases(store: StateStore) -> None:
    await store.begin(NS, CTX, ARMS, pick("a"), "d1", RULES, 0.0)
    await store.begin(NS, CTX, ARMS, pick("a"), "d2", RULES, 0.0)
    done = await store.settle(NS, "d1", Outcome(reward=0.75, learn=0.75), RULES, 1.0)
    assert done == PendingDecision("d1", CTX, "a", 0.0, 3600.0)
    assert await store.pending(NS, "d1") is None
    st = await store.load(NS, CTX, ARMS, RULES)
    assert st.clock == 1
    assert rec(st, "a") == {
        "n": 1.0,
        "total": 0.75,
        "total_sq": 0.5625,
        "stamp": 1,
        "pulls": 1,
        "reward_sum": 0.75,
        "failures": 0,
        "in_flight": 1,
    }
    assert rec(st, "b") == rec(st, "c") == empty_record()

    # reward (reporting) and learn (what the policy sees) are kept apart.
    await store.settle(NS, "d2", Outcome(reward=1.0, learn=0.25), RULES, 2.0)
    st = await store.load(NS, CTX, ARMS, RULES)
    assert st.clock == 2
    assert rec(st, "a") == {
        "n": 2.0,
        "total": 1.0,
        "total_sq": 0.625,
        "stamp": 2,
        "pulls": 2,
        "reward_sum": 1.75,
        "failures": 0,
        "in_flight": 0,
    }


async def test_settle_without_reward_only_releases(store: StateStore) -> None:
    await store.begin(NS, CTX, ARMS, pick("c"), "d1", RULES, 0.0)
    await store.settle(NS, "d1", NOTHING, RULES, 0.0)
    st = await store.load(NS, CTX, ARMS, RULES)
    assert st.clock == 0
    assert rec(st, "c") == empty_record()
    await store.begin(NS, CTX, ARMS, pick("c"), "d2", RULES, 0.0)
    await store.settle(NS, "d2", FAILURE, RULES, 0.0)
    st = await store.load(NS, CTX, ARMS, RULES)
    assert st.clock == 1
    assert (st.failures, st.pulls, st.in_flight, st.n) == ([0, 0, 1], [0] * 3, [0] * 3, [0, 0, 1])


async def test_observe_counts_a_failure_without_touching_pending(store: StateStore) -> None:
    await store.begin(NS, CTX, ARMS, pick("a"), "d1", RULES, 0.0)
    await store.observe(NS, CTX, ARMS, "a", FAILURE, RULES)
    await store.observe(NS, CTX, ARMS, "b", Outcome(None, None, failure=True), RULES)
    st = await store.load(NS, CTX, ARMS, RULES)
    assert st.failures == [1, 1, 0]
    assert st.pulls == [0, 0, 0]
    assert st.in_flight == [1, 0, 0]
    assert st.n == [1.0, 0.0, 0.0]  # failure_reward 0.0 is learned; None is not
    assert st.clock == 1
    assert await store.pending(NS, "d1") == PendingDecision("d1", CTX, "a", 0.0, 3600.0)
    # The decision is still settleable after the observation.
    await store.settle(NS, "d1", Outcome(1.0, 1.0), RULES, 0.0)
    st = await store.load(NS, CTX, ARMS, RULES)
    assert (st.pulls, st.failures, st.in_flight, st.clock) == ([1, 0, 0], [1, 1, 0], [0] * 3, 2)


async def test_contexts_are_listed_sorted_and_independent(store: StateStore) -> None:
    assert await store.contexts(NS) == []
    await store.observe(NS, "zeta", ARMS, "a", Outcome(1.0, 1.0), RULES)
    await store.begin(NS, "alpha", ARMS, pick("b"), "d1", RULES, 0.0)
    await store.observe(NS, "", ARMS, "c", Outcome(0.5, 0.5), RULES)
    await store.observe("other", "beta", ARMS, "c", Outcome(0.5, 0.5), RULES)
    assert await store.contexts(NS) == ["", "alpha", "zeta"]
    assert await store.contexts("other") == ["beta"]
    zeta = await store.load(NS, "zeta", ARMS, RULES)
    alpha = await store.load(NS, "alpha", ARMS, RULES)
    assert (zeta.pulls, zeta.in_flight, zeta.clock) == ([1, 0, 0], [0, 0, 0], 1)
    assert (alpha.pulls, alpha.in_flight, alpha.clock) == ([0, 0, 0], [0, 1, 0], 0)
    # Settling a decision updates the context it was begun in.
    await store.settle(NS, "d1", Outcome(0.25, 0.25), RULES, 0.0)
    alpha = await store.load(NS, "alpha", ARMS, RULES)
    assert (alpha.pulls, alpha.reward_sum, alpha.in_flight) == ([0, 1, 0], [0, 0.25, 0], [0] * 3)
    assert (await store.load(NS, "zeta", ARMS, RULES)).pulls == [1, 0, 0]


async def test_namespaces_are_independent(store: StateStore) -> None:
    await store.begin("one", CTX, ARMS, pick("a"), "same-id", RULES, 0.0)
    await store.begin("two", CTX, ARMS, pick("b"), "same-id", RULES, 0.0)
    await store.settle("one", "same-id", Outcome(1.0, 1.0), RULES, 0.0)
    assert await store.pending("one", "same-id") is None
    assert await store.pending("two", "same-id") == PendingDecision(
        "same-id", CTX, "b", 0.0, 3600.0
    )
    one = await store.load("one", CTX, ARMS, RULES)
    two = await store.load("two", CTX, ARMS, RULES)
    assert (one.pulls, one.in_flight) == ([1, 0, 0], [0, 0, 0])
    assert (two.pulls, two.in_flight) == ([0, 0, 0], [0, 1, 0])


async def test_arms_added_later_start_empty_and_unrequested_arms_are_kept(
    store: StateStore,
) -> None:
    await store.begin(NS, CTX, ("a", "b"), pick("a"), "d1", RULES, 0.0)
    await store.settle(NS, "d1", Outcome(0.5, 0.5), RULES, 0.0)
    await store.observe(NS, CTX, ("a", "b"), "b", FAILURE, RULES)
    a_before = rec(await store.load(NS, CTX, ("a", "b"), RULES), "a")

    # A wider arm set: the new arms start empty, the clock is the context's.
    wide = await store.load(NS, CTX, ("c", "a", "b", "d"), RULES)
    assert wide.arms == ("c", "a", "b", "d")
    assert wide.clock == 2
    assert rec(wide, "c") == rec(wide, "d") == empty_record()
    assert rec(wide, "a") == a_before
    assert wide.failures == [0, 0, 1, 0]

    # Work on a narrower, different arm set keeps the arms not requested.
    await store.begin(NS, CTX, ("c",), pick("c"), "d2", RULES, 0.0)
    await store.settle(NS, "d2", Outcome(1.0, 1.0), RULES, 0.0)
    narrow = await store.load(NS, CTX, ("c",), RULES)
    assert narrow.arms == ("c",)
    assert narrow.pulls == [1]
    assert narrow.clock == 3
    again = await store.load(NS, CTX, ("a", "b", "c"), RULES)
    assert rec(again, "a") == a_before
    assert (again.pulls, again.failures, again.in_flight) == ([1, 0, 1], [0, 1, 0], [0] * 3)


# --- 2. decay ---------------------------------------------------------------------------------


async def test_decay_is_a_global_clock(store: StateStore) -> None:
    rules = make_rules(decay=0.9)
    await store.observe(NS, CTX, ARMS, "b", Outcome(1.0, 1.0), rules)
    await store.observe(NS, CTX, ARMS, "a", Outcome(0.0, 0.0), rules)
    await store.observe(NS, CTX, ARMS, "a", Outcome(0.0, 0.0), rules)
    n, s, q = (await store.load(NS, CTX, ARMS, rules)).discounted(0.9)
    # b was observed two ticks ago (by any arm): discounted twice.
    assert n == pytest.approx([1.9, 0.81, 0.0], abs=1e-12)
    assert s == pytest.approx([0.0, 0.81, 0.0], abs=1e-12)
    assert q == pytest.approx([0.0, 0.81, 0.0], abs=1e-12)
    # Another context has its own clock.
    assert (await store.load(NS, "other", ARMS, rules)).clock == 0


async def test_decay_through_the_store_equals_bandit_state_apply(store: StateStore) -> None:
    decay = 0.9
    rules = make_rules(decay=decay, expired=Outcome(0.0, 0.0), ttl=10.0)
    hand = BanditState(ARMS)
    rng = random.Random(3)
    now = 0.0
    outcomes = [
        Outcome(1.0, 1.0),
        Outcome(0.5, 0.5),
        Outcome(1.0, 0.25),
        NOTHING,
        FAILURE,
        Outcome(None, None, failure=True),
    ]
    open_ids: list[tuple[str, str]] = []
    for step in range(200):
        kind = rng.random()
        arm = rng.choice(ARMS)
        if kind < 0.45 or not open_ids:
            did = f"d{step}"
            assert await store.begin(NS, CTX, ARMS, pick(arm), did, rules, now) == arm
            hand.in_flight[hand.index(arm)] += 1
            open_ids.append((did, arm))
        elif kind < 0.85:
            did, arm = open_ids.pop(rng.randrange(len(open_ids)))
            outcome = rng.choice(outcomes)
            await store.settle(NS, did, outcome, rules, now)
            hand.in_flight[hand.index(arm)] -= 1
            hand.apply(hand.index(arm), outcome, decay)
        else:
            outcome = rng.choice(outcomes[-2:])
            await store.observe(NS, CTX, ARMS, arm, outcome, rules)
            hand.apply(hand.index(arm), outcome, decay)
        now += 0.01
    # Release the rest, then let one more decision expire (its expired outcome is learned).
    for did, arm in open_ids:
        await store.settle(NS, did, NOTHING, rules, now)
        hand.in_flight[hand.index(arm)] -= 1
    await store.begin(NS, CTX, ARMS, pick("c"), "last", rules, now)
    assert await store.expire(NS, rules, now + 100.0) == 1
    hand.apply(hand.index("c"), rules.expired, decay)

    st = await store.load(NS, CTX, ARMS, rules)
    assert st.clock == hand.clock > 40
    for i in range(len(ARMS)):
        assert st.arm_record(i) == hand.arm_record(i)
    assert st.discounted(decay) == hand.discounted(decay)
    assert st.statistics(decay) == hand.statistics(decay)


# --- 3. errors change nothing -------------------------------------------------------------------


async def _prepare(store: StateStore) -> None:
    """Some state: d-pending is pending, d-settled settled, observations on two arms."""
    await store.begin(NS, CTX, ARMS, pick("a"), "d-settled", RULES, 0.0)
    await store.settle(NS, "d-settled", Outcome(0.5, 0.5), RULES, 1.0)
    await store.begin(NS, CTX, ARMS, pick("b"), "d-pending", RULES, 2.0)
    await store.observe(NS, CTX, ARMS, "c", FAILURE, RULES)


IDS = ("d-pending", "d-settled", "never")


async def test_settle_of_an_unknown_id_changes_nothing(store: StateStore) -> None:
    await _prepare(store)
    before = await snapshot(store, IDS)
    with pytest.raises(UnknownDecisionError) as info:
        await store.settle(NS, "never", Outcome(1.0, 1.0), RULES, 3.0)
    message = str(info.value)
    assert "'never'" in message
    assert "never issued" in message
    assert isinstance(info.value, ValueError)
    assert await snapshot(store, IDS) == before
    # Unknown in this namespace even though the id exists in another one.
    with pytest.raises(UnknownDecisionError, match="never issued"):
        await store.settle("other", "d-pending", Outcome(1.0, 1.0), RULES, 3.0)
    assert await snapshot(store, IDS) == before


async def test_settle_twice_changes_nothing(store: StateStore) -> None:
    await _prepare(store)
    before = await snapshot(store, IDS)
    with pytest.raises(UnknownDecisionError) as info:
        await store.settle(NS, "d-settled", Outcome(1.0, 1.0), RULES, 3.0)
    assert "'d-settled'" in str(info.value)
    assert "already settled" in str(info.value)
    assert await snapshot(store, IDS) == before


@pytest.mark.parametrize("decision_id", ["d-pending", "d-settled"])
async def test_begin_with_a_used_id_changes_nothing(store: StateStore, decision_id: str) -> None:
    await _prepare(store)
    before = await snapshot(store, IDS)
    with pytest.raises(DuplicateDecisionError) as info:
        await store.begin(NS, CTX, ARMS, pick("c"), decision_id, RULES, 3.0)
    assert repr(decision_id) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert await snapshot(store, IDS) == before
    # In another context of the same namespace too: ids are per namespace.
    with pytest.raises(DuplicateDecisionError):
        await store.begin(NS, "elsewhere", ARMS, pick("c"), decision_id, RULES, 3.0)
    assert await snapshot(store, IDS) == before


async def test_begin_with_an_expired_id_is_a_duplicate(store: StateStore) -> None:
    rules = make_rules(ttl=1.0)
    await store.begin(NS, CTX, ARMS, pick("a"), "old", rules, 0.0)
    assert await store.expire(NS, rules, 5.0) == 1
    before = await snapshot(store, ("old",))
    with pytest.raises(DuplicateDecisionError):
        await store.begin(NS, CTX, ARMS, pick("a"), "old", rules, 6.0)
    assert await snapshot(store, ("old",)) == before


@pytest.mark.parametrize("context", [CTX, "fresh"])
async def test_a_failing_chooser_changes_nothing(store: StateStore, context: str) -> None:
    await _prepare(store)
    before = await snapshot(store, (*IDS, "d-new"))

    def refuse(state: BanditState) -> str:
        raise UnknownArmError("every arm is excluded")

    with pytest.raises(UnknownArmError, match="every arm is excluded"):
        await store.begin(NS, context, ARMS, refuse, "d-new", RULES, 3.0)
    assert await snapshot(store, (*IDS, "d-new")) == before
    with pytest.raises(UnknownArmError, match="'z'"):
        await store.begin(NS, context, ARMS, pick("z"), "d-new", RULES, 3.0)
    assert await snapshot(store, (*IDS, "d-new")) == before
    # The id was not consumed.
    assert await store.begin(NS, context, ARMS, pick("c"), "d-new", RULES, 3.0) == "c"


@pytest.mark.parametrize("context", [CTX, "fresh"])
async def test_observe_of_an_unknown_arm_changes_nothing(store: StateStore, context: str) -> None:
    await _prepare(store)
    before = await snapshot(store, IDS)
    with pytest.raises(UnknownArmError, match="'z'"):
        await store.observe(NS, context, ARMS, "z", FAILURE, RULES)
    assert await snapshot(store, IDS) == before


# --- 4. the pending registry ----------------------------------------------------------------

EXPIRED = {"nothing": NOTHING, "zero": Outcome(0.0, 0.0)}


@pytest.mark.parametrize("expired", list(EXPIRED))
@pytest.mark.parametrize("trigger", ["begin", "settle", "expire"])
async def test_overdue_decisions_expire_on_the_next_call(
    store: StateStore, expired: str, trigger: str
) -> None:
    rules = make_rules(expired=EXPIRED[expired], ttl=10.0)
    await store.begin(NS, CTX, ARMS, pick("a"), "d1", rules, 0.0)
    await store.begin(NS, CTX, ARMS, pick("b"), "d2", rules, 5.0)
    # Not yet overdue: nothing expires.
    assert await store.expire(NS, rules, 9.5) == 0
    assert await store.pending(NS, "d1") is not None
    assert (await store.load(NS, CTX, ARMS, rules)).in_flight == [1, 1, 0]

    now = 12.0  # d1 is overdue, d2 is not
    if trigger == "begin":
        await store.begin(NS, CTX, ARMS, pick("c"), "d3", rules, now)
    elif trigger == "settle":
        await store.settle(NS, "d2", NOTHING, rules, now)
    else:
        assert await store.expire(NS, rules, now) == 1
    assert await store.pending(NS, "d1") is None
    st = await store.load(NS, CTX, ARMS, rules)
    assert st.in_flight == {"begin": [0, 1, 1], "settle": [0, 0, 0], "expire": [0, 1, 0]}[trigger]
    if expired == "nothing":
        assert (st.pulls, st.reward_sum, st.n, st.clock) == ([0] * 3, [0.0] * 3, [0.0] * 3, 0)
    else:  # the expired reward counts as a pull of 0.0
        assert (st.pulls, st.reward_sum, st.n, st.clock) == ([1, 0, 0], [0.0] * 3, [1, 0, 0], 1)
    if trigger != "settle":
        assert await store.pending(NS, "d2") is not None

    with pytest.raises(UnknownDecisionError) as info:
        await store.settle(NS, "d1", Outcome(1.0, 1.0), rules, now)
    assert "'d1'" in str(info.value)
    assert "expired" in str(info.value)
    assert (await store.load(NS, CTX, ARMS, rules)).pulls == st.pulls


@pytest.mark.parametrize("expired", list(EXPIRED))
async def test_settling_an_overdue_decision_expires_it(store: StateStore, expired: str) -> None:
    rules = make_rules(expired=EXPIRED[expired], ttl=10.0)
    await store.begin(NS, CTX, ARMS, pick("b"), "late", rules, 0.0)
    with pytest.raises(UnknownDecisionError, match="expired"):
        await store.settle(NS, "late", Outcome(1.0, 1.0), rules, 30.0)
    # The failed settle still expired it: released, expired outcome applied, not pending.
    assert await store.pending(NS, "late") is None
    st = await store.load(NS, CTX, ARMS, rules)
    assert st.in_flight == [0, 0, 0]
    assert st.pulls == ([0, 0, 0] if expired == "nothing" else [0, 1, 0])
    with pytest.raises(UnknownDecisionError, match="expired"):
        await store.settle(NS, "late", Outcome(1.0, 1.0), rules, 31.0)
    assert await store.expire(NS, rules, 40.0) == 0
    assert (await store.load(NS, CTX, ARMS, rules)).arm_record(1) == st.arm_record(1)


async def test_the_registry_is_bounded_and_evicts_the_oldest(store: StateStore) -> None:
    cap, extra = 5, 3
    rules = make_rules(expired=Outcome(0.0, 0.0), max_pending=cap)
    ids = [f"d{i}" for i in range(cap + extra)]
    for i, did in enumerate(ids):
        await store.begin(NS, CTX, ARMS, pick(ARMS[i % 2]), did, rules, float(i))
        alive = [d for d in ids[: i + 1] if await store.pending(NS, d) is not None]
        assert len(alive) == min(i + 1, cap)
    assert [await store.pending(NS, d) is not None for d in ids] == [False] * extra + [True] * cap
    st = await store.load(NS, CTX, ARMS, rules)
    # d0, d2 on a and d1 on b were evicted: released and counted as expired (reward 0.0).
    assert sum(st.in_flight) == cap
    assert st.in_flight == [2, 3, 0]
    assert st.pulls == [2, 1, 0]
    assert st.clock == extra
    with pytest.raises(UnknownDecisionError, match="expired"):
        await store.settle(NS, "d0", Outcome(1.0, 1.0), rules, 10.0)
    # The survivors settle normally.
    for did in ids[extra:]:
        await store.settle(NS, did, Outcome(1.0, 1.0), rules, 10.0)
    st = await store.load(NS, CTX, ARMS, rules)
    assert (st.in_flight, st.pulls, st.reward_sum) == ([0] * 3, [4, 4, 0], [2.0, 3.0, 0.0])


# --- 5. concurrency -----------------------------------------------------------------------------


@pytest.mark.parametrize(("anyio_backend", "tasks"), [("asyncio", 1000), ("trio", 200)])
async def test_concurrent_tasks_lose_no_update(store: StateStore, tasks: int) -> None:
    engine = Engine(ARMS, seed=1)
    rng = random.Random(42)
    rewards = [rng.random() for _ in range(tasks)]
    failing = {i: rng.choice(ARMS) for i in range(tasks) if i % 7 == 3}
    got: dict[str, list[float]] = defaultdict(list)
    peak = [0]

    def choose(state: BanditState) -> str:
        peak[0] = max(peak[0], sum(state.in_flight))
        return engine.select(state).arm

    async def one(i: int) -> None:
        did = f"d{i}"
        arm = await store.begin(NS, CTX, ARMS, choose, did, RULES, 0.0)
        await anyio.lowlevel.checkpoint()
        if i in failing:
            await store.observe(NS, CTX, ARMS, failing[i], FAILURE, RULES)
        done = await store.settle(NS, did, Outcome(rewards[i], rewards[i]), RULES, 1.0)
        assert done.arm == arm
        got[arm].append(rewards[i])

    async with anyio.create_task_group() as tg:
        for i in range(tasks):
            tg.start_soon(one, i)

    assert peak[0] > 1, "the tasks never overlapped"
    st = await store.load(NS, CTX, ARMS, RULES)
    assert st.in_flight == [0, 0, 0]
    assert st.pulls == [len(got[a]) for a in ARMS]
    assert sum(st.pulls) == tasks
    assert st.failures == [sum(1 for a in failing.values() if a == arm) for arm in ARMS]
    for i, arm in enumerate(ARMS):
        assert math.isclose(st.reward_sum[i], math.fsum(got[arm]), rel_tol=0, abs_tol=1e-9)
        assert math.isclose(st.total[i], math.fsum(got[arm]), rel_tol=0, abs_tol=1e-9)
        assert st.n[i] == st.pulls[i] + st.failures[i]
    assert st.clock == tasks + len(failing)
    assert len(got) > 1
    assert [d for d in (f"d{i}" for i in range(tasks)) if await store.pending(NS, d)] == []


# --- persistence (stores shared between processes) ---------------------------------------------


async def test_state_survives_reopening(shared_spec: StoreSpec) -> None:
    first = shared_spec.open()
    try:
        await first.begin(NS, CTX, ARMS, pick("a"), "d1", RULES, 0.0)
        await first.settle(NS, "d1", Outcome(0.5, 0.5), RULES, 0.0)
        await first.begin(NS, CTX, ARMS, pick("b"), "d2", RULES, 0.0)
        before = await snapshot(first, ("d1", "d2"))
    finally:
        await first.aclose()
    second = shared_spec.open()
    try:
        assert await snapshot(second, ("d1", "d2")) == before
        await second.settle(NS, "d2", Outcome(1.0, 1.0), RULES, 0.0)
        st = await second.load(NS, CTX, ARMS, RULES)
        assert (st.pulls, st.in_flight, st.clock) == ([1, 1, 0], [0] * 3, 2)
    finally:
        await second.aclose()


async def test_two_handles_share_state(shared_spec: StoreSpec) -> None:
    one, two = shared_spec.open(), shared_spec.open()
    try:
        await one.begin(NS, CTX, ARMS, pick("c"), "d1", RULES, 0.0)
        assert await two.pending(NS, "d1") == PendingDecision("d1", CTX, "c", 0.0, 3600.0)
        await two.settle(NS, "d1", Outcome(0.25, 0.25), RULES, 0.0)
        with pytest.raises(UnknownDecisionError, match="already settled"):
            await one.settle(NS, "d1", Outcome(0.25, 0.25), RULES, 0.0)
        assert (await one.load(NS, CTX, ARMS, RULES)).pulls == [0, 0, 1]
    finally:
        await one.aclose()
        await two.aclose()


# --- reroute (fallback to another arm) ------------------------------------------------------


@pytest.mark.parametrize("decay", [None, 0.9])
async def test_reroute_moves_the_call_and_counts_the_failure(
    store: StateStore, decay: float | None
) -> None:
    rules = make_rules(decay=decay)
    await store.begin(NS, CTX, ARMS, pick("a"), "d", rules, 0.0)
    await store.observe(NS, CTX, ARMS, "b", Outcome(1.0, 1.0), rules)
    expected = await store.load(NS, CTX, ARMS, rules)
    seen: list[BanditState] = []

    def choose(state: BanditState) -> str:
        seen.append(state)
        return "c"

    assert await store.reroute(NS, "d", ARMS, choose, FAILURE, rules, 1.0) == "c"
    # The chooser saw the old arm already released and its failure applied.
    expected.in_flight[0] -= 1
    expected.apply(0, FAILURE, decay)
    assert [seen[0].arm_record(i) for i in range(3)] == [expected.arm_record(i) for i in range(3)]
    assert seen[0].clock == expected.clock
    after = await store.load(NS, CTX, ARMS, rules)
    assert rec(after, "a")["failures"] == 1
    assert rec(after, "a")["in_flight"] == 0
    assert rec(after, "c")["in_flight"] == 1
    pending = await store.pending(NS, "d")
    assert pending is not None
    assert (pending.arm, pending.context, pending.started_at) == ("c", CTX, 0.0)
    # The reward now reaches the arm that answered.
    settled = await store.settle(NS, "d", Outcome(1.0, 1.0), rules, 2.0)
    assert settled.arm == "c"
    final = await store.load(NS, CTX, ARMS, rules)
    assert rec(final, "c")["pulls"] == 1
    assert rec(final, "a")["pulls"] == 0
    assert sum(final.in_flight) == 0


async def test_reroute_of_an_unknown_or_settled_id_changes_nothing(store: StateStore) -> None:
    await _prepare(store)
    before = await snapshot(store, IDS)
    with pytest.raises(UnknownDecisionError, match="never issued"):
        await store.reroute(NS, "never", ARMS, pick("c"), FAILURE, RULES, 3.0)
    with pytest.raises(UnknownDecisionError, match="already settled"):
        await store.reroute(NS, "d-settled", ARMS, pick("c"), FAILURE, RULES, 3.0)
    assert await snapshot(store, IDS) == before


async def test_reroute_with_a_failing_chooser_changes_nothing(store: StateStore) -> None:
    await _prepare(store)
    before = await snapshot(store, IDS)

    def refuse(state: BanditState) -> str:
        raise UnknownArmError("no arm left")

    with pytest.raises(UnknownArmError, match="no arm left"):
        await store.reroute(NS, "d-pending", ARMS, refuse, FAILURE, RULES, 3.0)
    assert await snapshot(store, IDS) == before
