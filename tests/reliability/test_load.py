"""Load: thousands of concurrent ``ainvoke`` calls over fake arms with random 0-5 ms latency
and 5% failures, on every store.

Afterwards every call has completed (an answer, or one ``AllArmsFailedError``), every call an
arm saw is a completed pull or a failure in the statistics, every score the evaluator gave is
in the store (data lost: 0), nothing is left in flight, and the pending-decision registry
stayed within its bound. ``make test`` runs 2,000 calls per store; ``make soak`` (marker
``slow``) runs 10,000.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from bandit_router import AllArmsFailedError, BanditRouterRunnable, UnknownDecisionError
from bandit_router.stores import StateStore
from bandit_router.telemetry import DEFAULT_MAX_LINKS
from bandit_router.testing import FakeArm, FakeArmError, is_right

from ._support import Stores, finished_bound, link_cache_size, loop_errors, registry_sizes

pytestmark = pytest.mark.anyio

FAST = 1_500
SOAK = 10_000


def load_arms(seed: int) -> dict[str, FakeArm]:
    """Three arms, each failing 5% of its calls and answering in a random 0-5 ms.

    One arm's errors are transient (retried on the same arm), the others' are not (the call
    falls back to the next-best arm at once).
    """
    common: dict[str, Any] = {"failure_rate": 0.05, "jitter": 0.005}
    return {
        "strong": FakeArm(quality=0.8, seed=seed, model="strong", **common),
        "flaky": FakeArm(
            quality=0.6, seed=seed + 1, model="flaky", error=ConnectionError, **common
        ),
        "weak": FakeArm(quality=0.4, seed=seed + 2, model="weak", error=FakeArmError, **common),
    }


@dataclass
class Load:
    """What one load run did."""

    calls: int
    answered: int
    all_failed: int
    seconds: float
    arm_calls: dict[str, int]
    pulls: dict[str, int]
    failures: dict[str, int]
    in_flight: dict[str, int]
    reward_sums: dict[str, float]
    scores: list[float]
    registry: dict[str, int]


async def run_load(store: StateStore, calls: int, seed: int) -> Load:
    arms = load_arms(seed)
    scores: list[float] = []

    async def judge(outputs: Any) -> float:
        score = 1.0 if is_right(outputs) else 0.0
        scores.append(score)
        return score

    name = f"load-{uuid.uuid4().hex[:8]}"
    router = BanditRouterRunnable(
        arms=arms,
        reward=judge,
        store=store,
        name=name,
        seed=seed,
        retry_initial_wait=0.0,
        retry_max_wait=0.002,
    )
    t0 = time.perf_counter()
    results = await asyncio.gather(
        *(router.ainvoke(f"question {i}") for i in range(calls)), return_exceptions=True
    )
    seconds = time.perf_counter() - t0
    await router.aclose()  # answers are scored after they are returned
    for r in results:
        # Every call completed: a routed answer, or one error naming every arm.
        if isinstance(r, BaseException):
            assert isinstance(r, AllArmsFailedError), repr(r)
            assert set(r.errors) == set(arms)
        else:
            assert isinstance(r, AIMessage), repr(r)
            assert r.response_metadata["bandit_router"]["arm"] in arms
    stats = await router.astatistics()
    return Load(
        calls=calls,
        answered=sum(not isinstance(r, BaseException) for r in results),
        all_failed=sum(isinstance(r, BaseException) for r in results),
        seconds=seconds,
        arm_calls={a: arm.calls for a, arm in arms.items()},
        pulls={a: s.pulls for a, s in stats.items()},
        failures={a: s.failures for a, s in stats.items()},
        in_flight={a: s.in_flight for a, s in stats.items()},
        reward_sums={a: s.reward_sum for a, s in stats.items()},
        scores=scores,
        registry=await registry_sizes(store, name),
    )


def check_load(load: Load, store: StateStore, label: str) -> None:
    # Every call an arm saw is either a completed pull or a failure: nothing unaccounted.
    for arm, seen in load.arm_calls.items():
        assert seen == load.pulls[arm] + load.failures[arm], (arm, load)
    assert load.in_flight == dict.fromkeys(load.arm_calls, 0)
    # Data lost: every answer was scored once, and every score is in the store.
    lost = len(load.scores) - sum(load.pulls.values())
    assert lost == 0, load
    assert sum(load.pulls.values()) == load.answered
    assert sum(load.reward_sums.values()) == sum(load.scores)
    # The pending registry is empty; the finished one holds at most its bound.
    assert load.registry["pending"] == 0
    assert load.registry["finished"] <= finished_bound(store, 100_000)
    # 5% failures on three arms with fallback: a call fails only if all three fail.
    assert load.all_failed <= load.calls // 100, load
    failures = sum(load.failures.values())
    print(
        f"\nLOAD {label}: {load.calls} concurrent calls, {load.answered} answered, "
        f"{load.all_failed} all-arms-failed, {failures} failed attempts "
        f"({failures / sum(load.arm_calls.values()):.1%} of {sum(load.arm_calls.values())} "
        f"arm calls), data lost {lost}, in flight {sum(load.in_flight.values())}, "
        f"{load.seconds:.1f} s"
    )


async def test_concurrent_calls_all_complete_and_every_outcome_is_counted(
    stores: Stores,
) -> None:
    store = stores.new()
    with loop_errors() as errors:
        load = await run_load(store, FAST, seed=11)
    check_load(load, store, f"{stores.kind} x{FAST}")
    assert errors == []


@pytest.mark.slow
async def test_ten_thousand_concurrent_calls(stores: Stores) -> None:
    store = stores.new()
    with loop_errors() as errors:
        load = await run_load(store, SOAK, seed=23)
    check_load(load, store, f"{stores.kind} x{SOAK}")
    assert errors == []


async def registry_bound(stores: Stores, calls: int, max_pending: int) -> None:
    """Rewards that never arrive: the registry keeps at most ``max_pending`` decisions."""
    store = stores.new()
    name = f"bound-{uuid.uuid4().hex[:8]}"
    arms = {
        "a": FakeArm(jitter=0.005, seed=1, model="a"),
        "b": FakeArm(jitter=0.005, seed=2, model="b"),
    }
    router = BanditRouterRunnable(arms=arms, store=store, name=name, max_pending=max_pending)
    peak = {"pending": 0, "finished": 0}
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            sizes = await registry_sizes(store, name)
            for k in peak:
                peak[k] = max(peak[k], sizes[k])
            await asyncio.sleep(0.02)

    run_ids = [uuid.uuid4() for _ in range(calls)]
    watcher = asyncio.ensure_future(watch())
    try:
        out = await asyncio.gather(*(router.ainvoke("q", {"run_id": r}) for r in run_ids))
    finally:
        done.set()
        await watcher
    assert all(isinstance(m, AIMessage) for m in out)
    sizes = await registry_sizes(store, name)
    for k in peak:
        peak[k] = max(peak[k], sizes[k])
    assert sizes["pending"] == max_pending
    assert peak["pending"] <= max_pending
    assert peak["finished"] <= finished_bound(store, max_pending)
    stats = await router.astatistics()
    # Each waiting decision holds one slot; the evicted ones gave theirs back.
    assert sum(s.in_flight for s in stats.values()) == max_pending
    assert link_cache_size(router) <= DEFAULT_MAX_LINKS
    accepted = refused = 0
    for r in run_ids:
        try:
            await router.arecord_feedback(r, 1.0)
            accepted += 1
        except UnknownDecisionError:
            refused += 1
    assert (accepted, refused) == (max_pending, calls - max_pending)
    stats = await router.astatistics()
    assert sum(s.in_flight for s in stats.values()) == 0
    assert sum(s.pulls for s in stats.values()) == max_pending
    sizes = await registry_sizes(store, name)
    assert sizes["pending"] == 0
    assert sizes["finished"] <= finished_bound(store, max_pending)
    print(
        f"\nREGISTRY {stores.kind}: {calls} calls, max_pending {max_pending}: peak pending "
        f"{peak['pending']}, peak finished {peak['finished']}"
    )


async def test_the_pending_registry_stays_within_its_bound(stores: Stores) -> None:
    await registry_bound(stores, calls=1_000, max_pending=100)


@pytest.mark.slow
async def test_the_pending_registry_stays_within_its_bound_at_ten_thousand(
    stores: Stores,
) -> None:
    await registry_bound(stores, calls=SOAK, max_pending=1_000)
