"""Microseconds per decision (select + update), ours against MABWiser, measured side by side.

One step = choose an arm, draw a Bernoulli reward for it, learn from the reward. ``K`` arms with
means evenly spaced from 0.9 down to 0.5 (K = 5: 0.9, 0.8, 0.7, 0.6, 0.5). Contenders, each
configured as a user would configure it:

* ``Bandit`` default: ``await Bandit(arms).choose()`` + ``await bandit.reward(...)`` (the public
  layer: default ``KLUCB()``, ``InMemoryStore``, decision ids, the pending registry);
* core: ``Engine.select`` + ``Engine.reward_outcome`` + ``BanditState.apply`` (the sans-I/O core
  every store runs inside its atomic step) with the default ``KLUCB()``, ``UCB1()``,
  ``UCBTuned()`` and ``ThompsonSampling()``; the last two also with numpy hidden (their
  pure-Python path), since numpy is not a dependency;
* MABWiser (``pip install bandit-router[bench]``): ``MAB(arms, LearningPolicy.UCB1())`` (its
  defaults; alpha = 1 is the same index as our ``UCB1()``), ``predict()`` + ``partial_fit()``
  one step at a time.

Every contender keeps one bandit for the whole run: it is first warmed up by ``--warm`` untimed
steps per arm (MABWiser: ``fit`` on one reward per arm, then the same untimed steps), then the
rounds continue from where the previous round stopped. Within a round the contenders take
turns (interleaved, so they share the machine's load); each round is sized to last about
``--seconds`` per contender. The table gives the median over rounds; each ratio is the median
over rounds of that round's ratio (same round, side by side). ``--clock cpu`` (the default)
times the process's CPU time, which a busy machine disturbs less than wall time (every
contender runs in this one thread; ``--clock wall`` for wall time). The ``Bandit`` default and the
KL-UCB core run the same steps on the same seeds, so they make the same decisions and their
difference is the cost of the ``Bandit`` layer itself.

Usage::

    python benchmarks/speed.py [--arms 5,100,1000] [--rounds 5] [--seconds 0.3] [--warm 2]
                               [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import bandit_router.policies._vector as vector
from bandit_router import Bandit, __version__
from bandit_router._engine import Engine
from bandit_router.policies import KLUCB, UCB1, Policy, ThompsonSampling, UCBTuned

Timed = Callable[[int], Awaitable[float]]  # runs n steps, returns the seconds they took
CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}
clock: Callable[[], float] = time.process_time  # set by main() from --clock

BANDIT = "Bandit.choose + Bandit.reward, default KLUCB(), InMemoryStore"
CORE_KL = "core: Engine.select + apply, KLUCB() (default)"
CORE_UCB1 = "core: Engine.select + apply, UCB1()"
MAB = "MABWiser: predict() + partial_fit(), UCB1() defaults"


def means(k: int) -> list[float]:
    """Arm means evenly spaced from 0.9 down to 0.5."""
    return [0.9 - 0.4 * i / (k - 1) for i in range(k)] if k > 1 else [0.9]


@dataclass
class Contender:
    """One row: how to run ``n`` steps, and its microseconds per step in each round."""

    name: str
    run: Timed
    info: bool = False
    steps: int = 0  # per round, set after the warm-up
    rounds: list[float] = field(default_factory=list)


def core(arms: list[str], make: Callable[[], Policy], numpy: bool = True) -> Timed:
    """The sans-I/O core: select, validate the reward, apply it."""
    engine = Engine(arms, policy=make(), seed=1)
    state = engine.new_state()
    draw = random.Random(2).random
    mu = means(len(arms))
    position = {a: i for i, a in enumerate(arms)}
    select, reward_outcome, apply = engine.select, engine.reward_outcome, state.apply
    decay = engine.rules.decay

    async def run(n: int) -> float:
        saved = vector.np
        if not numpy:
            vector.np = None  # the pure-Python path, as without numpy installed
        try:
            t0 = clock()
            for _ in range(n):
                i = position[select(state).arm]
                apply(i, reward_outcome(1.0 if draw() < mu[i] else 0.0), decay)
            return clock() - t0
        finally:
            vector.np = saved

    return run


def bandit_default(arms: list[str]) -> Timed:
    """The public layer as a user writes it: ``Bandit(arms)``, choose, reward."""
    bandit = Bandit(arms, seed=1)
    draw = random.Random(2).random
    mu = means(len(arms))
    position = {a: i for i, a in enumerate(arms)}

    async def run(n: int) -> float:
        choose, reward = bandit.choose, bandit.reward
        t0 = clock()
        for _ in range(n):
            d = await choose()
            await reward(d.decision_id, 1.0 if draw() < mu[position[d.arm]] else 0.0)
        return clock() - t0

    return run


def mabwiser_ucb1(arms: list[str]) -> Timed | None:
    """MABWiser's UCB1 with its defaults, one ``predict`` + ``partial_fit`` per step."""
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except ImportError:
        return None
    mu = means(len(arms))
    mab: Any = MAB(list(arms), LearningPolicy.UCB1(), seed=1)
    first = random.Random(3).random
    mab.fit(list(arms), [1.0 if first() < m else 0.0 for m in mu])
    draw = random.Random(2).random
    position = {a: i for i, a in enumerate(arms)}

    async def run(n: int) -> float:
        t0 = clock()
        for _ in range(n):
            arm = mab.predict()
            mab.partial_fit([arm], [1.0 if draw() < mu[position[arm]] else 0.0])
        return clock() - t0

    return run


