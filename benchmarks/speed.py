"""Microseconds per step of select + update, ours against MABWiser, measured side by side.

One step = choose an arm, draw a Bernoulli reward for it, learn from the reward; 5 arms with
means 0.9, 0.8, 0.7, 0.6, 0.5. Measured:

* ours, in memory: ``Engine.select`` + ``Engine.reward_outcome`` + ``BanditState.apply`` (the
  sans-I/O core, what every store runs inside its atomic step), for UCB1, KL-UCB and Thompson;
* ours, full async API: ``Bandit.choose`` + ``Bandit.reward`` over the ``InMemoryStore``
  (decision ids, the pending registry, the lock and the event loop included);
* MABWiser (``pip install bandit-router[bench]``): ``LearningPolicy.UCB1(alpha=1)`` (the same
  index as our ``UCB1(c=2)``), ``predict()`` + ``partial_fit()`` one step at a time.

The contenders run in interleaved rounds and each keeps its best round, which cancels most
of the noise of a shared machine. Usage::

    python benchmarks/speed.py [--steps 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from bandit_router import Bandit
from bandit_router._engine import Engine
from bandit_router.policies import KLUCB, UCB1, Policy, ThompsonSampling

MEANS = (0.9, 0.8, 0.7, 0.6, 0.5)
ARMS = tuple(f"arm{i}" for i in range(len(MEANS)))

Bench = Callable[[int], float]  # runs n steps, returns seconds


def ours_core(make: Callable[[], Policy]) -> Bench:
    def run(steps: int) -> float:
        engine = Engine(ARMS, policy=make(), seed=1)
        state = engine.new_state()
        draw = random.Random(2).random
        position = {a: i for i, a in enumerate(ARMS)}
        select, reward_outcome, apply = engine.select, engine.reward_outcome, state.apply
        decay = engine.rules.decay
        t0 = time.perf_counter()
        for _ in range(steps):
            i = position[select(state).arm]
            apply(i, reward_outcome(1.0 if draw() < MEANS[i] else 0.0), decay)
        return time.perf_counter() - t0

    return run


def ours_async(steps: int) -> float:
    async def loop() -> float:
        bandit = Bandit(ARMS, policy=UCB1(), seed=1)
        draw = random.Random(2).random
        position = {a: i for i, a in enumerate(ARMS)}
        t0 = time.perf_counter()
        for _ in range(steps):
            d = await bandit.choose()
            await bandit.reward(d.decision_id, 1.0 if draw() < MEANS[position[d.arm]] else 0.0)
        return time.perf_counter() - t0

    return asyncio.run(loop())


def mabwiser_ucb1() -> Bench | None:
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None

    def run(steps: int) -> float:
        mab: Any = MAB(list(ARMS), LearningPolicy.UCB1(alpha=1.0), seed=1)
        mab.fit(list(ARMS), [1.0 if random.Random(3).random() < m else 0.0 for m in MEANS])
        draw = random.Random(2).random
        position = {a: i for i, a in enumerate(ARMS)}
        t0 = time.perf_counter()
        for _ in range(steps):
            arm = mab.predict()
            mab.partial_fit([arm], [1.0 if draw() < MEANS[position[arm]] else 0.0])
        return time.perf_counter() - t0

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--steps", type=int, default=20_000, help="steps per round (ours)")
    ap.add_argument("--rounds", type=int, default=7)
    ns = ap.parse_args(argv)
    steps = ns.steps
    slow_steps = max(steps // 20, 200)  # the slow contenders get fewer steps per round
    benches: dict[str, tuple[Bench, int]] = {
        "ours: Engine.select + BanditState.apply, UCB1(c=2)": (ours_core(UCB1), steps),
        'ours: Engine.select + BanditState.apply, KLUCB("anytime")': (
            ours_core(KLUCB),
            steps // 4,
        ),
        "ours: Engine.select + BanditState.apply, Thompson": (
            ours_core(ThompsonSampling),
            steps // 4,
        ),
        "ours: await Bandit.choose + Bandit.reward, UCB1, InMemoryStore": (ours_async, steps // 4),
    }
    mab = mabwiser_ucb1()
    mab_name = "MABWiser 2.x: predict() + partial_fit(), UCB1(alpha=1)"
    if mab is not None:
        benches[mab_name] = (mab, slow_steps)
    best: dict[str, float] = dict.fromkeys(benches, float("inf"))
    for _ in range(ns.rounds):
        for name, (bench, n) in benches.items():
            best[name] = min(best[name], bench(n) / n * 1e6)

    print(
        f"5 Bernoulli arms, one step = select + reward + update; best of {ns.rounds} interleaved "
        f"rounds. Python {sys.version.split()[0]} on {platform.machine()}."
    )
    print()
    print("| contender | us/step |")
    print("|---|---:|")
    for name, us in best.items():
        print(f"| {name} | {us:.2f} |")
    print()
    ours = best["ours: Engine.select + BanditState.apply, UCB1(c=2)"]
    if mab is None:
        print("MABWiser is not installed (pip install 'bandit-router[bench]'): no ratio.")
        return 0
    ratio = best[mab_name] / ours
    print(f"UCB1 select+update: ours {ours:.2f} us/step, MABWiser {best[mab_name]:.1f} us/step")
    print(f"ratio: ours is {ratio:.1f}x faster (goal: >= 20x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
