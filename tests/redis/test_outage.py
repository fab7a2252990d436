"""Outages: Redis stops mid-run and comes back; the router never raises, nothing is lost or doubled.

Each test starts its own redis-server on a free port (append-only file, fsync on every write,
as a production Redis with persistence), so the shared Redis is never touched.
"""

from __future__ import annotations

import logging
import random
import signal
from collections import defaultdict

import anyio
import anyio.to_thread
import pytest
from bandit_router_redis import RedisStore
from bandit_router_redis.testing import RedisServer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bandit_router import Bandit, BanditRouterRunnable, StoreError, UnknownDecisionError
from bandit_router.core.routing import DEGRADED_STORE
from bandit_router.stores import Outcome, Rules
from bandit_router.testing import FakeArm, is_right

pytestmark = pytest.mark.anyio

ARMS = ("a", "b", "c")


def fast_store(server: RedisServer, **kwargs: object) -> RedisStore:
    """A store that notices an outage quickly and probes often (a test needs no patience)."""
    return RedisStore(
        server.url,
        prefix="outage",
        retry_interval=0.05,
        socket_timeout=2.0,
        connect_timeout=0.5,
        **kwargs,  # type: ignore[arg-type]
    )


async def recovered(store: RedisStore, timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while store.degraded:
            await anyio.sleep(0.02)


@pytest.mark.parametrize(
    ("sig", "total"),
    [
        pytest.param(signal.SIGTERM, 3000, id="SIGTERM"),
        pytest.param(signal.SIGKILL, 3000, id="SIGKILL"),
        pytest.param(signal.SIGKILL, 30000, id="SIGKILL-long", marks=pytest.mark.slow),
    ],
)
async def test_a_redis_outage_loses_nothing_and_doubles_nothing(
    server: RedisServer, caplog: pytest.LogCaptureFixture, sig: int, total: int
) -> None:
    caplog.set_level(logging.WARNING, logger="bandit_router_redis")
    store = fast_store(server, buffer_size=2 * total)  # room for every update of the outage
    try:
        bandit = Bandit(ARMS, name="router", store=store, decay=0.99, seed=1)
        rng = random.Random(5)
        rewards: dict[str, list[float]] = defaultdict(list)
        started = 0
        finished = 0
        degraded_seen = False
        # Decisions begun before the outage and rewarded during it, begun during it and
        # rewarded after it: they cross the outage's edges.
        crossing: list[tuple[str, str]] = []

        async def worker() -> None:
            nonlocal started, finished, degraded_seen
            while started < total:
                started += 1
                d = await bandit.choose()
                await anyio.sleep(0)
                r = rng.randrange(1025) / 1024  # sums of these are exact
                if rng.random() < 0.02:
                    crossing.append((d.decision_id, d.arm))
                else:
                    await bandit.reward(d.decision_id, r)
                    rewards[d.arm].append(r)
                degraded_seen |= store.degraded
                finished += 1

        async def settle_crossing() -> None:
            while crossing:
                did, arm = crossing.pop(0)
                await bandit.reward(did, 0.5)
                rewards[arm].append(0.5)

        async def chaos() -> None:
            while finished < total // 3:
                await anyio.sleep(0.001)
            await anyio.to_thread.run_sync(server.stop, sig)
            await settle_crossing()
            while finished < 2 * total // 3:
                await anyio.sleep(0.001)
            await anyio.to_thread.run_sync(server.start)
            await settle_crossing()

        async with anyio.create_task_group() as tg:
            tg.start_soon(chaos)
            for _ in range(8):
                tg.start_soon(worker)
        await settle_crossing()
        assert degraded_seen
        await recovered(store)
        assert (store.dropped, store.rejected) == (0, 0)
    finally:
        await store.aclose()

    # What Redis holds, read by a fresh store: every reward exactly once.
    check = fast_store(server)
    try:
        st = await check.load("router", "", ARMS, Bandit(ARMS).engine.rules)
        assert st.pulls == [len(rewards[a]) for a in ARMS]
        assert st.reward_sum == [sum(rewards[a]) for a in ARMS]
        assert st.in_flight == [0, 0, 0]
        assert st.clock == total
        assert sum(st.pulls) == total
    finally:
        await check.aclose()
    outages = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outages) == 1, [r.getMessage() for r in outages]  # logged once per outage
    assert any("reachable again" in r.getMessage() for r in caplog.records)


