"""Pseudo-regret of the policies on a seeded Bernoulli bandit, stationary and with a change.

Every run goes through the real sans-I/O core (``bandit_router.testing.simulate``: the
engine's ``select`` and the statistics' ``apply``, as a store would call them).

* stationary: arms with means 0.9, 0.8, 0.7, 0.6, 0.5 for T = 10,000 steps;
* abrupt change: the same, but the best arm drops to 0.4 at t = 5,000; the regret is
  dynamic (against the best arm at each step).

Mean and standard deviation over 20 seeds. Usage::

    python benchmarks/regret.py [--seeds 20] [--horizon 10000] [--jobs 2] [--only ucb1,thompson]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from bandit_router.policies import KLUCB, UCB1, Policy, ThompsonSampling, UCBTuned
from bandit_router.testing import simulate

MEANS = (0.9, 0.8, 0.7, 0.6, 0.5)
AFTER = (0.4, 0.8, 0.7, 0.6, 0.5)
DECAYS = (None, 0.99, 0.995, 0.998, 0.999)


@dataclass(frozen=True)
class Setting:
    label: str
    make: Callable[[], Policy]
    decay: float | None


def _ucb1() -> Policy:
    return UCB1()


def _ucb1_c(c: float) -> Callable[[], Policy]:
    return lambda: UCB1(c=c)


def _klucb_log() -> Policy:
    return KLUCB(rate="log")


def settings() -> list[Setting]:
    return [
        *(Setting("UCB1(c=2)", _ucb1, d) for d in DECAYS),
        *(Setting(f"UCB1(c={c:g})", _ucb1_c(c), d) for c in (0.5, 0.25, 0.1) for d in DECAYS),
        *(Setting("UCB-Tuned", UCBTuned, d) for d in (None, 0.999)),
        *(Setting('KLUCB("anytime")', KLUCB, d) for d in DECAYS),
        *(Setting('KLUCB("log")', _klucb_log, d) for d in (None, 0.998, 0.999)),
        *(Setting("Thompson", ThompsonSampling, d) for d in DECAYS),
    ]


def _run(args: tuple[int, int, int, int]) -> tuple[int, float, float, float]:
    """Run one setting on one seed; return (setting, stationary, change, seconds)."""
    index, seed, horizon, change_at = args
    s = settings()[index]
    t0 = time.perf_counter()
    flat = simulate(s.make(), MEANS, horizon, seed=seed, decay=s.decay)
    moved = simulate(s.make(), MEANS, horizon, seed=seed, decay=s.decay, change=(change_at, AFTER))
    return index, flat, moved, time.perf_counter() - t0


def _fmt(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.fmean(xs):7.1f} ± {sd:5.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--horizon", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", default="", help="comma-separated substrings of policy labels")
    ns = ap.parse_args(argv)
    all_settings = settings()
    wanted = [w.strip().lower() for w in ns.only.split(",") if w.strip()]
    chosen = [
        i
        for i, s in enumerate(all_settings)
        if not wanted or any(w in s.label.lower() for w in wanted)
    ]
    change_at = ns.horizon // 2
    jobs = [(i, seed, ns.horizon, change_at) for i in chosen for seed in range(ns.seeds)]
    flat: dict[int, list[float]] = {i: [] for i in chosen}
    moved: dict[int, list[float]] = {i: [] for i in chosen}
    spent: dict[int, float] = dict.fromkeys(chosen, 0.0)
    t0 = time.perf_counter()
    if ns.jobs > 1:
        with ProcessPoolExecutor(max_workers=ns.jobs) as pool:
            results = list(pool.map(_run, jobs, chunksize=1))
    else:
        results = [_run(j) for j in jobs]
    for i, a, b, sec in results:
        flat[i].append(a)
        moved[i].append(b)
        spent[i] += sec
    wall = time.perf_counter() - t0

    baseline = next(
        (
            i
            for i in chosen
            if all_settings[i].label == "UCB1(c=2)" and all_settings[i].decay is None
        ),
        None,
    )
    base_moved = statistics.fmean(moved[baseline]) if baseline is not None else math.nan
    print(
        f"Bernoulli arms {list(MEANS)}, T = {ns.horizon:,}, {ns.seeds} seeds; change: best arm "
        f"-> {AFTER[0]} at t = {change_at:,} (dynamic regret). Mean ± std of pseudo-regret."
    )
    print()
    print(
        "| policy | decay | stationary regret | change: dynamic regret "
        "| vs stationary UCB1 on change | us/step |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for i in chosen:
        s = all_settings[i]
        gain = base_moved / statistics.fmean(moved[i])
        us = spent[i] / (2 * ns.horizon * ns.seeds) * 1e6
        print(
            f"| {s.label} | {s.decay if s.decay is not None else '-'} | {_fmt(flat[i])} "
            f"| {_fmt(moved[i])} | {gain:.2f}x | {us:.1f} |"
        )
    print()
    print(f"({wall:.0f} s wall clock, {ns.jobs} process(es), Python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
