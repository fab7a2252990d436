"""Decisions per second of each state store: ``Bandit.choose`` + ``Bandit.reward``, end to end.

One decision = ``await bandit.choose()`` (atomic select + begin in the store) and
``await bandit.reward(decision_id, r)`` (atomic settle), with a Bernoulli reward; 5 arms with
means 0.9 ... 0.5; the Bandit's default policy (KL-UCB) unless ``--policy ucb1``.

Measured, all in one run:

* in one process, with 1, 4 and 16 concurrent asyncio tasks sharing one ``Bandit``:
  ``InMemoryStore``, ``SQLiteStore`` (a file in a temporary folder) and ``RedisStore``
  (``$REDIS_URL``, default ``redis://127.0.0.1:6379/0``, on loopback, under a key prefix of its
  own that is deleted afterwards);
* across 4 worker processes (each with 16 tasks) on one router name: ``SQLiteStore`` and
  ``RedisStore`` (``InMemoryStore`` cannot be shared between processes). The processes are
  started first and released together; throughput = all their decisions / the longest one's
  time. ``BENCH_VERBOSE=1`` prints each worker's RedisStore counters (waits and retries).

After each run the store's totals are checked (pulls == decisions, nothing in flight), so a
fast but wrong store cannot win. Usage::

    python benchmarks/stores.py [--decisions 4000] [--mp-decisions 20000] [--processes 4]
                                [--tasks 1,4,16] [--mp-tasks 16] [--policy klucb|ucb1]
                                [--stores memory,sqlite,redis] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bandit_router import Bandit
from bandit_router.policies import KLUCB, UCB1, Policy
from bandit_router.stores import InMemoryStore, SQLiteStore, StateStore

MEANS = (0.9, 0.8, 0.7, 0.6, 0.5)
ARMS = tuple(f"arm{i}" for i in range(len(MEANS)))
ROOT = Path(__file__).resolve().parents[1]


def make_policy(name: str) -> Policy:
    return UCB1() if name == "ucb1" else KLUCB()


def open_store(kind: str, where: str) -> StateStore:
    """Open a store: ``where`` is the SQLite path or 'url|prefix' for Redis."""
    if kind == "memory":
        return InMemoryStore()
    if kind == "sqlite":
        return SQLiteStore(where)
    from bandit_router_redis import RedisStore

    url, _, prefix = where.partition("|")
    return RedisStore(url, prefix=prefix)


async def run_tasks(bandit: Bandit, decisions: int, tasks: int, seed: int) -> float:
    """Make ``decisions`` decisions with ``tasks`` concurrent tasks; return the seconds."""
    draw = random.Random(seed).random
    position = {a: i for i, a in enumerate(ARMS)}
    share = [decisions // tasks + (1 if k < decisions % tasks else 0) for k in range(tasks)]

    async def task(n: int) -> None:
        for _ in range(n):
            d = await bandit.choose()
            await bandit.reward(d.decision_id, 1.0 if draw() < MEANS[position[d.arm]] else 0.0)

    t0 = time.perf_counter()
    await asyncio.gather(*(task(n) for n in share))
    return time.perf_counter() - t0


async def check(bandit: Bandit, expected: int) -> None:
    st = await bandit.state()
    if sum(st.pulls) != expected or any(st.in_flight):
        raise SystemExit(
            f"store {type(bandit.store).__name__} is wrong: {sum(st.pulls)} pulls for "
            f"{expected} decisions, in flight {st.in_flight}"
        )


def server_cpu(kind: str, where: str) -> float:
    """CPU seconds the Redis server has used so far (0 for the other stores)."""
    if kind != "redis":
        return 0.0
    import redis

    client = redis.Redis.from_url(where.partition("|")[0])
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


async def one_process(
    kind: str, where: str, decisions: int, tasks: int, policy: str
) -> tuple[float, float]:
    """Return (decisions per second, CPU microseconds per decision: this process + server)."""
    store = open_store(kind, where)
    try:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        bandit = Bandit(ARMS, name=name, store=store, policy=make_policy(policy), seed=1)
        warm = 50
        await run_tasks(bandit, warm, min(tasks, warm), seed=0)
        cpu0, server0 = time.process_time(), server_cpu(kind, where)
        seconds = await run_tasks(bandit, decisions, tasks, seed=2)
        cpu = time.process_time() - cpu0 + server_cpu(kind, where) - server0
        await check(bandit, warm + decisions)
        return decisions / seconds, cpu / decisions * 1e6
    finally:
        await store.aclose()


# --- several processes ------------------------------------------------------------------------


def child(payload: dict[str, Any]) -> None:
    """A worker process: open the store, say ready, wait for the go file, run, report."""

    async def main() -> dict[str, Any]:
        store = open_store(payload["kind"], payload["where"])
        try:
            bandit = Bandit(
                ARMS,
                name=payload["name"],
                store=store,
                policy=make_policy(payload["policy"]),
                seed=payload["seed"],
            )
            await bandit.state()  # connect before the start signal
            print("ready", flush=True)
            go = Path(payload["go"])
            while not go.exists():
                await asyncio.sleep(0.001)
            cpu0 = time.process_time()
            seconds = await run_tasks(
                bandit, payload["decisions"], payload["tasks"], seed=payload["seed"]
            )
            return {
                "seconds": seconds,
                "cpu": time.process_time() - cpu0,
                "decisions": payload["decisions"],
                "counters": dict(getattr(store, "counters", {})),
            }
        finally:
            await store.aclose()

    print(json.dumps(asyncio.run(main())), flush=True)


async def many_processes(
    kind: str, where: str, decisions: int, processes: int, tasks: int, policy: str, tmp: Path
) -> tuple[float, float]:
    """Return (decisions per second, CPU microseconds per decision: workers + server)."""
    name = f"bench-mp-{uuid.uuid4().hex[:8]}"
    go = tmp / f"go-{name}"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    procs = []
    for w in range(processes):
        payload = {
            "kind": kind,
            "where": where,
            "name": name,
            "policy": policy,
            "seed": 100 + w,
            "go": str(go),
            "decisions": decisions // processes,
            "tasks": tasks,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--child", json.dumps(payload)],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise SystemExit(f"worker failed to start: {line!r}")
        server0 = server_cpu(kind, where)
        go.touch()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=600)
            if p.returncode != 0:
                raise SystemExit(f"worker failed with exit code {p.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        server = server_cpu(kind, where) - server0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if os.environ.get("BENCH_VERBOSE"):
        for r in results:
            print(r, file=sys.stderr)
    total = sum(r["decisions"] for r in results)
    store = open_store(kind, where)
    try:
        await check(Bandit(ARMS, name=name, store=store), total)
    finally:
        await store.aclose()
    cpu = sum(r["cpu"] for r in results) + server
    return float(total / max(r["seconds"] for r in results)), cpu / total * 1e6


# --- main -------------------------------------------------------------------------------------


def redis_where() -> tuple[str | None, str]:
    """Return (url|prefix, reason) for Redis, or (None, why not)."""
    try:
        from bandit_router_redis.testing import redis_unavailable, redis_url
    except ImportError:
        return None, "bandit-router-redis not installed"
    url = redis_url()
    reason = redis_unavailable(url)
    if reason:
        return None, reason
    return f"{url}|bench-{uuid.uuid4().hex[:8]}", ""


def cleanup_redis(where: str) -> None:
    from bandit_router_redis.testing import delete_prefix

    url, _, prefix = where.partition("|")
    delete_prefix(url, prefix)


async def main(args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    kinds = [k for k in args.stores.split(",") if k]
    task_counts = [int(t) for t in args.tasks.split(",")]
    rows: list[tuple[str, list[str], str]] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        redis_at: str | None = None
        if "redis" in kinds:
            redis_at, why = redis_where()
            if redis_at is None:
                print(f"skipping RedisStore: {why}", file=sys.stderr)
                kinds.remove("redis")
        try:
            for kind in kinds:
                cells: list[str] = []
                for tasks in task_counts:
                    best = (0.0, 0.0)
                    for r in range(args.rounds):
                        where = (
                            str(tmp / f"state-{tasks}-{r}.db")
                            if kind == "sqlite"
                            else (redis_at or "")
                        )
                        got = await one_process(kind, where, args.decisions, tasks, args.policy)
                        best = max(best, got)
                    cells.append(f"{best[0]:,.0f} ({best[1]:,.0f} us)")
                    print(f"{kind:>7} {tasks:>3} tasks: {cells[-1]}", file=sys.stderr)
                mp = "process-local"
                if kind != "memory":
                    best = (0.0, 0.0)
                    for r in range(args.rounds):
                        where = str(tmp / f"mp-{r}.db") if kind == "sqlite" else (redis_at or "")
                        got = await many_processes(
                            kind,
                            where,
                            args.mp_decisions,
                            args.processes,
                            args.mp_tasks,
                            args.policy,
                            tmp,
                        )
                        best = max(best, got)
                    mp = f"{best[0]:,.0f} ({best[1]:,.0f} us)"
                    print(
                        f"{kind:>7} {args.processes} processes x {args.mp_tasks} tasks: {mp}",
                        file=sys.stderr,
                    )
                rows.append((kind, cells, mp))
        finally:
            if redis_at is not None:
                cleanup_redis(redis_at)
    names = {"memory": "InMemoryStore", "sqlite": "SQLiteStore", "redis": "RedisStore (loopback)"}
    print(
        f"\nDecisions per second (Bandit.choose + Bandit.reward), policy {args.policy}, "
        f"{args.decisions} decisions per cell, {args.mp_decisions} across processes; in "
        "brackets the CPU time per decision (the benchmark's processes and, for Redis, the "
        f"server); Python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"before the run {load}\n"
    )
    header = " | ".join(f"{t} task{'s' if t > 1 else ''}" for t in task_counts)
    print(f"| store | {header} | {args.processes} processes x {args.mp_tasks} tasks |")
    print("|---" * (len(task_counts) + 2) + "|")
    for kind, cells, mp in rows:
        print(f"| {names[kind]} | {' | '.join(cells)} | {mp} |")


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=4000)
    ap.add_argument("--mp-decisions", type=int, default=20000)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--tasks", default="1,4,16")
    ap.add_argument("--mp-tasks", type=int, default=16)
    ap.add_argument("--policy", choices=("klucb", "ucb1"), default="klucb")
    ap.add_argument("--stores", default="memory,sqlite,redis")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


if __name__ == "__main__":
    ns = parse(sys.argv[1:])
    if ns.child:
        child(json.loads(ns.child))
    else:
        asyncio.run(main(ns))