async def test_during_an_outage(server: RedisServer) -> None:
    store = fast_store(server)
    other = fast_store(server)
    try:
        bandit = Bandit(ARMS, name="router", store=store, seed=1)
        foreign = Bandit(ARMS, name="router", store=other, seed=2)
        mine = await bandit.choose()
        theirs = await foreign.choose()
        await bandit.reward((await bandit.choose()).decision_id, 1.0)
        before = await bandit.state()
        await anyio.to_thread.run_sync(server.stop, signal.SIGKILL)

        # Selection goes on from the last known statistics, and says so.
        d = await bandit.choose()
        assert store.degraded
        assert (await bandit.state()).pulls == before.pulls  # the last known state
        # Own decisions settle (buffered); a second reward is refused as usual.
        await bandit.reward(mine.decision_id, 0.5)
        with pytest.raises(UnknownDecisionError, match="already settled"):
            await bandit.reward(mine.decision_id, 0.5)
        # A decision another process began cannot be checked now: a clear StoreError.
        with pytest.raises(StoreError, match="unreachable"):
            await bandit.reward(theirs.decision_id, 1.0)
        with pytest.raises(StoreError, match="unreachable"):
            await store.pending("router", theirs.decision_id)
        assert await store.pending("router", d.decision_id) is not None
        with pytest.raises(StoreError, match="unreachable"):
            await store.contexts("router")
        with pytest.raises(StoreError, match="unreachable"):
            await bandit.expire()
        moved = await bandit.reroute(d)
        await bandit.reward(d.decision_id, 1.0)

        await anyio.to_thread.run_sync(server.start)
        await recovered(store)
        # The buffered updates are in Redis, each once; the foreign decision is still pending.
        await foreign.reward(theirs.decision_id, 1.0)
        st = await foreign.state()
        assert sum(st.pulls) == 4
        assert sum(st.failures) == 1  # the reroute's failure
        assert st.pulls[ARMS.index(moved.arm)] >= 1
        assert st.in_flight == [0, 0, 0]
    finally:
        await store.aclose()
        await other.aclose()


