"""Quickstart: a bandit learns which of three chat models answers best.

Three fake LangChain chat models stand in for real LLMs (no API is needed): each answers
"2 + 2?" correctly with a known probability. For every question the bandit picks a model,
an evaluator scores the answer (1 if correct), and the bandit learns. At the end it prints
what it learned next to the truth.

Run:  python examples/quickstart.py [--calls 1500] [--seed 7] [--store state.db]
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from bandit_router import Bandit
from bandit_router.policies import KLUCB
from bandit_router.stores import InMemoryStore, SQLiteStore, StateStore

QUALITY = {"small-model": 0.55, "medium-model": 0.75, "large-model": 0.90}


def make_model(quality: float, calls: int, rng: random.Random) -> FakeListChatModel:
    """A fake chat model whose answers are right with probability ``quality``."""
    answers = ["4" if rng.random() < quality else "5" for _ in range(calls)]
    return FakeListChatModel(responses=answers)


async def main(calls: int, seed: int, store: StateStore) -> dict[str, int]:
    rng = random.Random(seed)
    models = {name: make_model(q, calls, rng) for name, q in QUALITY.items()}
    bandit = Bandit(list(models), policy=KLUCB(), store=store, seed=seed)
    recent: Counter[str] = Counter()
    for i in range(calls):
        decision = await bandit.choose()  # picks an arm, counts it in flight
        answer = await models[decision.arm].ainvoke("What is 2 + 2? Answer with a number.")
        await bandit.reward(decision.decision_id, answer.content == "4")  # the evaluator
        if i >= calls - 200:
            recent[decision.arm] += 1
    stats = await bandit.statistics()
    print(f"{'arm':14s} {'true quality':>12s} {'pulls':>6s} {'learned mean':>12s} {'last 200':>9s}")
    for name, s in stats.items():
        mean = "-" if s.mean is None else f"{s.mean:.3f}"
        print(f"{name:14s} {QUALITY[name]:12.2f} {s.pulls:6d} {mean:>12s} {recent[name]:9d}")
    best = max(stats, key=lambda a: stats[a].pulls)
    print(
        f"\nAfter {calls} calls the router prefers {best!r} "
        f"({recent[best] / 2:.0f}% of the last 200 calls)."
    )
    await store.aclose()
    return dict(recent)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1500, help="number of routed calls")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    parser.add_argument("--store", default=None, help="SQLite file to keep the learning in")
    args = parser.parse_args()
    store: StateStore = SQLiteStore(args.store) if args.store else InMemoryStore()
    asyncio.run(main(args.calls, args.seed, store))
