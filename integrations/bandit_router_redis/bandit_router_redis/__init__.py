"""bandit-router-redis: a Redis state store for bandit-router, shared by many processes and hosts.

``RedisStore(url)`` implements :class:`bandit_router.stores.StateStore` on Redis (>= 7.0) with
atomic Lua updates, optimistic concurrency for selection, batching of concurrent calls, and
an outage buffer. See ``docs/redis.md``.
"""

from __future__ import annotations

from bandit_router_redis._store import RedisStore, mask_url

__all__ = ["RedisStore", "mask_url"]
__version__ = "0.1.0"
