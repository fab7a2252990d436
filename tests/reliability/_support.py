"""Shared pieces of the reliability suite: stores of every kind, a fault-injecting store that
keeps a ledger of what it acknowledged, registry introspection, and loop-error capture."""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import random
import sqlite3
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bandit_router import StoreError
from bandit_router._engine import PendingDecision, Rules
from bandit_router._stats import BanditState, Outcome
from bandit_router.stores import Chooser, InMemoryStore, SQLiteStore, StateStore
from bandit_router.telemetry import Telemetry

#: A string that must never reach a span, a metric or a log line unless content capture is on.
MARK = "PRIVATE-7f3a9c-MARKER"

STORE_KINDS = ("memory", "sqlite", "redis")

#: The writes a store can refuse (reads are not fault-injected: a router only reads to report).
WRITES = frozenset({"begin", "settle", "reroute", "observe", "expire"})


def redis_or_skip() -> str:
    """The test Redis URL; skips (fails with BANDIT_ROUTER_REQUIRE_REDIS=1) when unusable."""
    try:
        from bandit_router_redis.testing import redis_url, require_redis
    except ImportError as exc:  # the integration is not installed
        if os.environ.get("BANDIT_ROUTER_REQUIRE_REDIS") == "1":
            pytest.fail(f"bandit-router-redis is not installed: {exc}", pytrace=False)
        pytest.skip("pip install -e integrations/bandit_router_redis to test RedisStore")
    url = redis_url()
    require_redis(url)
    return url


@dataclass
class Stores:
    """Makes fresh stores of one kind for one test and cleans up after it."""

    kind: str
    tmp_path: Path
    opened: list[StateStore] = field(default_factory=list)
    prefixes: list[tuple[str, str]] = field(default_factory=list)

    def new(self, **kwargs: Any) -> StateStore:
        """A new, empty store of this kind."""
        store: StateStore
        if self.kind == "memory":
            store = InMemoryStore()
        elif self.kind == "sqlite":
            store = SQLiteStore(self.tmp_path / f"state-{uuid.uuid4().hex[:8]}.db", **kwargs)
        else:
            from bandit_router_redis import RedisStore

            url = redis_or_skip()
            prefix = f"bandit_router_test:rel-{uuid.uuid4().hex[:12]}"
            self.prefixes.append((url, prefix))
            store = RedisStore(url, prefix=prefix, **kwargs)
        self.opened.append(store)
        return store

    async def close(self) -> None:
        for store in self.opened:
            await store.aclose()
        self.opened.clear()
        if self.prefixes:
            from bandit_router_redis.testing import delete_prefix

            for url, prefix in self.prefixes:
                delete_prefix(url, prefix)
            self.prefixes.clear()


def link_cache_size(router: object) -> int:
    """How many decisions the router's telemetry remembers for linking delayed feedback.

    Test introspection: the router's private layout is being refactored, so look in both places.
    """
    core = getattr(router, "_core", None)
    telemetry = getattr(core, "telemetry", None) or getattr(router, "_telemetry", None)
    assert isinstance(telemetry, Telemetry), router
    return len(telemetry.links)


def inner_store(store: StateStore) -> StateStore:
    """The real store behind a :class:`FaultyStore` (or the store itself)."""
    return store.inner if isinstance(store, FaultyStore) else store


async def registry_sizes(store: StateStore, namespace: str) -> dict[str, int]:
    """How many pending and finished decision records ``store`` holds for ``namespace``.

    These registries are the only per-decision memory a store keeps; their sizes are what
    ``max_pending`` bounds. Read from each store's own structures (test introspection).
    """
    store = inner_store(store)
    if isinstance(store, InMemoryStore):
        sp = store._spaces.get(namespace)
        return {
            "pending": len(sp.pending) if sp else 0,
            "finished": len(sp.settled) if sp else 0,
        }
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, timeout=30)
        try:
            (pending,) = conn.execute(
                "SELECT COUNT(*) FROM pending WHERE namespace=?", (namespace,)
            ).fetchone()
            (finished,) = conn.execute(
                "SELECT COUNT(*) FROM finished WHERE namespace=?", (namespace,)
            ).fetchone()
        finally:
            conn.close()
        return {"pending": int(pending), "finished": int(finished)}
    import redis.asyncio as aioredis
    from bandit_router_redis import RedisStore
    from bandit_router_redis._store import _tag

    assert isinstance(store, RedisStore)
    base = f"{store.prefix}:{{{_tag(namespace)}}}"
    client = aioredis.Redis.from_url(store.url)
    try:
        async with client.pipeline(transaction=True) as pipe:  # one consistent snapshot
            pipe.hlen(f"{base}:pending")
            pipe.zcard(f"{base}:pending-by-expiry")
            pipe.hlen(f"{base}:finished")
            pipe.llen(f"{base}:finished-order")
            pending, by_expiry, finished, order = await pipe.execute()
    finally:
        await client.aclose()
    assert pending == by_expiry, (pending, by_expiry)
    return {"pending": int(pending), "finished": max(int(finished), int(order))}


def finished_bound(store: StateStore, max_pending: int) -> int:
    """The most finished records ``store`` may hold: ``max_pending`` (SQLite trims them every
    256 writes, so up to 255 more)."""
    return max_pending + (255 if isinstance(inner_store(store), SQLiteStore) else 0)


