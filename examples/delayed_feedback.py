"""Delayed feedback: the reward (a user's thumbs-up) arrives after the call, out of order.

The router answers at once; each answer carries its run id. Users rate some answers later
(here: a random 70% of them, up to 30 calls late, in shuffled order) and the ratings are
recorded with ``arecord_feedback``. Answers nobody rates expire after ``pending_ttl``
seconds without counting. Runs offline with fake models of known quality.

Run:  python examples/delayed_feedback.py
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter

from bandit_router import BanditRouterRunnable
from bandit_router.testing import FakeArm, is_right

QUALITY = {"fast-model": 0.6, "careful-model": 0.85}


async def main() -> None:
    router = BanditRouterRunnable(
        arms={name: FakeArm(quality=q, seed=i) for i, (name, q) in enumerate(QUALITY.items())},
        pending_ttl=600,  # ratings later than 10 minutes are ignored
        seed=0,
    )
    rng = random.Random(1)
    unrated: list[tuple[uuid.UUID, bool]] = []
    served: Counter[str] = Counter()
    for i in range(1500):
        run_id = uuid.uuid4()
        answer = await router.ainvoke("How do I reset my password?", config={"run_id": run_id})
        if i >= 1300:
            served[answer.response_metadata["bandit_router"]["arm"]] += 1
        if rng.random() < 0.7:  # this user will rate the answer, later
            unrated.append((run_id, is_right(answer)))
        if len(unrated) > 30 or rng.random() < 0.2:  # a batch of ratings arrives
            rng.shuffle(unrated)
            while unrated and rng.random() < 0.8:
                rid, thumbs_up = unrated.pop()
                await router.arecord_feedback(rid, thumbs_up)
    stats = await router.astatistics()
    print(f"{'arm':14s} {'rated':>6s} {'waiting':>8s} {'mean':>6s} {'last 200':>9s}")
    for arm, s in stats.items():
        mean = "-" if s.mean is None else f"{s.mean:.3f}"
        print(f"{arm:14s} {s.pulls:6d} {s.in_flight:8d} {mean:>6s} {served[arm]:9d}")
    best = max(served, key=lambda a: served[a])
    print(f"\nWith ratings arriving late and out of order, the router serves {best!r}.")


if __name__ == "__main__":
    asyncio.run(main())
