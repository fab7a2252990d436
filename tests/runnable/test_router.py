"""BanditRouterRunnable end to end over fake arms of known quality."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage

from bandit_router import (
    BanditRouterRunnable,
    InvalidRewardError,
    UnknownDecisionError,
)
from bandit_router.policies import KLUCB, UCB1, ThompsonSampling, UCBTuned
from bandit_router.testing import FakeArm, is_right

pytestmark = pytest.mark.anyio

QUALITY = {"good": 0.9, "fair": 0.7, "poor": 0.5}


def arms(seed: int = 0, **overrides: dict[str, Any]) -> dict[str, FakeArm]:
    out = {}
    for i, (name, q) in enumerate(QUALITY.items()):
        out[name] = FakeArm(quality=q, seed=seed * 10 + i, model=name, **overrides.get(name, {}))
    return out


POLICIES = [KLUCB(), KLUCB(rate="log"), UCB1(), UCBTuned(), ThompsonSampling()]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
async def test_inline_rewards_converge_to_the_best_arm(policy: Any) -> None:
    router = BanditRouterRunnable(arms=arms(1), policy=policy, reward=is_right, seed=1)
    chosen = []
    for _ in range(2000):
        out = await router.ainvoke("question")
        chosen.append(out.response_metadata["bandit_router"]["arm"])
    share = Counter(chosen[-500:])["good"] / 500
    assert share >= 0.9, (policy.name, Counter(chosen[-500:]))
    stats = await router.astatistics()
    assert sum(s.pulls for s in stats.values()) == 2000
    assert all(s.in_flight == 0 for s in stats.values())


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
async def test_delayed_feedback_out_of_order_and_late_converges(policy: Any) -> None:
    router = BanditRouterRunnable(arms=arms(2), policy=policy, seed=2)
    rng = random.Random(3)
    waiting: list[tuple[str, bool]] = []
    chosen = []
    for _ in range(2000):
        run_id = uuid.uuid4()
        out = await router.ainvoke("question", config={"run_id": run_id})
        assert out.response_metadata["bandit_router"]["decision_id"] == str(run_id)
        chosen.append(out.response_metadata["bandit_router"]["arm"])
        waiting.append((str(run_id), is_right(out)))
        # Feedback arrives late (up to ~20 calls later) and out of order.
        if len(waiting) > 20 or rng.random() < 0.3:
            rng.shuffle(waiting)
            for _ in range(rng.randint(1, len(waiting))):
                rid, ok = waiting.pop()
                await router.arecord_feedback(rid, {"score": ok})
    for rid, ok in waiting:
        await router.arecord_feedback(rid, ok)
    assert Counter(chosen[-500:])["good"] / 500 >= 0.9, (policy.name, Counter(chosen[-500:]))
    stats = await router.astatistics()
    assert sum(s.pulls for s in stats.values()) == 2000
    assert sum(s.in_flight for s in stats.values()) == 0


async def test_feedback_errors_name_the_problem_and_change_nothing() -> None:
    router = BanditRouterRunnable(arms=arms(), seed=0)
    out = await router.ainvoke("q")
    did = out.response_metadata["bandit_router"]["decision_id"]
    before = await router.astatistics()
    for bad in (float("nan"), 1.5, -0.1, "high", None):
        with pytest.raises(InvalidRewardError):
            await router.arecord_feedback(did, bad)
    assert await router.astatistics() == before
    with pytest.raises(UnknownDecisionError, match="never issued"):
        await router.arecord_feedback(uuid.uuid4(), 1.0)
    await router.arecord_feedback(did, 1.0)
    with pytest.raises(UnknownDecisionError, match="already settled"):
        await router.arecord_feedback(did, 1.0)
    router.record_feedback  # the sync face exists  # noqa: B018


class Recorder(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.runs: dict[uuid.UUID, dict[str, Any]] = {}

    async def on_chain_start(
        self,
        serialized: Any,
        inputs: Any,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.runs[run_id] = {
            "kind": "chain",
            "parent": parent_run_id,
            "tags": tags or [],
            "name": kwargs.get("name"),
        }

    async def on_chat_model_start(
        self,
        serialized: Any,
        messages: Any,
        *,
        run_id: uuid.UUID,
        parent_run_id: uuid.UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.runs[run_id] = {
            "kind": "chat",
            "parent": parent_run_id,
            "tags": tags or [],
            "name": kwargs.get("name"),
        }


async def test_trace_shape_child_runs_tags_and_run_id() -> None:
    flaky = {"good": {"fail_first": 1, "error": ConnectionError}}
    router = BanditRouterRunnable(
        arms=arms(0, **flaky), seed=0, retry_initial_wait=0, retry_max_wait=0, max_attempts=3
    )
    rec = Recorder()
    run_id = uuid.uuid4()
    out = await router.ainvoke(
        "q",
        config={
            "run_id": run_id,
            "callbacks": [rec],
            "tags": ["mine"],
            "configurable": {router.arm_key: "good"},
        },
    )
    assert isinstance(out, AIMessage)
    assert rec.runs[run_id]["kind"] == "chain"
    assert rec.runs[run_id]["parent"] is None
    assert rec.runs[run_id]["name"] == "bandit_router"
    children = [r for r in rec.runs.values() if r["parent"] == run_id]
    assert len(children) == 2, rec.runs
    assert all(c["kind"] == "chat" for c in children)
    assert all("bandit_router:arm:good" in c["tags"] and "mine" in c["tags"] for c in children)
    assert sorted(t for c in children for t in c["tags"] if t.startswith("retry:")) == [
        "retry:attempt:1",
        "retry:attempt:2",
    ]
    stats = await router.astatistics()
    assert (stats["good"].pulls, stats["good"].failures) == (0, 1)
    assert out.response_metadata["bandit_router"] == {"arm": "good", "decision_id": str(run_id)}


async def test_pinned_arm_and_unknown_pin() -> None:
    router = BanditRouterRunnable(arms=arms(), reward=is_right, seed=0)
    for _ in range(5):
        out = await router.ainvoke("q", config={"configurable": {router.arm_key: "poor"}})
        assert out.response_metadata["bandit_router"]["arm"] == "poor"
    with pytest.raises(ValueError, match="'nope'"):
        await router.ainvoke("q", config={"configurable": {router.arm_key: "nope"}})
    stats = await router.astatistics()
    assert sum(s.in_flight for s in stats.values()) == 0
