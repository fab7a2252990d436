"""Fixtures of the RedisStore tests.

Tests that use the shared Redis read ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``),
get a key prefix of their own (deleted after the test) and skip when Redis is unreachable,
unless ``BANDIT_ROUTER_REQUIRE_REDIS=1`` (CI), where they fail. Outage tests start their own
``redis-server`` on a free port and never touch the shared one.

This folder has no ``__init__.py`` on purpose: a package named ``redis`` would hide redis-py.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

if importlib.util.find_spec("bandit_router_redis") is None and (
    os.environ.get("BANDIT_ROUTER_REQUIRE_REDIS") != "1"
):
    # Not installed (pip install -e integrations/bandit_router_redis): nothing to test here.
    collect_ignore_glob = ["*.py"]
else:
    from bandit_router_redis import RedisStore
    from bandit_router_redis.testing import RedisServer, delete_prefix, redis_url, require_redis


def _required() -> bool:
    return os.environ.get("BANDIT_ROUTER_REQUIRE_REDIS") == "1"


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio; a test parametrizes ``anyio_backend`` to add trio."""
    return "asyncio"


@pytest.fixture
def url() -> str:
    """The shared test Redis (skips, or fails in CI, when it is unreachable)."""
    found = redis_url()
    require_redis(found)
    return found


@pytest.fixture
def prefix(url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"bandit_router_test:{uuid.uuid4().hex[:12]}"
    yield name
    delete_prefix(url, name)


@pytest.fixture
async def store(url: str, prefix: str) -> AsyncIterator[RedisStore]:
    """A RedisStore on the shared test Redis, closed after the test."""
    opened = RedisStore(url, prefix=prefix)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private redis-server (append-only file, fsync always) on a free loopback port."""
    if shutil.which("redis-server") is None and not os.path.exists("/usr/bin/redis-server"):
        if _required():
            pytest.fail("redis-server is not installed", pytrace=False)
        pytest.skip("redis-server is not installed; apt-get install redis-server")
    with RedisServer() as running:
        yield running