async def measure(k: int, rounds: int, seconds: float, warm: int) -> dict[str, Contender]:
    """Warm every contender up, then run the interleaved rounds; return them by name."""
    arms = [f"arm{i}" for i in range(k)]
    cs = [
        Contender(BANDIT, bandit_default(arms)),
        Contender(CORE_KL, core(arms, KLUCB)),
        Contender(CORE_UCB1, core(arms, UCB1)),
        Contender("core: UCBTuned() (info)", core(arms, UCBTuned), info=True),
        Contender("core: ThompsonSampling() (info)", core(arms, ThompsonSampling), info=True),
    ]
    if vector.np is not None:
        cs += [
            Contender(
                "core: UCBTuned(), numpy hidden (info)",
                core(arms, UCBTuned, numpy=False),
                info=True,
            ),
            Contender(
                "core: ThompsonSampling(), numpy hidden (info)",
                core(arms, ThompsonSampling, numpy=False),
                info=True,
            ),
        ]
    mab = mabwiser_ucb1(arms)
    if mab is not None:
        cs.append(Contender(MAB, mab))
    for c in cs:  # warm-up, which also sizes the rounds
        n = warm * k
        spent = await c.run(n)
        c.steps = max(10, round(seconds / max(spent / n, 1e-9)))
    by_name = {c.name: c for c in cs}
    # The same steps for the Bandit and its core: the same decisions, so their difference is
    # the Bandit layer's own cost.
    by_name[CORE_KL].steps = by_name[BANDIT].steps
    for r in range(rounds):
        order = cs[r % len(cs) :] + cs[: r % len(cs)]  # rotate who goes first
        for c in order:
            gc.collect()
            c.rounds.append(await c.run(c.steps) / c.steps * 1e6)
    return by_name


def ratio(a: Contender, b: Contender) -> float:
    """Median over rounds of ``a``'s time over ``b``'s in the same round."""
    return statistics.median(x / y for x, y in zip(a.rounds, b.rounds, strict=True))


def report(k: int, cs: dict[str, Contender]) -> None:
    """Print one K's table and ratios."""
    print(f"### K = {k} arms\n")
    print("| contender | us/step (median) | min - max | steps/round |")
    print("|---|---:|---:|---:|")
    for c in cs.values():
        lo, hi = min(c.rounds), max(c.rounds)
        med = statistics.median(c.rounds)
        print(f"| {c.name} | {med:.1f} | {lo:.1f} - {hi:.1f} | {c.steps} |")
    print()
    layer = statistics.median(
        x - y for x, y in zip(cs[BANDIT].rounds, cs[CORE_KL].rounds, strict=True)
    )
    bandit = statistics.median(cs[BANDIT].rounds)
    print(
        f"- Bandit layer's own cost (Bandit - KL-UCB core, same decisions): {layer:.1f} us/step, "
        f"{100 * layer / bandit:.0f}% of the Bandit's {bandit:.1f}"
    )
    if MAB not in cs:
        print("- MABWiser is not installed (pip install 'bandit-router[bench]'): no ratio.\n")
        return
    mab = cs[MAB]
    print(f"- MABWiser / Bandit default: **{ratio(mab, cs[BANDIT]):.1f}x** (goal >= 5x)")
    goal = " (goal >= 20x at K = 5)" if k == 5 else ""
    print(f"- MABWiser / UCB1 core: **{ratio(mab, cs[CORE_UCB1]):.1f}x**{goal}")
    print(f"- MABWiser / KL-UCB core: {ratio(mab, cs[CORE_KL]):.1f}x")
    for name, c in cs.items():
        if c.info and "hidden" not in name:
            hidden = cs.get(name.replace(" (info)", ", numpy hidden (info)"))
            if hidden is not None:
                print(
                    f"- {name.removesuffix(' (info)')}: pure Python / numpy {ratio(hidden, c):.2f}x"
                )
    print()


async def amain(ns: argparse.Namespace) -> None:
    """Run every K in turn and print its report."""
    ks = [int(x) for x in ns.arms.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, bandit-router {__version__}, "
        f"Python {sys.version.split()[0]} on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {'yes' if vector.np is not None else 'no'}, load average {load:.2f} at start; "
        f"median of {ns.rounds} interleaved rounds, ~{ns.seconds} s per contender per round, "
        f"warm-up {ns.warm} steps per arm, {ns.clock} time.\n"
    )
    for k in ks:
        report(k, await measure(k, ns.rounds, ns.seconds, ns.warm))
    if hasattr(os, "getloadavg"):
        print(f"load average {os.getloadavg()[0]:.2f} at the end")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--arms", default="5,100,1000", help="comma-separated K values")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.3, help="per contender per round")
    ap.add_argument("--warm", type=int, default=2, help="untimed warm-up steps per arm")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    ns = ap.parse_args(argv)
    global clock
    clock = CLOCKS[ns.clock]
    if ns.rounds < 1 or ns.seconds <= 0 or ns.warm < 1:
        ap.error("--rounds and --warm must be >= 1, --seconds > 0")
    asyncio.run(amain(ns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
