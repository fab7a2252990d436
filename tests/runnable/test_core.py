"""The routing core's promises: loads, loops, time limits, whose error it is, validation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import anyio
import pytest
from langchain_core.runnables import RunnableLambda

from bandit_router import (
    AllArmsFailedError,
    Bandit,
    BanditRouterRunnable,
    ChatBanditRouter,
    ConfigurationError,
    StoreError,
    UnknownArmError,
    UnsupportedEventLoopError,
)
from bandit_router.core.observer import NULL_ROUTE
from bandit_router.core.routing import Request, Router, RouteSettings
from bandit_router.core.timeouts import AttemptTimer
from bandit_router.testing import FakeArm, is_right

pytestmark = pytest.mark.anyio


async def test_a_burst_of_5000_calls_is_answered_without_spurious_timeouts() -> None:
    # 5,000 calls at once on one loop: the loop needs seconds to get through them, longer
    # than the 5 s limit on a busy machine. Time the loop spends behind is not the arms'.
    arms = {n: FakeArm(jitter=0.005, seed=i, model=n) for i, n in enumerate("abc")}
    router = BanditRouterRunnable(arms=arms, reward=is_right, timeout=5.0)
    results = await asyncio.gather(
        *(router.ainvoke("q") for _ in range(5000)), return_exceptions=True
    )
    await router.aclose()
    answered = sum(not isinstance(r, BaseException) for r in results)
    stats = await router.astatistics()
    assert answered >= 0.99 * 5000
    assert sum(s.failures for s in stats.values()) <= 0.01 * 5000
    assert sum(s.pulls for s in stats.values()) == answered
    assert sum(s.in_flight for s in stats.values()) == 0


async def test_a_hang_on_a_loop_that_keeps_up_times_out_on_time() -> None:
    router = BanditRouterRunnable(arms={"h": FakeArm(hang=True)}, timeout=0.2, max_attempts=1)
    t0 = time.monotonic()
    with pytest.raises(AllArmsFailedError, match=r"TimeoutError: arm 'h' .*timeout=0.2"):
        await router.ainvoke("q")
    assert 0.2 <= time.monotonic() - t0 < 2.0


async def test_a_loop_blocked_by_other_work_does_not_time_the_arm_out() -> None:
    # A callback that holds the loop for 0.6 s while a 0.3 s attempt waits: the arm answered
    # in 10 ms of the loop's time; the rest was the loop's.
    router = BanditRouterRunnable(arms={"a": FakeArm(latency=0.01)}, timeout=0.3, max_attempts=1)
    loop = asyncio.get_running_loop()
    loop.call_later(0.005, time.sleep, 0.6)
    out = await router.ainvoke("q")
    assert out.content == "right"
    assert (await router.astatistics())["a"].failures == 0


async def test_stall_timeout_bounds_the_gap_between_chunks() -> None:
    async def slow_stream(_: Any) -> AsyncIterator[str]:
        yield "a"
        await asyncio.sleep(5)
        yield "b"  # pragma: no cover

    router = BanditRouterRunnable(
        arms={"s": RunnableLambda(slow_stream)}, timeout=30, stall_timeout=0.2, max_attempts=1
    )
    chunks: list[Any] = []

    async def consume() -> None:
        async for chunk in router.astream("q"):
            chunks.append(chunk)  # noqa: PERF401 (kept as they come: the stream fails midway)

    with anyio.fail_after(5), pytest.raises(TimeoutError, match=r"stall_timeout=0\.2"):
        await consume()
    assert chunks == ["a"]
    stats = await router.astatistics()
    assert (stats["s"].failures, stats["s"].in_flight) == (1, 0)


def test_attempt_timer_counts_only_time_spent_waiting_for_the_arm() -> None:
    timer = AttemptTimer("a", 1, limit=1.0, stall=None)
    timer.spent(0.4)
    timer.spent(0.4)  # 0.8 of 1.0: fine, whatever the consumer did in between
    with pytest.raises(TimeoutError, match=r"arm 'a' gave no next chunk within timeout=1\.0"):
        timer.spent(0.4, "next chunk")


# --- whose error is it ----------------------------------------------------------------------


class _FailingStore:
    """A store whose decisions fail: the router's own error, never an arm's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def begin(self, *args: Any) -> str:
        raise StoreError("the store is down")


async def test_the_routers_own_errors_are_never_billed_to_an_arm() -> None:
    from bandit_router.stores import InMemoryStore

    inner = InMemoryStore()
    arm = FakeArm()
    router = BanditRouterRunnable(arms={"a": arm, "b": FakeArm()}, store=_FailingStore(inner))
    out = await router.ainvoke("q")  # answered without the store
    assert out.content == "right"
    assert "bandit_router" not in out.response_metadata  # no decision was made
    stats = await Bandit(["a", "b"], name="bandit_router", store=inner).statistics()
    assert all(s.failures == 0 and s.pulls == 0 for s in stats.values())


