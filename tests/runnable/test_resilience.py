"""Faults, fallback, streams, batches and cancellation through BanditRouterRunnable."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import RunnableLambda

from bandit_router import AllArmsFailedError, BanditRouterRunnable, Prior
from bandit_router.testing import FakeArm, FakeArmError, is_right

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {"retry_initial_wait": 0.0, "retry_max_wait": 0.0}


async def test_success_rate_matches_the_chance_that_some_arm_succeeds() -> None:
    arms = {
        "flaky": FakeArm(failure_rate=0.3, seed=1, model="flaky"),
        "hangs": FakeArm(hang=True, model="hangs"),
        "broken": FakeArm(failure_rate=1.0, model="broken"),
    }
    router = BanditRouterRunnable(
        arms=arms, reward=is_right, timeout=0.1, max_attempts=2, seed=0, **FAST
    )
    calls, ok = 200, 0
    failed: list[AllArmsFailedError] = []
    for _ in range(calls):
        try:
            await router.ainvoke("q")
            ok += 1
        except AllArmsFailedError as exc:
            failed.append(exc)
    assert len(failed) == calls - ok
    for err in failed:
        assert set(err.errors) == set(arms)  # one error naming every arm
        assert isinstance(err.errors["hangs"], TimeoutError)
        assert isinstance(err.errors["broken"], FakeArmError)
    # Only "flaky" can answer, with probability 0.7 (its errors are not retried).
    assert 0.6 <= ok / calls <= 0.8, ok  # +-3 standard deviations
    stats = await router.astatistics()
    for name, arm in arms.items():
        # Every call an arm saw is either a completed pull or a failure.
        assert arm.calls == stats[name].pulls + stats[name].failures, name
        assert stats[name].in_flight == 0
    assert stats["flaky"].pulls == ok
    assert stats["hangs"].failures == arms["hangs"].calls >= 2  # retried on timeout
    assert stats["broken"].pulls == 0
    # Failures are information: the router learned to try the flaky arm first (every call
    # reached it, once). This test once failed on a busy machine: an instant answer "took"
    # over 0.1 s because the process was not scheduled, and was counted as a timeout. Time
    # the event loop spends behind is no longer the arm's (core/timeouts.py), so no slack.
    assert arms["flaky"].calls == calls


async def test_non_retryable_errors_are_not_retried_and_transient_ones_are() -> None:
    arms = {"a": FakeArm(fail_first=2, error=ConnectionError, model="a")}
    router = BanditRouterRunnable(arms=arms, reward=is_right, max_attempts=3, **FAST)
    await router.ainvoke("q")
    assert arms["a"].calls == 3
    stats = await router.astatistics()
    assert (stats["a"].failures, stats["a"].pulls) == (2, 1)
    arms2 = {"a": FakeArm(fail_first=1, model="a")}  # FakeArmError: not transient
    router2 = BanditRouterRunnable(arms=arms2, reward=is_right, max_attempts=3, **FAST)
    with pytest.raises(AllArmsFailedError) as info:
        await router2.ainvoke("q")
    assert isinstance(info.value.errors["a"], FakeArmError)
    assert isinstance(info.value.__cause__, FakeArmError)
    assert arms2["a"].calls == 1


async def test_astream_yields_the_chosen_arms_chunks_unchanged() -> None:
    arm = FakeArm(chunks=3, model="solo")
    direct = [c async for c in arm.astream("q")]
    router = BanditRouterRunnable(arms={"solo": FakeArm(chunks=3, model="solo")}, reward=is_right)
    routed = [c async for c in router.astream("q")]
    # LangChain closes every chat stream with an empty chunk_position="last" chunk.
    assert [c.content for c in routed] == [c.content for c in direct] == ["ri", "gh", "t", ""]
    assert all(isinstance(c, AIMessageChunk) for c in routed)
    assert routed[-1].usage_metadata == direct[-1].usage_metadata
    assert routed[-1].response_metadata == direct[-1].response_metadata
    stats = await router.astatistics()
    assert (stats["solo"].pulls, stats["solo"].mean) == (1, 1.0)


async def test_stream_falls_back_before_the_first_chunk_only() -> None:
    arms = {
        "first": FakeArm(fail_first=1, model="first"),
        "second": FakeArm(model="second"),
    }
    # "second" has a prior, so the untried "first" is tried first (and fails before a chunk).
    router = BanditRouterRunnable(
        arms=arms, reward=is_right, priors={"second": Prior(0.5, 1)}, seed=0, **FAST
    )
    chunks = [c async for c in router.astream("q")]
    assert "".join(str(c.content) for c in chunks) == "right"
    stats = await router.astatistics()
    assert (stats["first"].failures, stats["first"].pulls) == (1, 0)
    assert (stats["second"].failures, stats["second"].pulls) == (0, 1)

    mid = {"only": FakeArm(failure_rate=1.0, fail_mid_stream=True, model="only")}
    router2 = BanditRouterRunnable(arms=mid, reward=is_right, **FAST)
    got: list[Any] = []

    async def consume() -> None:
        async for c in router2.astream("q"):
            got.append(c)  # noqa: PERF401 (the chunks before the error are the point)

    with pytest.raises(FakeArmError):
        await consume()
    assert [c.content for c in got] == ["rig"]  # the first chunk reached the caller
    s2 = await router2.astatistics()
    assert (s2["only"].failures, s2["only"].pulls, s2["only"].in_flight) == (1, 0, 0)


async def test_consumer_stopping_early_releases_the_slot() -> None:
    router = BanditRouterRunnable(arms={"a": FakeArm(chunks=5)}, reward=is_right)
    stream = router.astream("q")
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    stats = await router.astatistics()
    assert (stats["a"].pulls, stats["a"].in_flight) == (0, 0)


async def test_abatch_of_1000_honours_max_concurrency() -> None:
    active = 0
    peak = 0

    async def work(x: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.001)
        active -= 1
        return x * 2

    arms: dict[str, Any] = {"a": RunnableLambda(work), "b": RunnableLambda(work)}
    router = BanditRouterRunnable(arms=arms, reward=lambda: 1.0)
    out = await router.abatch(list(range(1000)), config={"max_concurrency": 8})
    assert out == [x * 2 for x in range(1000)]
    assert 1 < peak <= 8
    await router.aclose()  # the rewards are scored after the answers
    stats = await router.astatistics()
    assert sum(s.pulls for s in stats.values()) == 1000
    assert sum(s.in_flight for s in stats.values()) == 0


async def test_a_cancelled_caller_counts_nothing_and_leaks_no_slot() -> None:
    router = BanditRouterRunnable(arms={"slow": FakeArm(latency=5.0)}, reward=is_right)
    task = asyncio.ensure_future(router.ainvoke("q"))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = await router.astatistics()
    assert (stats["slow"].pulls, stats["slow"].failures, stats["slow"].in_flight) == (0, 0, 0)


async def test_a_failing_evaluator_does_not_fail_the_call() -> None:
    def judge(outputs: Any) -> float:
        raise RuntimeError("judge is down")

    router = BanditRouterRunnable(arms={"a": FakeArm()}, reward=judge)
    out = await router.ainvoke("q")
    assert out.content == "right"
    await router.aclose()  # the evaluator runs after the answer
    stats = await router.astatistics()
    assert (stats["a"].pulls, stats["a"].in_flight) == (0, 0)
    assert router.evaluator_errors == {"a": 1}


def test_sync_faces_work() -> None:
    router = BanditRouterRunnable(arms={"a": FakeArm(chunks=2)}, reward=is_right)
    assert router.invoke("q").content == "right"
    assert [c.content for c in router.stream("q")] == ["rig", "ht", ""]
    assert [m.content for m in router.batch(["q", "q"])] == ["right", "right"]
    assert router.statistics()["a"].pulls == 4


async def test_a_timeout_names_the_arm_and_the_limit_and_an_arms_own_timeout_passes_through() -> (
    None
):
    router = BanditRouterRunnable(
        arms={"slow": FakeArm(hang=True), "quick": FakeArm()}, timeout=0.05, max_attempts=1
    )
    with pytest.raises(TimeoutError, match=r"arm 'slow' gave no answer within timeout=0.05 s"):
        await router.ainvoke("q", {"configurable": {router.arm_key: "slow"}})

    async def own_timeout(_input: Any) -> Any:
        raise TimeoutError("the provider's own read timeout")

    other = BanditRouterRunnable(arms={"m": RunnableLambda(own_timeout)}, max_attempts=1)
    with pytest.raises(TimeoutError, match="the provider's own read timeout"):
        await other.ainvoke("q", {"configurable": {other.arm_key: "m"}})
    assert (await other.astatistics())["m"].failures == 1
