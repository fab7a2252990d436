"""The router with real ``ChatOpenAI`` arms over real sockets (the local OpenAI-compatible server).

What fakes never show: clients with connection pools bound to event loops, their own retries,
``Retry-After``, streams that stall, answers without usage. Every wait is bounded; timing
assertions are generous upper bounds (a busy machine cannot fail them) or lower bounds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("langchain_openai")

import anyio
import openai
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from pydantic import BaseModel

from bandit_router import (
    AllArmsFailedError,
    BanditRouterRunnable,
    ChatBanditRouter,
    Prior,
)
from bandit_router.rewards import Price, cost_aware
from tests.support.fixtures import chat_openai
from tests.support.openai_server import (
    Answer,
    Hang,
    OpenAIServer,
    RateLimited,
    ServerError,
    StallAfter,
    ToolCall,
)

pytestmark = pytest.mark.anyio

BOUND = 10.0
FAST: dict[str, Any] = {"retry_initial_wait": 0.0, "retry_max_wait": 0.01}


def good(outputs: Any) -> bool:
    return "good" in str(getattr(outputs, "content", outputs))


def two_arms(server: OpenAIServer, **kwargs: Any) -> dict[str, Any]:
    return {
        "good": chat_openai(server, "good", **kwargs),
        "poor": chat_openai(server, "poor", **kwargs),
    }


def failures(router: Any) -> int:
    return sum(s.failures for s in router.statistics().values())


@pytest.mark.parametrize("face", [BanditRouterRunnable, ChatBanditRouter])
def test_sync_and_async_faces_mix_on_one_router(openai_server: OpenAIServer, face: Any) -> None:
    router = face(arms=two_arms(openai_server), reward=good, seed=1, **FAST)
    question = [HumanMessage("hello")]
    assert router.invoke(question).content.startswith("Answer from")

    async def async_faces() -> list[Any]:
        out = [await router.ainvoke(question)]
        out.append([c async for c in router.astream(question)])
        out.extend(await router.abatch([question, question]))
        await router.aclose()
        return out

    answers = asyncio.run(async_faces())
    assert all(a for a in answers)
    assert router.invoke(question).content.startswith("Answer from")
    assert "".join(str(c.content) for c in router.stream(question)).startswith("Answer from")
    assert len(router.batch([question, question, question])) == 3
    router.close()
    stats = router.statistics()
    assert sum(s.pulls for s in stats.values()) == 10
    assert failures(router) == 0
    assert sum(s.in_flight for s in stats.values()) == 0


def test_the_sync_face_uses_the_sync_client(openai_server: OpenAIServer) -> None:
    # A sync call from inside a running loop's thread would have deadlocked a router that ran
    # its arms on a private loop; the arms' own sync methods need no loop at all.
    router = BanditRouterRunnable(arms=two_arms(openai_server), seed=2)

    async def from_a_coroutine() -> Any:
        return router.invoke("hello")

    assert asyncio.run(from_a_coroutine()).content.startswith("Answer from")
    assert router.invoke("hello").content.startswith("Answer from")
    assert failures(router) == 0


def test_persistent_429_is_capacity_not_quality(openai_server: OpenAIServer) -> None:
    openai_server.script("limited", RateLimited(retry_after=3.0))
    openai_server.script("good", Answer(text="good answer"))
    arms = {
        # Default client settings: the SDK's own max_retries=2 would triple the requests.
        "limited": chat_openai(openai_server, "limited"),
        "good": chat_openai(openai_server, "good"),
    }
    router = BanditRouterRunnable(
        arms=arms,
        priors={"limited": Prior(mean=0.9, weight=5), "good": Prior(mean=0.5, weight=5)},
        max_attempts=3,
        **FAST,
    )
    t0 = time.monotonic()
    first = router.invoke("hello")
    assert first.response_metadata["bandit_router"]["arm"] == "good"
    assert len(openai_server.requests("limited")) == 1  # <= max_attempts (3): one, no retry
    assert time.monotonic() - t0 < 2.5  # fell back at once, did not wait out Retry-After
    for _ in range(5):  # on cooldown: skipped, although its prior is the better
        out = router.invoke("hello")
        assert out.response_metadata["bandit_router"]["arm"] == "good"
    assert len(openai_server.requests("limited")) == 1
    limited = router.statistics()["limited"]
    assert limited.failures == 1  # counted ...
    assert limited.mean == pytest.approx(0.9)  # ... but not learned as a bad answer
    assert limited.pulls == 0


async def test_a_rate_limited_arm_with_nowhere_to_go_waits_out_retry_after(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script("only", [RateLimited(retry_after=0.3), Answer(text="finally")])
    router = BanditRouterRunnable(
        arms={"only": chat_openai(openai_server, "only")}, max_attempts=3, retry_max_wait=1.0
    )
    t0 = time.monotonic()
    out = await router.ainvoke("hello")
    assert out.content == "finally"
    assert time.monotonic() - t0 >= 0.3  # honoured Retry-After
    assert len(openai_server.requests("only")) == 2


async def test_a_server_error_is_retried_by_the_router_alone(openai_server: OpenAIServer) -> None:
    openai_server.script("broken", ServerError(500))
    openai_server.script("good", Answer(text="good"))
    router = BanditRouterRunnable(
        arms={
            "broken": chat_openai(openai_server, "broken"),
            "good": chat_openai(openai_server, "good"),
        },
        priors={"broken": Prior(mean=0.9, weight=5), "good": Prior(mean=0.5, weight=5)},
        max_attempts=3,
        **FAST,
    )
    out = await router.ainvoke("hello")
    assert out.content == "good"
    requests = openai_server.requests("broken")
    assert len(requests) == 3  # max_attempts, not 3 x (1 + the client's 2 retries)
    assert {r.retry_count for r in requests} <= {None, 0}  # the client itself never retried
    stats = await router.astatistics()
    assert stats["broken"].failures == 3


async def test_a_stream_stalling_after_two_chunks_releases_the_caller(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script("stalls", StallAfter(chunks=2))
    router = BanditRouterRunnable(
        arms={"stalls": chat_openai(openai_server, "stalls")}, timeout=1.0, max_attempts=1
    )
    chunks: list[Any] = []

    async def consume() -> None:
        async for chunk in router.astream("hello"):
            chunks.append(chunk)  # noqa: PERF401 (kept as they come: the stream fails midway)

    t0 = time.monotonic()
    with anyio.fail_after(BOUND), pytest.raises(TimeoutError):
        await consume()
    assert time.monotonic() - t0 < 2.0
    assert chunks  # it had started
    stats = await router.astatistics()
    assert (stats["stalls"].failures, stats["stalls"].in_flight) == (1, 0)


def test_a_sync_stream_stalling_is_released_too(openai_server: OpenAIServer) -> None:
    openai_server.script("stalls", StallAfter(chunks=2))
    router = BanditRouterRunnable(
        arms={"stalls": chat_openai(openai_server, "stalls")}, timeout=1.0, max_attempts=1
    )
    t0 = time.monotonic()
    with pytest.raises((TimeoutError, openai.APITimeoutError)):
        for _ in router.stream("hello"):
            pass
    assert time.monotonic() - t0 < 2.5
    stats = router.statistics()
    assert (stats["stalls"].failures, stats["stalls"].in_flight) == (1, 0)


async def test_a_hanging_arm_times_out_and_falls_back(openai_server: OpenAIServer) -> None:
    openai_server.script("stuck", Hang())
    router = BanditRouterRunnable(
        arms={
            "stuck": chat_openai(openai_server, "stuck"),
            "good": chat_openai(openai_server, "good"),
        },
        priors={"stuck": Prior(mean=0.9, weight=5), "good": Prior(mean=0.5, weight=5)},
        timeout=0.5,
        max_attempts=1,
    )
    with anyio.fail_after(BOUND):
        out = await router.ainvoke("hello")
    assert out.response_metadata["bandit_router"]["arm"] == "good"
    assert (await router.astatistics())["stuck"].failures == 1


async def test_an_evaluator_that_never_returns_holds_no_answer(openai_server: OpenAIServer) -> None:
    never = asyncio.Event()

    async def judge(outputs: Any) -> float:
        await never.wait()
        return 1.0

    router = BanditRouterRunnable(
        arms={"good": chat_openai(openai_server, "good")}, reward=judge, evaluator_timeout=0.5
    )
    t0 = time.monotonic()
    out = await router.ainvoke("hello")
    assert out.content
    assert time.monotonic() - t0 < 1.0  # the answer did not wait for the judge
    assert (await router.astatistics())["good"].in_flight == 1  # scored in the background
    with anyio.fail_after(BOUND):
        await router.aclose()
    stats = await router.astatistics()
    assert (stats["good"].pulls, stats["good"].in_flight) == (0, 0)  # settled, no reward
    assert router.evaluator_errors == {"good": 1}


async def test_streams_are_priced_from_the_usage_the_router_asks_for(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script("good", Answer(text="good answer", usage=(1000, 1000)))
    prices = {"good": Price(input_per_million=100.0, output_per_million=100.0)}  # $0.2 a call
    reward = cost_aware(good, prices=prices, lam=1.0, max_cost=0.4)
    router = BanditRouterRunnable(arms={"good": chat_openai(openai_server, "good")}, reward=reward)
    _ = [c async for c in router.astream("hello")]
    await router.aclose()
    # A ChatOpenAI with a base_url streams without usage unless asked: the router asked.
    assert openai_server.requests("good")[-1].include_usage
    assert reward.unknown_usage == {}
    stats = await router.astatistics()
    assert stats["good"].reward_sum == pytest.approx((1.0 - 0.5 + 1.0) / 2.0)


async def test_structured_output_is_priced_from_its_raw_message(
    openai_server: OpenAIServer,
) -> None:
    class Capital(BaseModel):
        country: str
        capital: str

    openai_server.script(
        "good", Answer(data={"country": "France", "capital": "Paris"}, usage=(1000, 1000))
    )
    prices = {"good": Price(input_per_million=100.0, output_per_million=100.0)}
    reward = cost_aware(lambda outputs: 1.0, prices=prices, lam=1.0, max_cost=0.4)
    router = ChatBanditRouter(arms={"good": chat_openai(openai_server, "good")}, reward=reward)
    structured = router.with_structured_output(Capital)
    out = await structured.ainvoke("capital of France?")
    assert out == Capital(country="France", capital="Paris")
    await router.aclose()
    assert reward.unknown_usage == {}
    assert (await router.astatistics())["good"].reward_sum == pytest.approx(0.75)


async def test_missing_usage_is_estimated_never_zero(
    openai_server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    openai_server.script("quiet", Answer(text="x" * 400, usage=None))
    prices = {"quiet": Price(input_per_million=1000.0, output_per_million=1000.0)}
    reward = cost_aware(lambda outputs: 1.0, prices=prices, lam=1.0, max_cost=1.0)
    router = BanditRouterRunnable(
        arms={"quiet": chat_openai(openai_server, "quiet")}, reward=reward
    )
    with caplog.at_level(logging.WARNING, logger="bandit_router"):
        for _ in range(3):
            await router.ainvoke("y" * 400)
        await router.aclose()
    assert reward.unknown_usage == {"quiet": 3}
    assert sum("without token usage" in r.message for r in caplog.records) == 1  # once per arm
    stats = await router.astatistics()
    # ~100 tokens in and ~100 out at $1,000 a million: about $0.2 a call, not $0.
    assert stats["quiet"].reward_sum < 3 * 0.95


def test_chat_router_routes_tool_calls_over_http(openai_server: OpenAIServer) -> None:
    @tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    openai_server.script_default(Answer(tool_calls=[ToolCall(arguments={"city": "Paris"})]))
    router = ChatBanditRouter(arms=two_arms(openai_server), seed=3)
    bound = router.bind_tools([weather])
    out = bound.invoke("weather in Paris?")
    assert isinstance(out, AIMessage)
    assert out.tool_calls[0]["name"] == "weather"
    assert out.tool_calls[0]["args"] == {"city": "Paris"}
    streamed = list(bound.stream("weather in Paris?"))
    assert streamed


async def test_every_arm_failing_names_each_one(openai_server: OpenAIServer) -> None:
    openai_server.script_default(ServerError(503))
    router = BanditRouterRunnable(arms=two_arms(openai_server), max_attempts=1)
    with pytest.raises(AllArmsFailedError) as info:
        await router.ainvoke("hello")
    assert set(info.value.errors) == {"good", "poor"}