def test_a_bad_context_key_fails_before_any_arm_is_called() -> None:
    arm = FakeArm()
    router = BanditRouterRunnable(arms={"a": arm}, context_key=lambda x: 42)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigurationError, match="context_key must return a str"):
        router.invoke("q")
    assert arm.calls == 0
    assert router.statistics()["a"].failures == 0


# --- event loops --------------------------------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_under_trio_the_async_faces_refuse_before_any_arm_is_called() -> None:
    arm = FakeArm()
    for router in (
        BanditRouterRunnable(arms={"a": arm}),
        ChatBanditRouter(arms={"a": arm}),
    ):
        with pytest.raises(UnsupportedEventLoopError, match="asyncio"):
            await router.ainvoke("q")
        with pytest.raises(UnsupportedEventLoopError):
            async for _ in router.astream("q"):
                pass  # pragma: no cover
        assert (await router.astatistics())["a"].failures == 0
    assert arm.calls == 0
    # The sync face from a worker thread is the way: it needs no event loop.
    router = BanditRouterRunnable(arms={"a": arm})
    out = await anyio.to_thread.run_sync(router.invoke, "q")
    assert out.content == "right"


class _Calls:
    """A LangChain-free way to reach arms: plain coroutines, for the core on any loop."""

    def __init__(self, answers: Mapping[str, Any]) -> None:
        self.answers = answers
        self.called: list[str] = []

    def invoke(self, arm: str, attempt: int) -> Any:
        self.called.append(arm)
        return self.answers[arm]

    async def ainvoke(self, arm: str, attempt: int) -> Any:
        self.called.append(arm)
        await anyio.sleep(0)
        answer = self.answers[arm]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def stream(self, arm: str, attempt: int) -> Iterator[Any]:
        yield self.answers[arm]

    async def astream(self, arm: str, attempt: int) -> AsyncIterator[Any]:
        yield self.answers[arm]

    def score_arguments(self, output: Any, arm: str, latency_s: float) -> Mapping[str, Any]:
        return {"outputs": output, "arm": arm}


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_core_routes_retries_and_falls_back_on_asyncio_and_trio() -> None:
    bandit = Bandit(["bad", "good"])
    router = Router(bandit, RouteSettings(retry_initial_wait=0, retry_max_wait=0, timeout=5), None)
    calls = _Calls({"bad": ConnectionError("down"), "good": "ok"})
    answers: list[Any] = []
    for i in range(4):
        req = Request(decision_id=f"d{i}", context="", calls=calls, observer=NULL_ROUTE)
        answers.append(await router.ainvoke(req))
    assert answers == ["ok"] * 4
    stats = await bandit.statistics()
    # Each time it was chosen: its three attempts (retried), then the fallback.
    assert stats["bad"].failures >= 3
    assert stats["bad"].failures % 3 == 0
    assert calls.called.count("bad") == stats["bad"].failures
    assert stats["good"].in_flight == 4  # waiting for feedback


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("face", [BanditRouterRunnable, ChatBanditRouter])
@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"timout": 5}, "did you mean 'timeout'"),
        ({"budgte": 3}, "unknown argument 'budgte'"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"decay": True}, "decay"),
        ({"decay": "0.9"}, "decay"),
        ({"max_pending": "100"}, "max_pending"),
        ({"max_attempts": 2.0}, "max_attempts"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"fallback": 1}, "fallback"),
        ({"evaluator_timeout": 0}, "evaluator_timeout"),
        ({"retry_if": ()}, "retry_if"),
        ({"failure_reward": 2}, "failure_reward"),
    ],
)
def test_every_bad_argument_is_a_configuration_error_naming_it(
    face: Any, kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        face(arms={"a": FakeArm()}, **kwargs)


def test_a_price_for_no_arm_is_refused() -> None:
    from bandit_router.rewards import Price, cost_aware

    reward = cost_aware(is_right, prices={"gtp-4o": Price(1, 1)}, lam=1, max_cost=1)
    with pytest.raises(ConfigurationError, match="'gtp-4o'"):
        BanditRouterRunnable(arms={"gpt-4o": FakeArm()}, reward=reward)


async def test_pinning_one_router_leaves_another_in_the_same_chain_alone() -> None:
    first = BanditRouterRunnable(
        arms={"x": RunnableLambda(lambda q: "x"), "y": RunnableLambda(lambda q: "y")},
        name="first",
    )
    second = BanditRouterRunnable(
        arms={"p": RunnableLambda(lambda q: q + "p"), "q": RunnableLambda(lambda q: q + "q")},
        name="second",
    )
    chain = first | second
    ids = {spec.id for spec in chain.config_specs}
    assert {"first_arm", "second_arm"} <= ids
    for _ in range(5):
        out = await chain.ainvoke("in", {"configurable": {"first_arm": "y"}})
        assert out[0] == "y"  # pinned; the second router still chooses on its own
    with pytest.raises(UnknownArmError, match="'z' is not an arm"):
        await chain.ainvoke("in", {"configurable": {"second_arm": "z"}})