async def test_beyond_the_buffer_updates_are_dropped_and_counted(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bandit_router_redis")
    store = fast_store(server, buffer_size=5)
    try:
        bandit = Bandit(ARMS, name="router", store=store, seed=1)
        d0 = await bandit.choose()
        await bandit.reward(d0.decision_id, 1.0)
        await anyio.to_thread.run_sync(server.stop, signal.SIGKILL)
        for _ in range(20):  # 40 updates for a buffer of 5: never an exception
            d = await bandit.choose()
            await bandit.reward(d.decision_id, 1.0)
        # Buffered: begin 1, reward 1, begin 2, reward 2, begin 3; the other 35 dropped.
        assert store.dropped == 35
        drops = [r for r in caplog.records if "buffer full" in r.getMessage()]
        assert len(drops) == 1
        await anyio.to_thread.run_sync(server.start)
        await recovered(store)
        st = await bandit.state()
        assert sum(st.pulls) == 3  # before the outage, and the two whole decisions buffered
        assert sum(st.in_flight) == 1  # decision 3's reward was dropped: it waits for its TTL
    finally:
        await store.aclose()


async def test_expiry_of_a_decision_begun_during_an_outage(server: RedisServer) -> None:
    now = [1000.0]
    store = fast_store(server)
    try:
        bandit = Bandit(
            ARMS, name="router", store=store, pending_ttl=10.0, expired_reward=0.0,
            clock=lambda: now[0], seed=1,
        )  # fmt: skip
        await bandit.reward((await bandit.choose()).decision_id, 1.0)
        await anyio.to_thread.run_sync(server.stop, signal.SIGTERM)
        late = await bandit.choose()
        now[0] += 60.0  # its reward comes after its TTL
        with pytest.raises(UnknownDecisionError, match="expired"):
            await bandit.reward(late.decision_id, 1.0)
        await anyio.to_thread.run_sync(server.start)
        await recovered(store)
        assert await bandit.expire() == 1  # written back with its start: Redis expires it
        st = await bandit.state()
        assert (sum(st.pulls), sum(st.reward_sum), sum(st.in_flight)) == (2, 1.0, 0)
    finally:
        await store.aclose()


async def test_a_restart_without_persistence_starts_empty(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis that lost its data cannot be restored by a client: the store says so, works on."""
    caplog.set_level(logging.WARNING, logger="bandit_router_redis")
    store = fast_store(server)
    rules = Rules(decay=None, expired=Outcome(None, None), pending_ttl=3600.0, max_pending=10)
    try:
        await store.begin("ns", "", ARMS, lambda s: "a", "d1", rules, 0.0)
        await store.settle("ns", "d1", Outcome(1.0, 1.0), rules, 0.0)
        await anyio.to_thread.run_sync(server.stop, signal.SIGKILL)
        for path in server.dir.glob("appendonlydir/*"):  # the data is gone for good
            path.unlink()
        await anyio.to_thread.run_sync(server.start)
        # The next begin sees the empty state (a warning says the version went back).
        await store.begin("ns", "", ARMS, lambda s: "b", "d2", rules, 0.0)
        await recovered(store)
        st = await store.load("ns", "", ARMS, rules)
        assert st.in_flight == [0, 1, 0]
        assert any("went back" in r.getMessage() for r in caplog.records)
    finally:
        await store.aclose()


async def test_the_router_keeps_answering_through_an_outage(server: RedisServer) -> None:
    """Through ``BanditRouterRunnable``: every call answers; degraded calls are marked on spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    store = fast_store(server, buffer_size=10_000)
    total = 900
    arms = {
        name: FakeArm(quality=q, seed=i)
        for i, (name, q) in enumerate(zip(ARMS, (0.9, 0.6, 0.3), strict=True))
    }
    router = BanditRouterRunnable(
        arms=arms, reward=is_right, store=store, name="router", tracer_provider=provider
    )
    answered: list[tuple[str, float]] = []  # (arm, reward) of every call, as the caller saw it
    try:
        calls = iter(range(total))

        async def caller() -> None:
            for _ in calls:
                out = await router.ainvoke("hi")  # must never raise, outage or not
                answered.append(
                    (out.response_metadata["bandit_router"]["arm"], float(is_right(out)))
                )

        async def chaos() -> None:
            while len(answered) < total // 3:
                await anyio.sleep(0.001)
            await anyio.to_thread.run_sync(server.stop, signal.SIGKILL)
            while len(answered) < 2 * total // 3:
                await anyio.sleep(0.001)
            await anyio.to_thread.run_sync(server.start)

        async with anyio.create_task_group() as tg:
            tg.start_soon(chaos)
            for _ in range(8):
                tg.start_soon(caller)
        await recovered(store)
        assert (store.dropped, store.rejected) == (0, 0)
    finally:
        await store.aclose()
    assert len(answered) == total
    routes = [s for s in exporter.get_finished_spans() if s.name == "bandit_router.route"]
    assert len(routes) == total
    marked = [s for s in routes if (s.attributes or {}).get("bandit_router.degraded")]
    assert marked, "no route span was marked degraded during the outage"
    assert all(s.attributes["bandit_router.degraded"] == DEGRADED_STORE for s in marked)  # type: ignore[index]
    assert len(marked) < total  # the calls before the outage were not marked

    # Redis, read by a fresh store, holds every call's reward exactly once.
    check = fast_store(server)
    try:
        st = await check.load("router", "", ARMS, Bandit(ARMS).engine.rules)
        assert st.pulls == [sum(1 for a, _ in answered if a == arm) for arm in ARMS]
        assert st.reward_sum == [sum(r for a, r in answered if a == arm) for arm in ARMS]
        assert st.in_flight == [0, 0, 0]
    finally:
        await check.aclose()
