"""Several worker processes share one learning router through Redis.

Three worker processes (think: three replicas of a web service) each build the same router,
named ``"support"``, over the same ``RedisStore``. Every call any of them routes teaches all
of them: the statistics, the calls in flight and the pending decisions live in Redis, and
each update is one atomic script, so no update is lost. At the end a fresh process reads the
shared statistics: the pulls add up to every worker's calls.

Needs a Redis >= 7.0 (``redis-server``, or ``docker run -p 6379:6379 redis:7``) and the
``bandit-router-redis`` integration (``make`` installs it). ``REDIS_URL`` or ``--url`` says
where; without a reachable Redis the example says so and exits without error (with
``BANDIT_ROUTER_REQUIRE_REDIS=1``, as in CI, it fails instead). Models are fake (no API).

Run:  python examples/multi_worker_redis.py [--workers 3] [--calls 100] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext

from bandit_router_redis import RedisStore
from bandit_router_redis.testing import delete_prefix

from bandit_router import BanditRouterRunnable, StoreError
from bandit_router.testing import FakeArm, is_right

QUALITY = {"small-model": 0.6, "large-model": 0.9}


def make_router(store: RedisStore, seed: int) -> BanditRouterRunnable:
    """The same router in every worker: same name, same store, so one learning state."""
    return BanditRouterRunnable(
        arms={
            name: FakeArm(quality=q, seed=seed * 10 + i)
            for i, (name, q) in enumerate(QUALITY.items())
        },
        reward=is_right,
        store=store,
        name="support",
        seed=seed,
    )


async def worker(index: int, url: str, prefix: str, calls: int) -> dict[str, int]:
    store = RedisStore(url, prefix=prefix)
    router = make_router(store, seed=index)
    served: Counter[str] = Counter()
    try:
        for _ in range(calls):
            answer = await router.ainvoke("Where is my order?")
            served[answer.response_metadata["bandit_router"]["arm"]] += 1
    finally:
        await store.aclose()
    return dict(served)


def run_worker(job: tuple[int, str, str, int]) -> dict[str, int]:
    return asyncio.run(worker(*job))


async def reachable(url: str, prefix: str) -> str | None:
    """None if Redis answers, else why not (the password masked)."""
    store = RedisStore(url, prefix=prefix)
    try:
        await store.ping()
    except StoreError as exc:
        return str(exc)
    finally:
        await store.aclose()
    return None


async def shared_statistics(url: str, prefix: str) -> dict[str, tuple[int, float | None]]:
    store = RedisStore(url, prefix=prefix)
    try:
        stats = await make_router(store, seed=0).astatistics()
    finally:
        await store.aclose()
    return {arm: (s.pulls, s.mean) for arm, s in stats.items()}


def main(url: str, workers: int, calls: int, keep: bool) -> int:
    prefix = f"bandit_router_example:{uuid.uuid4().hex[:8]}"  # this run's own keys
    problem = asyncio.run(reachable(url, prefix))
    if problem is not None:
        print(f"skipped: Redis is not reachable ({problem})")
        print("Start one (redis-server, or docker run -p 6379:6379 redis:7) or set REDIS_URL.")
        return 1 if os.environ.get("BANDIT_ROUTER_REQUIRE_REDIS") == "1" else 0
    jobs = [(i, url, prefix, calls) for i in range(workers)]
    try:
        # Separate processes, like separate replicas. "forkserver" imports the libraries once
        # in a clean server process and forks each worker from it (faster than "spawn", and
        # never forks this process's threads); Windows has only "spawn".
        context: BaseContext
        if "forkserver" in get_all_start_methods():
            forkserver = get_context("forkserver")
            forkserver.set_forkserver_preload(["bandit_router", "bandit_router_redis", __name__])
            context = forkserver
        else:
            context = get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            results = list(pool.map(run_worker, jobs))
        for i, served in enumerate(results):
            mix = ", ".join(f"{arm} {served.get(arm, 0)}" for arm in QUALITY)
            print(f"worker process {i} served {calls} calls: {mix}")
        stats = asyncio.run(shared_statistics(url, prefix))
        total = sum(pulls for pulls, _ in stats.values())
        print("\nshared statistics in Redis:")
        for arm, (pulls, mean) in stats.items():
            print(f"  {arm:12s} pulls {pulls:4d}  mean {mean or 0:.3f}  (true {QUALITY[arm]})")
        print(f"\n{workers} workers, one learning state: {total} pulls in Redis.")
        if keep:
            print(f"Inspect it: bandit-router stats --store {url} --prefix {prefix}")
    finally:
        if not keep:
            delete_prefix(url, prefix)  # the demo's keys only
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="the Redis URL (default: $REDIS_URL or redis://127.0.0.1:6379/0)",
    )
    parser.add_argument("--workers", type=int, default=3, help="worker processes")
    parser.add_argument("--calls", type=int, default=100, help="calls per worker")
    parser.add_argument("--keep", action="store_true", help="keep the keys for inspection")
    args = parser.parse_args()
    sys.exit(main(args.url, args.workers, args.calls, args.keep))
