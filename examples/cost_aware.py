"""Cost-aware routing: prefer the cheap model when it is good enough for the price.

Two fake chat models (no API needed) stand in for a small and a large LLM. The large one is
right more often (0.90 against 0.78) but costs about 17 times more per call. Two routers
see the same traffic:

* one rewards quality alone: it learns to send nearly everything to the large model;
* one rewards quality minus cost (``rewards.cost_aware`` with per-arm ``Price``s): with
  ``lam=0.5`` and ``max_cost`` set to the large model's typical call, a right answer from
  the large model is worth 0.5 less than one that cost nothing, so the small model wins.

The cost of each call is its token usage (``usage_metadata``) times the arm's price, known
exactly; only quality has to be learned (docs/router.md, "Cost- and latency-aware rewards").

Run:  python examples/cost_aware.py [--calls 400] [--lam 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter

from bandit_router import BanditRouterRunnable
from bandit_router.rewards import Price, cost_aware
from bandit_router.testing import FakeArm, is_right

# USD per million tokens (input, output), like a provider's price list.
PRICES = {"small-model": Price(0.15, 0.60), "large-model": Price(2.50, 10.00)}
QUALITY = {"small-model": 0.78, "large-model": 0.90}
TOKENS_IN, TOKENS_OUT = 800, 400  # what every call of this fake workload uses


def arms() -> dict[str, FakeArm]:
    return {
        name: FakeArm(
            model=name,
            quality=QUALITY[name],
            input_tokens=TOKENS_IN,
            output_tokens=TOKENS_OUT,
            seed=i,
        )
        for i, name in enumerate(QUALITY)
    }


def cost_of(arm: str) -> float:
    return PRICES[arm].cost({"input_tokens": TOKENS_IN, "output_tokens": TOKENS_OUT})


async def serve(router: BanditRouterRunnable, calls: int) -> Counter[str]:
    served: Counter[str] = Counter()
    for _ in range(calls):
        answer = await router.ainvoke("Summarise this support ticket.")
        served[answer.response_metadata["bandit_router"]["arm"]] += 1
    return served


async def main(calls: int, lam: float) -> None:
    max_cost = cost_of("large-model")  # a large model's call weighs one unit of cost
    quality_only = BanditRouterRunnable(arms=arms(), reward=is_right, seed=1)
    priced = BanditRouterRunnable(
        arms=arms(),
        reward=cost_aware(is_right, prices=PRICES, lam=lam, max_cost=max_cost),
        seed=1,
    )
    for label, router in (("quality only", quality_only), (f"cost-aware, lam={lam}", priced)):
        served = await serve(router, calls)
        spend = sum(cost_of(arm) * n for arm, n in served.items())
        best = served.most_common(1)[0][0]
        print(f"{label}:")
        for arm in QUALITY:
            print(f"  {arm:12s} served {served[arm]:4d} calls  (${cost_of(arm):.5f} per call)")
        print(f"  total spend ${spend:.3f} for {calls} calls; mostly {best!r}\n")
    served_priced = await serve(priced, 100)  # what it does now that it has learned
    print(f"With prices, the router serves {served_priced.most_common(1)[0][0]!r} now.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per router")
    parser.add_argument("--lam", type=float, default=0.5, help="weight of cost against quality")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.lam))
