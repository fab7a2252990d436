"""langsmith_reward: LangSmith-style and openevals evaluators as the router's reward.

This folder has no ``__init__.py`` on purpose: a package named ``langsmith`` would hide the
real one.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

pytest.importorskip("bandit_router_langsmith")

from bandit_router_langsmith import (
    REFERENCE_KEY,
    LangSmithFeedback,
    LangSmithReward,
    langsmith_reward,
    message_text,
)
from bandit_router_langsmith.testing import RecordingClient
from langchain_core.messages import AIMessage
from langsmith.evaluation.evaluator import EvaluationResult, EvaluationResults, RunEvaluator
from langsmith.schemas import Example, Run

from bandit_router import BanditRouterRunnable, ConfigurationError, InvalidRewardError
from bandit_router.testing import FakeArm

HAS_OPENEVALS = importlib.util.find_spec("openevals") is not None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def call(reward: LangSmithReward, outputs: Any = "right", **kw: Any) -> float:
    kw.setdefault("inputs", "question?")
    kw.setdefault("run_id", str(uuid.uuid4()))
    kw.setdefault("arm", "a")
    kw.setdefault("metadata", {})
    return await reward(outputs=outputs, **kw)


# --- the shapes of evaluators LangSmith accepts ----------------------------------------------


@pytest.mark.anyio
async def test_run_example_evaluator_sees_langsmith_objects() -> None:
    seen: dict[str, Any] = {}

    def correct(run: Run, example: Example) -> bool:
        seen["run"], seen["example"] = run, example
        assert run.outputs is not None
        assert example.outputs is not None
        return bool(run.outputs["output"] == example.outputs["output"])

    reward = langsmith_reward(correct, reference="right")
    rid = str(uuid.uuid4())
    assert await call(reward, AIMessage("right"), run_id=rid, inputs={"q": "x"}) == 1.0
    assert await call(reward, AIMessage("wrong")) == 0.0
    run, example = seen["run"], seen["example"]
    assert isinstance(run, Run)
    assert isinstance(example, Example)
    assert run.inputs == {"input": "question?"}  # the second call's non-dict input, wrapped
    assert run.outputs == {"output": "wrong"}  # the message reduced to its text
    assert example.outputs == {"output": "right"}
    assert "bandit_router:arm:a" in (run.tags or [])


@pytest.mark.anyio
async def test_inputs_outputs_reference_outputs_evaluator_returning_a_dict() -> None:
    def graded(
        inputs: dict[str, Any], outputs: dict[str, Any], reference_outputs: dict[str, Any]
    ) -> dict[str, Any]:
        assert inputs == {"question": "2+2?"}  # a mapping input stays as it is
        ok = outputs["output"] == reference_outputs["answer"]
        return {"key": "correct", "score": 1.0 if ok else 0.25, "comment": "graded"}

    reward = langsmith_reward(graded, reference=lambda q: {"answer": "4"})
    assert await call(reward, AIMessage("4"), inputs={"question": "2+2?"}) == 1.0
    assert await call(reward, AIMessage("5"), inputs={"question": "2+2?"}) == 0.25


@pytest.mark.anyio
async def test_outputs_only_evaluator_returning_a_number_or_evaluation_result() -> None:
    def length_ok(outputs: dict[str, Any]) -> float:
        return 0.5 if len(outputs["output"]) > 3 else 1.0

    def as_result(outputs: dict[str, Any]) -> EvaluationResult:
        return EvaluationResult(key="polite", score=outputs["output"] == "right")

    assert await call(langsmith_reward(length_ok), "right") == 0.5
    assert await call(langsmith_reward(length_ok), "ok") == 1.0
    assert await call(langsmith_reward(as_result), "right") == 1.0
    assert await call(langsmith_reward(as_result), "nope") == 0.0


@pytest.mark.anyio
async def test_async_evaluator() -> None:
    async def judge(outputs: dict[str, Any], reference_outputs: dict[str, Any]) -> bool:
        return bool(outputs == reference_outputs)

    reward = langsmith_reward(judge, reference="right")
    assert await call(reward, "right") == 1.0
    assert await call(reward, "wrong") == 0.0


@pytest.mark.anyio
async def test_evaluation_results_need_a_key_to_choose_the_reward() -> None:
    def several(outputs: dict[str, Any]) -> EvaluationResults:
        return EvaluationResults(
            results=[
                EvaluationResult(key="correct", score=1.0),
                EvaluationResult(key="concise", score=0.2),
            ]
        )

    assert await call(langsmith_reward(several, key="concise")) == 0.2
    assert await call(langsmith_reward(several, key="correct")) == 1.0
    with pytest.raises(InvalidRewardError, match=r"2 results \(\['correct', 'concise'\]\).*key="):
        await call(langsmith_reward(several))
    with pytest.raises(InvalidRewardError, match="no result with key 'helpful'"):
        await call(langsmith_reward(several, key="helpful"))


@pytest.mark.anyio
async def test_a_list_of_dicts_is_several_results() -> None:
    def listed(outputs: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"key": "a", "score": 0.3}, {"key": "b", "score": 0.9}]

    assert await call(langsmith_reward(listed, key="b")) == 0.9


@pytest.mark.anyio
async def test_scale_maps_a_five_point_judge_onto_unit_interval() -> None:
    def stars(outputs: dict[str, Any]) -> dict[str, Any]:
        return {"key": "stars", "score": 4}

    assert await call(langsmith_reward(stars, scale=(1, 5))) == 0.75
    with pytest.raises(InvalidRewardError, match="must lie in"):
        await call(langsmith_reward(stars))  # 4 is outside [0, 1] without scale


@pytest.mark.anyio
async def test_categorical_value_without_score_is_refused() -> None:
    def label(outputs: dict[str, Any]) -> str:
        return "good"  # LangSmith turns a string into a categorical value

    with pytest.raises(InvalidRewardError, match="no numeric score"):
        await call(langsmith_reward(label))


@pytest.mark.anyio
async def test_run_evaluator_instance() -> None:
    class Contains(RunEvaluator):
        def evaluate_run(
            self, run: Run, example: Example | None = None, evaluator_run_id: Any = None
        ) -> EvaluationResult:
            text = (run.outputs or {}).get("output", "")
            return EvaluationResult(key="contains", score="ri" in text)

    reward = langsmith_reward(Contains())
    assert await call(reward, "right") == 1.0
    assert await call(reward, "wrong") == 0.0
    assert reward.__name__ == "Contains"


# --- references -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_reference_from_call_metadata() -> None:
    def same(outputs: dict[str, Any], reference_outputs: dict[str, Any]) -> bool:
        return bool(outputs["output"] == reference_outputs["output"])

    reward = langsmith_reward(same)
    assert await call(reward, "4", metadata={REFERENCE_KEY: "4"}) == 1.0
    assert await call(reward, "4", metadata={REFERENCE_KEY: "5"}) == 0.0


@pytest.mark.anyio
async def test_missing_reference_is_a_clear_error() -> None:
    def same(outputs: dict[str, Any], reference_outputs: dict[str, Any]) -> bool:
        return bool(outputs == reference_outputs)

    with pytest.raises(ValueError, match=r"needs reference outputs.*reference="):
        await call(langsmith_reward(same), "4")


def test_prepare_outputs_none_passes_the_answer_unchanged() -> None:
    reward = langsmith_reward(lambda outputs: 1.0, prepare_outputs=None)
    msg = AIMessage("hi")
    run, _ = reward.build(inputs="q", outputs=msg)
    assert run.outputs == {"output": msg}
    assert message_text(AIMessage(content=[{"type": "text", "text": "a"}, "b"])) == "ab"
    assert message_text(7) == 7


# --- configuration errors ---------------------------------------------------------------------


def test_configuration_errors_name_the_problem() -> None:
    def three(a: int, b: int, c: int) -> float:
        return 1.0

    with pytest.raises(ConfigurationError, match="not a LangSmith evaluator"):
        langsmith_reward(three)
    with pytest.raises(ConfigurationError, match="RunEvaluator or a callable"):
        langsmith_reward(42)
    with pytest.raises(ConfigurationError, match="scale"):
        langsmith_reward(lambda outputs: 1.0, scale=(5, 1))
    with pytest.raises(ConfigurationError, match="key"):
        langsmith_reward(lambda outputs: 1.0, key="")
    with pytest.raises(ConfigurationError, match="name"):
        langsmith_reward(lambda outputs: 1.0, name="")
    assert langsmith_reward(lambda outputs: 1.0, name="judge").__name__ == "judge"
    with pytest.raises(ConfigurationError, match="feedback"):
        langsmith_reward(lambda outputs: 1.0, feedback=object())  # type: ignore[arg-type]


# --- through the router -----------------------------------------------------------------------


def two_arms() -> dict[str, FakeArm]:
    return {"weak": FakeArm(quality=0.2, seed=1), "strong": FakeArm(quality=0.9, seed=2)}


def test_router_learns_from_a_langsmith_evaluator_and_forwards_feedback() -> None:
    def correct(outputs: Mapping[str, Any], reference_outputs: Mapping[str, Any]) -> bool:
        return bool(outputs["output"] == reference_outputs["output"])

    client = RecordingClient(projects={"default": uuid.uuid4()})
    feedback = LangSmithFeedback(client)
    router = BanditRouterRunnable(
        arms=two_arms(),
        reward=langsmith_reward(correct, reference="right", feedback=feedback),
        seed=3,
    )
    ids = []
    for _ in range(60):
        answer = router.invoke("question?")
        ids.append(answer.response_metadata["bandit_router"]["decision_id"])
        # The evaluator scores each answer after it is returned; in a loop this tight (fake
        # arms answer in microseconds) wait for it, as real model latency would.
        router.close()
    assert feedback.flush(10)
    stats = router.statistics()
    assert stats["strong"].pulls > stats["weak"].pulls
    assert sum(s.pulls for s in stats.values()) == 60
    assert router.evaluator_errors == {}
    # One feedback record per call, on the router's run id, with the evaluator's key.
    assert [f["run_id"] for f in client.feedback] == ids
    assert {f["key"] for f in client.feedback} == {"correct"}
    assert {f["feedback_source"]["type"] for f in client.feedback} == {"model"}
    arms = [f["feedback_source"]["metadata"]["bandit_router"]["arm"] for f in client.feedback]
    assert arms.count("strong") == stats["strong"].pulls
    assert feedback.sent == 60
    assert feedback.failed == 0
    feedback.close()


def test_router_counts_an_evaluator_error_and_keeps_serving() -> None:
    def same(outputs: dict[str, Any], reference_outputs: dict[str, Any]) -> bool:
        return bool(outputs == reference_outputs)

    router = BanditRouterRunnable(arms=two_arms(), reward=langsmith_reward(same), seed=1)
    answer = router.invoke("no reference given")
    assert answer.content in ("right", "wrong")
    router.close()
    assert sum(router.evaluator_errors.values()) == 1
    assert sum(s.pulls for s in router.statistics().values()) == 0


@pytest.mark.skipif(not HAS_OPENEVALS, reason="openevals is not installed")
def test_router_with_a_real_openevals_evaluator() -> None:
    from openevals import exact_match

    client = RecordingClient(projects={"default": uuid.uuid4()})
    with LangSmithFeedback(client) as feedback:
        router = BanditRouterRunnable(
            arms=two_arms(),
            reward=langsmith_reward(exact_match, reference="right", feedback=feedback),
            seed=5,
        )
        for _ in range(40):
            router.invoke("question?")
            router.close()  # scored before the next call (the fake arms take no time)
        feedback.flush(10)
    stats = router.statistics()
    assert stats["strong"].pulls > stats["weak"].pulls
    right = sum(s.reward_sum for s in stats.values())
    assert right == sum(1 for f in client.feedback if f["score"] is True)
    assert {f["key"] for f in client.feedback} == {"exact_match"}
    assert len(client.feedback) == 40


@pytest.mark.skipif(not HAS_OPENEVALS, reason="openevals is not installed")
@pytest.mark.anyio
async def test_async_openevals_evaluator_and_ainvoke() -> None:
    from openevals import exact_match_async

    router = BanditRouterRunnable(
        arms=two_arms(), reward=langsmith_reward(exact_match_async, reference="right"), seed=2
    )
    for _ in range(10):
        await router.ainvoke("question?")
    await router.aclose()
    stats = await router.astatistics()
    assert sum(s.pulls for s in stats.values()) == 10
