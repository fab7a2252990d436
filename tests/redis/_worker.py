"""Worker process of the RedisStore multi-process test: ``python _worker.py JSON``.

It routes ``decisions`` calls through a :class:`BanditRouterRunnable` (fake chat-model arms,
delayed feedback) on a :class:`RedisStore` with ``tasks`` concurrent tasks, recording the
feedback of every other call itself and handing the rest to another worker (through a file),
then records the feedback of the calls another worker handed to it. Rewards are a function of
the decision id (multiples of 1/1024, so every sum is exact), so whoever settles a decision
gives it the same reward.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import uuid
from pathlib import Path
from typing import Any

from bandit_router_redis import RedisStore

from bandit_router import BanditRouterRunnable
from bandit_router.testing import FakeArm

ARMS = ("a", "b", "c")


def reward_for(decision_id: str) -> float:
    """The reward of a decision, whichever process settles it."""
    return random.Random(decision_id).randrange(1025) / 1024


async def wait_for(path: Path) -> None:
    while not path.exists():
        await asyncio.sleep(0.005)


async def main(p: dict[str, Any]) -> dict[str, Any]:
    store = RedisStore(p["url"], prefix=p["prefix"])
    try:
        router = BanditRouterRunnable(
            arms={a: FakeArm(quality=0.5, seed=i) for i, a in enumerate(ARMS)},
            name=p["name"],
            store=store,
            seed=p["worker"],
        )
        await router.astatistics()  # connected before the start
        print("ready", flush=True)
        await wait_for(Path(p["go"]))

        routed: list[list[str]] = []  # [decision id, arm] of every call routed here
        handoff: list[list[str]] = []
        counter = iter(range(p["decisions"]))

        async def task() -> None:
            for i in counter:
                run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"w{p['worker']}-{i}")
                out = await router.ainvoke("hi", {"run_id": run_id})
                meta = out.response_metadata["bandit_router"]
                did, arm = meta["decision_id"], meta["arm"]
                assert did == str(run_id)
                routed.append([did, arm])
                if i % 2:
                    handoff.append([did, arm])
                else:
                    await router.arecord_feedback(run_id, reward_for(did))

        await asyncio.gather(*(task() for _ in range(p["tasks"])))
        Path(p["handoff_out"]).write_text(json.dumps(handoff))
        print("routed", flush=True)

        # Rewards for decisions that another process routed.
        await wait_for(Path(p["go2"]))
        settled: list[list[str]] = []
        theirs = iter(json.loads(Path(p["handoff_in"]).read_text()))

        async def settler() -> None:
            for did, arm in theirs:
                # Which arm does this process see the decision on, before settling it here?
                pending = await store.pending(p["name"], did)
                assert pending is not None, did
                await router.arecord_feedback(did, reward_for(did))
                settled.append([did, pending.arm, arm])

        await asyncio.gather(*(settler() for _ in range(p["tasks"])))
        return {"routed": routed, "settled": settled, "degraded": store.degraded}
    finally:
        await store.aclose()


if __name__ == "__main__":
    result = asyncio.run(main(json.loads(sys.argv[1])))
    print(json.dumps(result), flush=True)
