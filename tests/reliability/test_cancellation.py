"""Cancellation: a fifth of the callers are cancelled at random points, on every store.

A call cancelled before its answer was scored counts nothing; a call cancelled after its
reward had reached the store keeps it (the answer was given and scored: the reward is true).
Either way no in-flight slot or pending decision is left behind, and asyncio never reports
"Task exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import statistics
import time
import uuid
from typing import Any

import anyio
import pytest
from langchain_core.messages import AIMessage

from bandit_router import AllArmsFailedError, Bandit, BanditRouterRunnable
from bandit_router.testing import FakeArm, FakeArmError, is_right

from ._support import FaultyStore, Stores, loop_errors, registry_sizes, tick

pytestmark = pytest.mark.anyio

CALLS = 1_500


def arms(seed: int) -> dict[str, FakeArm]:
    common: dict[str, Any] = {"failure_rate": 0.05, "jitter": 0.005, "chunks": 4}
    return {
        "a": FakeArm(quality=0.8, seed=seed, model="a", error=ConnectionError, **common),
        "b": FakeArm(quality=0.5, seed=seed + 1, model="b", error=FakeArmError, **common),
    }


async def test_cancelled_callers_count_nothing_and_leak_nothing(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    await cancel_a_fifth(stores, caplog, CALLS)


@pytest.mark.slow
async def test_ten_thousand_callers_a_fifth_cancelled(
    stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    await cancel_a_fifth(stores, caplog, 10_000)


async def cancel_a_fifth(stores: Stores, caplog: pytest.LogCaptureFixture, calls: int) -> None:
    """``calls`` calls, 50 at a time; a random fifth of them cancelled at a random point."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    rng = random.Random(5)
    store = FaultyStore(stores.new())  # no faults: only its ledger of acknowledged writes
    name = f"cancel-{uuid.uuid4().hex[:8]}"

    async def judge(outputs: Any) -> float:
        await asyncio.sleep(rng.random() * 0.003)  # a cancellation may land in the evaluator
        return 1.0 if is_right(outputs) else 0.0

    router = BanditRouterRunnable(
        arms=arms(3),
        reward=judge,
        store=store,
        name=name,
        retry_initial_wait=0.0,
        retry_max_wait=0.002,
    )
    run_ids = [str(uuid.uuid4()) for _ in range(calls)]
    streams = set(rng.sample(run_ids, calls // 4))
    stop_early = set(rng.sample(sorted(streams), len(streams) // 4))
    stopped: set[str] = set()

    # 50 calls at a time, and each cancellation timed from its call's start over most of a
    # typical call's duration (learned as the calls complete: machines differ), so that it
    # lands anywhere in the call's life: the store's begin, the arm, a retry, the evaluator,
    # the settle; or, for a short call, after its end (then there is nothing to cancel).
    gate = asyncio.Semaphore(50)
    started = {rid: asyncio.Event() for rid in run_ids}
    durations: list[float] = []

    async def call(rid: str) -> Any:
        config: Any = {"run_id": uuid.UUID(rid)}
        async with gate:
            started[rid].set()
            t0 = time.perf_counter()
            if rid not in streams:
                out = await router.ainvoke("question", config)
            else:
                out = []
                async for chunk in router.astream("question", config):
                    out.append(chunk)
                    if rid in stop_early and len(out) == 2:
                        stopped.add(rid)  # the consumer stops reading: counts as cancelled
                        break
            durations.append(time.perf_counter() - t0)
            return out

    cancel_requested: dict[str, int] = {}
    with loop_errors() as loop_reports:
        tasks = {rid: asyncio.ensure_future(call(rid)) for rid in run_ids}
        victims = rng.sample(run_ids, calls // 5)

        async def cancel_later(rid: str) -> None:
            await started[rid].wait()
            typical = statistics.median(durations[-50:]) if durations else 0.01
            await asyncio.sleep(rng.random() * 0.8 * typical)
            if tasks[rid].cancel():
                cancel_requested[rid] = tick()

        await asyncio.gather(*(cancel_later(rid) for rid in victims))
        results = dict(
            zip(tasks, await asyncio.gather(*tasks.values(), return_exceptions=True), strict=True)
        )
        await router.aclose()  # the answers returned are scored after them: wait for it

    cancelled = {rid for rid, r in results.items() if isinstance(r, asyncio.CancelledError)}
    completed = {rid for rid, r in results.items() if not isinstance(r, BaseException)}
    failed = {rid for rid, r in results.items() if isinstance(r, AllArmsFailedError)}
    assert cancelled | completed | failed == set(run_ids), {
        type(r).__name__ for r in results.values()
    }
    assert cancelled <= set(cancel_requested)
    assert len(cancelled) >= calls // 20  # the test cancelled real work, not finished calls

    # No reward for a cancelled call, unless it had been handed to the store before the
    # cancellation was requested (then the call had finished its work: the reward is true).
    began = store.reward_began
    late = {rid for rid in cancelled if rid in began}
    for rid in late:
        assert began[rid] < cancel_requested[rid], rid
    assert not stopped & began.keys()  # a consumer that stopped early scored nothing
    for rid in completed - stopped:
        out = results[rid]
        assert not isinstance(out, BaseException)
        assert isinstance(out, AIMessage) or all(isinstance(c, AIMessage) for c in out)
        assert rid in began
    stats = await router.astatistics()
    # Every acknowledged reward is counted; a settle whose caller was cancelled while it ran
    # may have been applied too (SQLite's thread, Redis's script finish anyway).
    for arm, s in stats.items():
        assert store.rewards[arm] <= s.pulls <= store.attempted[arm], (arm, s, store.attempted)
    counted_late = sum(s.pulls for s in stats.values()) - len(completed - stopped)
    assert 0 <= counted_late <= len(late)
    # Nothing leaked: no slot in flight, no decision left pending.
    assert {a: s.in_flight for a, s in stats.items()} == {"a": 0, "b": 0}
    assert (await registry_sizes(store, name))["pending"] == 0
    assert loop_reports == []
    assert "never retrieved" not in caplog.text
    assert [r for r in caplog.records if r.name == "asyncio"] == []
    print(
        f"\nCANCEL {stores.kind}: {calls} calls ({len(streams)} streams), "
        f"{len(cancel_requested)} cancellations delivered, {len(cancelled)} calls cancelled "
        f"({len(late)} while or after their reward was written, {counted_late} of them counted), "
        f"{len(stopped)} streams stopped "
        f"early, {len(completed - stopped)} completed; in flight 0, pending 0"
    )


async def test_deadlines_cancel_calls_through_anyio(stores: Stores) -> None:
    """The same through anyio cancel scopes (how Starlette and anyio task groups cancel)."""
    rng = random.Random(8)
    store = FaultyStore(stores.new())
    name = f"deadline-{uuid.uuid4().hex[:8]}"
    router = BanditRouterRunnable(
        arms=arms(4), reward=is_right, store=store, name=name, retry_initial_wait=0.0
    )
    outcomes: list[str] = []

    async def call(deadline: float) -> None:
        with anyio.move_on_after(deadline) as scope:
            await router.ainvoke("question")
        outcomes.append("cancelled" if scope.cancelled_caught else "done")

    with loop_errors() as loop_reports:
        await asyncio.gather(*(call(rng.random() * 0.02) for _ in range(CALLS // 2)))
    stats = await router.astatistics()
    assert outcomes.count("cancelled") >= 10
    assert sum(s.pulls for s in stats.values()) == sum(store.rewards.values())
    assert sum(s.in_flight for s in stats.values()) == 0
    assert (await registry_sizes(store, name))["pending"] == 0
    assert loop_reports == []


async def test_a_cancelled_begin_leaves_no_decision_behind(stores: Stores) -> None:
    """Regression: SQLite's worker thread and Redis's script call outlived a cancelled
    caller, and the decision they recorded kept its in-flight slot until pending_ttl."""
    store = stores.new()
    bandit = Bandit(["a", "b"], name=f"begin-{uuid.uuid4().hex[:8]}", store=store)
    await bandit.statistics()  # connect first, so that cancellations hit the begin itself
    rng = random.Random(0)
    ids = [f"d{i}" for i in range(300)]
    for did in ids:
        task = asyncio.ensure_future(bandit.choose(decision_id=did))
        for _ in range(rng.randrange(30)):  # cancel at any point of the store's round trip
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bandit.release((await task).decision_id)  # it finished before the cancel
    stats = await bandit.statistics()
    assert {a: s.in_flight for a, s in stats.items()} == {"a": 0, "b": 0}
    assert [did for did in ids if await store.pending(bandit.name, did)] == []
