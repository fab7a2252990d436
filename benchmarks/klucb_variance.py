"""Bernoulli ``KLUCB(variance=False)`` against the default, variance-adaptive ``KLUCB()``.

The replay settings and synthetic non-Bernoulli arms.

Every replay goes through the Bandit engine (``path="engine"``: the same choices as the
router, decision for decision). Orders: seeds 0-9 (the acceptance figures) and 10-19 (a check
against fitting the first ten). Synthetic: 5 arms of means 0.9 ... 0.5, horizon 5,000, 10
seeds, rewards Bernoulli, "half-band" (0.5 + 0.5 Bernoulli) or Beta(20 m, 20 (1 - m)).

Usage::

    python benchmarks/klucb_variance.py            # about 3 minutes on 2 cores
    python benchmarks/klucb_variance.py --synthetic-only
"""

from __future__ import annotations

import argparse
from pathlib import Path
from random import Random
from typing import Any

import numpy as np

from bandit_router.policies import KLUCB
from bandit_router.replay import OutcomeTable, load_dataset, replay

FRUGAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "frugalgpt_overruling"
MEANS = (0.9, 0.8, 0.7, 0.6, 0.5)


def replay_rows() -> None:
    rb = load_dataset("routerbench")
    sets: list[tuple[str, OutcomeTable, dict[str, Any]]] = [
        ("RouterBench lam=0", rb, {"lam": 0.0}),
        ("RouterBench lam=1", rb, {"lam": 1.0}),
        ("RouterBench lam=1, prices known", rb, {"lam": 1.0, "prices": True}),
        ("RouterBench lam=1, prices + context", rb, {"lam": 1.0, "prices": True, "context": True}),
        ("RouterBench lam=1, context", rb, {"lam": 1.0, "context": True}),
        ("RouterBench blocked lam=0", rb, {"lam": 0.0, "order": "blocked"}),
        (
            "RouterBench blocked lam=0, decay=0.999",
            rb,
            {"lam": 0.0, "order": "blocked", "decay": 0.999},
        ),
        ("RouterBench blocked lam=1", rb, {"lam": 1.0, "order": "blocked"}),
        (
            "RouterBench blocked lam=1, decay=0.999",
            rb,
            {"lam": 1.0, "order": "blocked", "decay": 0.999},
        ),
        (
            "RouterBench blocked lam=1, decay=0.9998",
            rb,
            {"lam": 1.0, "order": "blocked", "decay": 0.9998},
        ),
    ]
    if (FRUGAL / "overruling.csv").exists():
        fg = load_dataset(FRUGAL / "overruling.csv")
        sets += [
            ("FrugalGPT lam=0", fg, {"lam": 0.0}),
            ("FrugalGPT lam=1", fg, {"lam": 1.0}),
            ("FrugalGPT lam=1, prices known", fg, {"lam": 1.0, "prices": True}),
        ]
    print("| setting | seeds | KLUCB(variance=False) | KLUCB() |\n|---|---|---:|---:|")
    for title, table, kw in sets:
        for seeds in (range(10), range(10, 20)):
            cells = []
            for policy in (KLUCB(variance=False), KLUCB()):
                report = replay(table, [policy], seeds=list(seeds), path="engine", **kw)
                line = report.lines(baselines=False)[0]
                cells.append(f"{line.pct_best:.2f} +- {line.pct_best_std:.2f}")
            print(
                f"| {title} | {seeds.start}-{seeds.stop - 1} | {cells[0]} | {cells[1]} |",
                flush=True,
            )


def _draw(kind: str, m: float, rng: np.random.Generator) -> float:
    if kind == "half-band":
        return 0.5 + 0.5 * float(rng.random() < m)
    if kind == "beta":
        return float(rng.beta(20 * m, 20 * (1 - m)))
    return float(rng.random() < m)


def synthetic_rows(horizon: int = 5000, seeds: int = 10) -> None:
    print("\n| rewards | policy | regret at 5,000 (+- std) |\n|---|---|---:|")
    for kind in ("bernoulli", "half-band", "beta"):
        means = [0.5 + 0.5 * m if kind == "half-band" else m for m in MEANS]
        for policy in (KLUCB(variance=False), KLUCB()):
            regrets = []
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                k = len(MEANS)
                n, s, q = [0.0] * k, [0.0] * k, [0.0] * k
                regret = 0.0
                for _ in range(horizon):
                    if 0.0 in n:
                        a = n.index(0.0)
                    else:
                        idx = policy.indices(n, s, q, sum(n), Random(0))
                        a = max(range(k), key=idx.__getitem__)
                    r = _draw(kind, MEANS[a], rng)
                    n[a] += 1.0
                    s[a] += r
                    q[a] += r * r
                    regret += max(means) - means[a]
                regrets.append(regret)
            print(f"| {kind} | {policy.name} | {np.mean(regrets):.1f} +- {np.std(regrets):.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--synthetic-only", action="store_true")
    a = ap.parse_args()
    if not a.synthetic_only:
        replay_rows()
    synthetic_rows()


if __name__ == "__main__":
    main()
