"""The stores the contract suite runs against.

HOW TO ADD A STORE (e.g. the Redis store of ``integrations/bandit_router_redis``):

1. Write a builder ``(tmp_path) -> StoreSpec`` below. A :class:`StoreSpec` is plain data: the
   ``"module:attribute"`` of a callable that returns the store, its arguments, and whether
   another process opening the same spec sees the same state (``shared=True``). Every process
   of the cross-process tests opens its own store from it, so it must not hold live objects.
   Give each test its own state (a file under ``tmp_path``; for a server, a key prefix
   derived from ``tmp_path.name``), and call ``pytest.skip`` when the backend is unavailable.
2. Add the builder to :data:`STORES`. That is all: every test in ``tests/stores`` that takes
   the ``store``, ``store_spec`` or ``shared_spec`` fixture then runs against it.

For example::

    def _redis(tmp_path: Path) -> StoreSpec:
        url = os.environ.get("BANDIT_ROUTER_REDIS_URL")
        if not url:
            pytest.skip("set BANDIT_ROUTER_REDIS_URL to run the contract suite on Redis")
        return StoreSpec(
            "redis", "bandit_router_redis:RedisStore", args=(url,),
            kwargs=(("prefix", f"test-{tmp_path.name}"),), shared=True,
        )

    STORES = {"memory": _memory, "sqlite": _sqlite, "redis": _redis}
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bandit_router.stores import StateStore

from ._procs import StoreSpec


def _memory(tmp_path: Path) -> StoreSpec:
    return StoreSpec("memory", "bandit_router.stores:InMemoryStore")


def _sqlite(tmp_path: Path) -> StoreSpec:
    return StoreSpec(
        "sqlite",
        "bandit_router.stores:SQLiteStore",
        args=(str(tmp_path / "state.db"),),
        shared=True,
    )


#: (url, key prefix) of every Redis store handed out by the current test, deleted after it.
_REDIS_PREFIXES: list[tuple[str, str]] = []


def _redis(tmp_path: Path) -> StoreSpec:
    """RedisStore on ``$REDIS_URL`` with a key prefix of its own (skips without Redis)."""
    try:
        from bandit_router_redis.testing import redis_url, require_redis
    except ImportError as exc:  # the integration is not installed
        if os.environ.get("BANDIT_ROUTER_REQUIRE_REDIS") == "1":
            pytest.fail(f"bandit-router-redis is not installed: {exc}", pytrace=False)
        pytest.skip("pip install -e integrations/bandit_router_redis to test RedisStore")
    url = redis_url()
    require_redis(url)
    prefix = f"bandit_router_test:{tmp_path.name}-{uuid.uuid4().hex[:8]}"
    _REDIS_PREFIXES.append((url, prefix))
    return StoreSpec(
        "redis",
        "bandit_router_redis:RedisStore",
        args=(url,),
        kwargs=(("prefix", prefix),),
        shared=True,
    )


@pytest.fixture(autouse=True)
def _delete_redis_keys() -> Iterator[None]:
    """After each test, delete the keys of the Redis stores it used."""
    yield
    while _REDIS_PREFIXES:
        from bandit_router_redis.testing import delete_prefix

        url, prefix = _REDIS_PREFIXES.pop()
        delete_prefix(url, prefix)


#: Every store the contract suite runs against: name -> builder of its spec (see above).
STORES: dict[str, Callable[[Path], StoreSpec]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "redis": _redis,
}


@pytest.fixture(params=list(STORES))
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """The spec of a fresh, empty store (one per store kind)."""
    builder: Callable[[Path], StoreSpec] = STORES[request.param]
    return builder(tmp_path)


@pytest.fixture
def shared_spec(store_spec: StoreSpec) -> StoreSpec:
    """The spec of a fresh store that other processes can open; skips process-local stores."""
    if not store_spec.shared:
        pytest.skip(
            f"{store_spec.name}: its state lives in one process's memory, "
            "so another process cannot open it"
        )
    return store_spec


@pytest.fixture
async def store(store_spec: StoreSpec) -> AsyncIterator[StateStore]:
    """A fresh, empty store, opened in this process and closed after the test."""
    opened = store_spec.open()
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio; a test parametrizes ``anyio_backend`` to add trio."""
    return "asyncio"