class FaultyStore:
    """A real store behind a fault injector, with a ledger of every write it acknowledged.

    Each write (``begin``, ``settle``, ``reroute``, ``observe``, ``expire``) is refused with
    probability ``fail_rate`` by raising :class:`StoreError` *before* it reaches the real
    store, so nothing of it is applied: the way a SQLite transaction that rolled back, or a
    Redis that refused a script, fails. Everything else is delegated unchanged. This is a
    fault injector in front of a real store, not a mock of one.

    The ledger counts, per arm, the rewards and failures the real store acknowledged, so a
    test can check that the store's statistics hold exactly what was acknowledged (nothing
    lost, nothing applied twice). A write whose caller is cancelled while it runs may or may
    not have been applied: ``attempted`` counts the rewards whose settle was started, so
    ``rewards <= pulls <= attempted``. ``reward_began`` records, per decision, the sequence
    number at which a settle with a reward was started (see :func:`tick`).
    """

    def __init__(self, inner: StateStore, *, fail_rate: float = 0.0, seed: int = 0) -> None:
        self.inner = inner
        self.fail_rate = fail_rate
        self.rng = random.Random(seed)
        self.injected: Counter[str] = Counter()
        self.rewards: Counter[str] = Counter()
        self.reward_sums: defaultdict[str, float] = defaultdict(float)
        self.failures: Counter[str] = Counter()
        self.attempted: Counter[str] = Counter()
        self.reward_began: dict[str, int] = {}
        self.arm_of: dict[str, str] = {}  # decision id -> its arm, as this store answered

    def _maybe_fail(self, op: str) -> None:
        if self.fail_rate and self.rng.random() < self.fail_rate:
            self.injected[op] += 1
            raise StoreError(f"injected fault: the store refused a {op} (nothing was written)")

    def _count(self, arm: str, outcome: Outcome) -> None:
        if outcome.reward is not None:
            self.rewards[arm] += 1
            self.reward_sums[arm] += outcome.reward
        if outcome.failure:
            self.failures[arm] += 1

    async def load(
        self, namespace: str, context: str, arms: tuple[str, ...], rules: Rules
    ) -> BanditState:
        return await self.inner.load(namespace, context, arms, rules)

    async def begin(
        self,
        namespace: str,
        context: str,
        arms: tuple[str, ...],
        choose: Chooser,
        decision_id: str,
        rules: Rules,
        now: float,
    ) -> str:
        self._maybe_fail("begin")
        arm = await self.inner.begin(namespace, context, arms, choose, decision_id, rules, now)
        self.arm_of[decision_id] = arm
        return arm

    async def settle(
        self, namespace: str, decision_id: str, outcome: Outcome, rules: Rules, now: float
    ) -> PendingDecision:
        self._maybe_fail("settle")
        if outcome.reward is not None:
            self.reward_began.setdefault(decision_id, tick())
            if decision_id in self.arm_of:
                self.attempted[self.arm_of[decision_id]] += 1
        done = await self.inner.settle(namespace, decision_id, outcome, rules, now)
        self._count(done.arm, outcome)
        return done

    async def reroute(
        self,
        namespace: str,
        decision_id: str,
        arms: tuple[str, ...],
        choose: Chooser,
        outcome: Outcome,
        rules: Rules,
        now: float,
    ) -> str:
        self._maybe_fail("reroute")
        # The outcome applies to the decision's current arm (only its owner moves it).
        old = self.arm_of.get(decision_id)
        if old is None:
            known = await self.inner.pending(namespace, decision_id)
            old = known.arm if known is not None else None
        arm = await self.inner.reroute(namespace, decision_id, arms, choose, outcome, rules, now)
        assert old is not None  # the reroute would have raised
        self.arm_of[decision_id] = arm
        self._count(old, outcome)
        return arm

    async def observe(
        self,
        namespace: str,
        context: str,
        arms: tuple[str, ...],
        arm: str,
        outcome: Outcome,
        rules: Rules,
    ) -> None:
        self._maybe_fail("observe")
        await self.inner.observe(namespace, context, arms, arm, outcome, rules)
        self._count(arm, outcome)

    async def pending(self, namespace: str, decision_id: str) -> PendingDecision | None:
        return await self.inner.pending(namespace, decision_id)

    async def expire(self, namespace: str, rules: Rules, now: float) -> int:
        self._maybe_fail("expire")
        return await self.inner.expire(namespace, rules, now)

    async def contexts(self, namespace: str) -> list[str]:
        return await self.inner.contexts(namespace)

    async def aclose(self) -> None:
        await self.inner.aclose()


_ticks = itertools.count()


def tick() -> int:
    """A global sequence number: orders events of one event loop (a cancel, a settle)."""
    return next(_ticks)


class Otel:
    """A real OpenTelemetry SDK whose spans and metrics stay in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def exported_text(self) -> str:
        """Everything a back end would receive, as one string (spans and metrics, as JSON)."""
        spans = [span.to_json() for span in self.exporter.get_finished_spans()]
        data = self.reader.get_metrics_data()
        return "\n".join([*spans, data.to_json() if data is not None else ""])

    def counter_total(self, name: str) -> float:
        """The sum of a counter over all its attribute sets."""
        total = 0.0
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            assert isinstance(point, NumberDataPoint)
                            total += point.value
        return total

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@contextmanager
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """Collect what the running loop reports to its exception handler meanwhile.

    "Task exception was never retrieved" and "Task was destroyed but it is pending" are
    reported there when such a task is garbage-collected, so the block ends with a collection.
    """
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    old = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        yield seen
        gc.collect()
    finally:
        loop.set_exception_handler(old)
