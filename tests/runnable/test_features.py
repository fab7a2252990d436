"""Context, context seeding, cost-aware rewards, shared learning of derived routers."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool

from bandit_router import BanditRouterRunnable, ConfigurationError
from bandit_router.rewards import Price, cost_aware
from bandit_router.testing import FakeArm, is_right

pytestmark = pytest.mark.anyio

# Arm quality per task: "coder" is best at code, "writer" at prose.
QUALITY = {"coder": {"code": 0.9, "prose": 0.3}, "writer": {"code": 0.3, "prose": 0.9}}


def task_arms(seed: int) -> dict[str, Any]:
    rng = random.Random(seed)

    def make(name: str) -> RunnableLambda[dict[str, str], str]:
        return RunnableLambda(
            lambda x: "right" if rng.random() < QUALITY[name][x["task"]] else "wrong"
        )

    return {name: make(name) for name in QUALITY}


async def test_context_key_keeps_separate_statistics_per_task() -> None:
    router = BanditRouterRunnable(
        arms=task_arms(1), reward=is_right, context_key=lambda x: x["task"], seed=1
    )
    last: dict[str, Counter[str]] = {"code": Counter(), "prose": Counter()}
    for i in range(1200):
        task = "code" if i % 2 else "prose"
        out = await router.ainvoke({"task": task})
        assert out in ("right", "wrong")
        if i >= 800:
            stats = await router.astatistics(task)
            last[task][max(stats, key=lambda a: stats[a].pulls)] += 1
    code, prose = await router.astatistics("code"), await router.astatistics("prose")
    assert code["coder"].pulls > 4 * code["writer"].pulls
    assert prose["writer"].pulls > 4 * prose["coder"].pulls
    glob = await router.astatistics()
    assert all(s.pulls == 0 for s in glob.values())  # no seeding asked: "" is untouched


async def test_a_new_context_can_start_from_the_global_statistics() -> None:
    seeded = BanditRouterRunnable(
        arms={"good": FakeArm(quality=0.9, seed=1), "bad": FakeArm(quality=0.2, seed=2)},
        reward=is_right,
        context_key=lambda x: x,
        context_prior_weight=20,
        seed=3,
    )
    for _ in range(200):
        await seeded.ainvoke("old")
    glob = await seeded.astatistics()
    assert sum(s.pulls for s in glob.values()) == 200  # mirrored into the global context
    first = [
        (await seeded.ainvoke(f"new-{i}")).response_metadata["bandit_router"]["arm"]
        for i in range(10)
    ]
    assert first == ["good"] * 10  # each new context starts from what "old" taught

    plain = BanditRouterRunnable(
        arms={"good": FakeArm(quality=0.9, seed=1), "bad": FakeArm(quality=0.2, seed=2)},
        reward=is_right,
        context_key=lambda x: x,
        seed=3,
    )
    for _ in range(200):
        await plain.ainvoke("old")
    stats = await plain.astatistics("new")
    assert all(s.mean is None for s in stats.values())  # independent: starts from zero


async def test_cost_aware_reward_prefers_the_cheaper_good_enough_arm() -> None:
    arms = {
        "premium": FakeArm(quality=0.95, seed=1, input_tokens=1000, output_tokens=500),
        "budget": FakeArm(quality=0.85, seed=2, input_tokens=1000, output_tokens=500),
    }
    prices = {"premium": Price(10.0, 30.0), "budget": Price(0.5, 1.5)}
    premium_cost = prices["premium"].cost({"input_tokens": 1000, "output_tokens": 500})
    assert premium_cost == pytest.approx(0.025)
    reward = cost_aware(is_right, prices=prices, lam=1.0, max_cost=premium_cost)
    # By quality alone "premium" wins; with cost at lam = 1 "budget" is far better.
    assert await reward(
        outputs="right", arm="premium", usage=arms["premium"]._message("x").usage_metadata
    ) == pytest.approx(0.5)
    router = BanditRouterRunnable(arms=arms, reward=reward, seed=0)
    chosen = [
        (await router.ainvoke("q")).response_metadata["bandit_router"]["arm"] for _ in range(600)
    ]
    assert Counter(chosen[-200:])["budget"] >= 180


def test_cost_aware_validates_its_arguments() -> None:
    with pytest.raises(ConfigurationError, match="max_cost"):
        cost_aware(is_right, lam=1.0)
    with pytest.raises(ConfigurationError, match="lam"):
        cost_aware(is_right, lam=-1.0, max_cost=1.0)
    with pytest.raises(ConfigurationError, match="max_latency_s"):
        cost_aware(is_right, lam=0.0, latency_weight=1.0)
    with pytest.raises(ConfigurationError, match="input_per_million"):
        Price(-1.0, 1.0)


async def test_latency_counts_when_asked() -> None:
    reward = cost_aware(is_right, lam=0.0, latency_weight=1.0, max_latency_s=2.0)
    assert await reward(outputs="right", latency_s=1.0) == pytest.approx(0.75)
    assert await reward(outputs="right", latency_s=9.0) == pytest.approx(0.5)


@tool
def lookup(city: str) -> str:
    """Look up the weather of a city."""
    return f"sunny in {city}"


async def test_bind_tools_and_structured_output_share_learning() -> None:
    router = BanditRouterRunnable(
        arms={"a": FakeArm(seed=1), "b": FakeArm(seed=2)}, reward=is_right, seed=0
    )
    bound = router.bind_tools([lookup])
    for _ in range(10):
        await bound.ainvoke("weather?")
    await router.ainvoke("plain")
    stats = await router.astatistics()
    assert sum(s.pulls for s in stats.values()) == 11
    assert await bound.astatistics() == stats


def test_retry_if_accepts_exception_types() -> None:
    arms = {"a": FakeArm(fail_first=1, error=KeyError)}
    router = BanditRouterRunnable(
        arms=arms, reward=is_right, retry_if=(KeyError,), retry_initial_wait=0.0
    )
    assert router.invoke("q").content == "right"
    assert arms["a"].calls == 2
    # Type errors in fields are pydantic's ValidationError: a ValueError naming the field.
    with pytest.raises(ValueError, match="retry_if"):
        BanditRouterRunnable(arms=arms, retry_if=("nope",))  # type: ignore[arg-type]
