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

from collections.abc import AsyncIterator, Callable
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


#: Every store the contract suite runs against: name -> builder of its spec (see above).
STORES: dict[str, Callable[[Path], StoreSpec]] = {"memory": _memory, "sqlite": _sqlite}


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
