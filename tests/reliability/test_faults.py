"""Faults: arms that raise, hang past the timeout, return malformed output or fail mid-stream;
evaluators that raise or return garbage; a store that refuses some of its writes.

The caller always gets either an answer or exactly one clear error, and the statistics stay
consistent with what happened: every call an arm saw is a pull, a failure or an evaluator
error; every write the store acknowledged is in its statistics and nothing else is.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import RunnableLambda
from pydantic import PrivateAttr

from bandit_router import AllArmsFailedError, Bandit, BanditRouterRunnable
from bandit_router.testing import FakeArm, FakeArmError, is_right

from ._support import MARK, FaultyStore, Otel, Stores, loop_errors, registry_sizes

pytestmark = pytest.mark.anyio

CALLS = 400


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.shutdown()


class Unprintable:
    """An output that cannot be printed (logging or capturing it must not fail the call)."""

    __slots__ = ()

    def __repr__(self) -> str:
        raise RuntimeError("hostile repr")

    def __str__(self) -> str:
        raise RuntimeError("hostile str")


def malformed_outputs() -> list[Any]:
    """What a broken integration might hand back instead of a chat message."""
    return [
        None,
        42,
        {"content": "right"},
        ["right"],
        b"\xff\xfe",
        AIMessage(content=[{"type": "no-such-block", "data": None}]),
        # A provider integration that reports nonsense usage (pydantic validation bypassed).
        AIMessage.model_construct(content="right", usage_metadata={"input_tokens": "lots"}),
        AIMessage.model_construct(
            content="right", usage_metadata={"input_tokens": [], "output_tokens": math.inf}
        ),
        AIMessage.model_construct(content="right", usage_metadata=17),
        Unprintable(),
    ]


class Handed(FakeArm):
    """A FakeArm that also counts the calls handed to it, when they are handed over.

    ``FakeArm.calls`` counts the calls whose body ran; under a burst of hundreds of calls an
    attempt's time limit can strike after the router handed the call over (inside the
    attempt's deadline) but before LangChain scheduled the model's body: that attempt is
    rightly a failure of the arm, and only this count sees it.
    """

    _handed: int = PrivateAttr(default=0)

    @property
    def handed(self) -> int:
        """How many calls the router handed to this arm."""
        return self._handed

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        self._handed += 1
        return await super().ainvoke(input, config, **kwargs)

    async def astream(
        self, input: Any, config: Any = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        self._handed += 1
        async for chunk in super().astream(input, config, **kwargs):
            yield chunk


class HandedLambda(RunnableLambda[Any, Any]):
    """A RunnableLambda counting the calls handed to it (see :class:`Handed`)."""

    handed = 0

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        self.handed += 1
        return await super().ainvoke(input, config, **kwargs)

    async def astream(self, input: Any, config: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        self.handed += 1
        async for chunk in super().astream(input, config, **kwargs):
            yield chunk


class Malformed:
    """An arm answering with one malformed output after another; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.outputs = malformed_outputs()
        self.produced: list[Any] = []

    async def __call__(self, _input: Any) -> Any:
        self.calls += 1
        await asyncio.sleep(0.001)
        out = self.outputs[self.calls % len(self.outputs)]
        self.produced.append(out)
        return out


GARBAGE: list[Any] = [
    math.nan,
    math.inf,
    2.0,
    -0.1,
    "0.5",
    None,
    {"no": "score"},
    {"score": "high"},
    [1.0],
    object(),
    10**400,
]


def good_answer(out: Any, arms: set[str], produced: list[Any], *, unrouted: bool = False) -> bool:
    """An answer the caller may rightly get: a routed message, or the malformed arm's own.

    With ``unrouted``, also an arm's message that carries no decision (the store refused to
    record one: the router answered anyway, without learning from the call).
    """
    if any(out is p for p in produced):
        return True
    if isinstance(out, AIMessage):
        meta = out.response_metadata.get("bandit_router")
        if meta is None and unrouted:
            return out.response_metadata.get("model_name") in arms
        return isinstance(meta, dict) and meta.get("arm") in arms
    # A stream: the arm's chunks, or the malformed arm's one output.
    return isinstance(out, list) and all(
        isinstance(c, AIMessageChunk) or any(c is p for p in produced) for c in out
    )


def _messages(out: Any) -> list[Any]:
    return out if isinstance(out, list) else [out]


async def test_arm_and_evaluator_faults(stores: Stores, otel: Otel) -> None:
    rng = random.Random(17)
    malformed = Malformed()
    fakes = {
        "raises": Handed(failure_rate=0.25, jitter=0.003, chunks=3, seed=1, model="raises"),
        "midstream": Handed(
            failure_rate=0.25,
            error=ConnectionError,
            fail_mid_stream=True,
            jitter=0.003,
            chunks=3,
            seed=2,
            model="midstream",
        ),
        "hangs": Handed(hang=True, model="hangs"),
    }
    malformed_arm = HandedLambda(malformed)
    arms: dict[str, Any] = {**fakes, "malformed": malformed_arm}
    evaluator_raised = evaluator_garbage = 0

    async def judge(outputs: Any) -> Any:
        nonlocal evaluator_raised, evaluator_garbage
        draw = rng.random()
        if draw < 0.15:
            evaluator_raised += 1
            raise RuntimeError("the judge is down")
        if draw < 0.30:
            evaluator_garbage += 1
            return rng.choice(GARBAGE)
        return is_right(outputs)

    store = stores.new()
    name = f"faults-{uuid.uuid4().hex[:8]}"
    router = BanditRouterRunnable(
        arms=arms,
        reward=judge,
        store=store,
        name=name,
        timeout=0.25,
        max_attempts=2,
        retry_initial_wait=0.0,
        retry_max_wait=0.002,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    )

    async def call(i: int) -> Any:
        question = f"question {i} {MARK}"
        if i % 10 == 0:  # pinned to the arm that hangs: its own TimeoutError, no fallback
            return await router.ainvoke(question, {"configurable": {router.arm_key: "hangs"}})
        if i % 4 == 1:
            return [chunk async for chunk in router.astream(question)]
        return await router.ainvoke(question)

    with loop_errors() as loop_reports:
        results = await asyncio.gather(*(call(i) for i in range(CALLS)), return_exceptions=True)
        await router.aclose()  # answers are scored after they are returned

    kinds: dict[str, int] = {}
    for i, r in enumerate(results):
        if isinstance(r, BaseException):
            # One clear error: a single exception (never a group), with a message (anyio's
            # TimeoutError has none: its type is the message).
            assert not isinstance(r, BaseExceptionGroup), r
            assert str(r) or isinstance(r, TimeoutError), repr(r)
            if i % 10 == 0:
                assert isinstance(r, TimeoutError), repr(r)
            elif isinstance(r, AllArmsFailedError):
                assert r.errors, r
            else:  # a stream that failed after its first chunk: the arm's own error
                assert i % 4 == 1, repr(r)
                # (or its time limit: ``timeout`` bounds a stream to its end)
                assert isinstance(r, ConnectionError | FakeArmError | TimeoutError), repr(r)
            key = type(r).__name__
        else:
            assert good_answer(r, set(arms), malformed.produced), repr(r)
            key = "answer"
        kinds[key] = kinds.get(key, 0) + 1

    stats = await router.astatistics()
    seen = {name: arm.handed for name, arm in fakes.items()} | {"malformed": malformed_arm.handed}
    assert all(arm.calls <= arm.handed for arm in fakes.values())
    assert malformed.calls <= malformed_arm.handed
    errors = router.evaluator_errors
    for arm, s in stats.items():
        # Every call an arm saw is a pull, a failure, or an answer the evaluator could not
        # score (counted in evaluator_errors, nothing learned).
        assert seen[arm] == s.pulls + s.failures + errors.get(arm, 0), (arm, s, errors)
        assert s.in_flight == 0
    assert sum(errors.values()) <= evaluator_raised + evaluator_garbage
    assert stats["hangs"].failures == fakes["hangs"].handed >= 2 * (CALLS // 10)
    assert stats["hangs"].pulls == 0
    assert (await registry_sizes(store, name))["pending"] == 0
    # The metrics agree with the statistics, and no prompt text reached them or the spans.
    assert otel.counter_total("bandit_router.failures") == sum(s.failures for s in stats.values())
    assert MARK not in otel.exported_text()
    assert loop_reports == []
    print(
        f"\nFAULTS {stores.kind}: {CALLS} calls -> {kinds}; arm calls {seen}; failures "
        f"{ {a: s.failures for a, s in stats.items()} }; evaluator raised {evaluator_raised}, "
        f"returned garbage {evaluator_garbage}; in flight 0"
    )


async def test_a_store_that_refuses_writes(stores: Stores) -> None:
    """10% of the store's writes are refused: callers see an answer or one StoreError, and the
    statistics hold exactly what the store acknowledged."""
    store = FaultyStore(stores.new(), fail_rate=0.10, seed=3)
    name = f"refusing-{uuid.uuid4().hex[:8]}"
    arms = {
        "a": FakeArm(failure_rate=0.1, error=ConnectionError, jitter=0.003, seed=4, model="a"),
        "b": FakeArm(failure_rate=0.1, jitter=0.003, seed=5, model="b"),
        "c": FakeArm(failure_rate=0.1, jitter=0.003, seed=6, model="c"),
    }
    ttl = 600.0
    router = BanditRouterRunnable(
        arms=arms,
        reward=is_right,
        store=store,
        name=name,
        pending_ttl=ttl,
        retry_initial_wait=0.0,
        retry_max_wait=0.002,
    )

    async def call(i: int) -> Any:
        if i % 4 == 1:
            return [chunk async for chunk in router.astream("q")]
        return await router.ainvoke("q")

    with loop_errors() as loop_reports:
        results = await asyncio.gather(*(call(i) for i in range(CALLS)), return_exceptions=True)
        await router.aclose()  # answers are scored after they are returned
    kinds: dict[str, int] = {}
    for r in results:
        if isinstance(r, BaseException):
            # A store failure never costs the caller an answer: only the arms can fail a call.
            assert isinstance(r, AllArmsFailedError), repr(r)
            assert str(r)
        else:
            assert good_answer(r, set(arms), [], unrouted=True)
        unrouted = not isinstance(r, BaseException) and not any(
            "bandit_router" in getattr(c, "response_metadata", {}) for c in _messages(r)
        )
        key = type(r).__name__ if isinstance(r, BaseException) else "answer"
        kinds[key] = kinds.get(key, 0) + 1
        kinds["unrouted"] = kinds.get("unrouted", 0) + unrouted
    assert store.injected  # the faults happened ...
    assert kinds["answer"] > CALLS * 0.9  # ... and cost (almost) no caller an answer

    # Exactly what the store acknowledged: no reward lost, none counted twice.
    stats = await router.astatistics()
    assert {a: s.pulls for a, s in stats.items()} == {a: store.rewards[a] for a in arms}
    assert {a: s.reward_sum for a, s in stats.items()} == {a: store.reward_sums[a] for a in arms}
    assert {a: s.failures for a, s in stats.items()} == {a: store.failures[a] for a in arms}
    # A refused release leaves its decision pending; every slot still held belongs to one,
    # and expiry gives them all back.
    in_flight = sum(s.in_flight for s in stats.values())
    assert in_flight == (await registry_sizes(store, name))["pending"]
    store.fail_rate = 0.0
    later = Bandit(
        list(arms), name=name, store=store, pending_ttl=ttl, clock=lambda: time.time() + 2 * ttl
    )
    assert await later.expire() == in_flight
    stats = await router.astatistics()
    assert sum(s.in_flight for s in stats.values()) == 0
    assert {a: s.pulls for a, s in stats.items()} == {a: store.rewards[a] for a in arms}
    assert loop_reports == []
    print(
        f"\nSTORE FAULTS {stores.kind}: {CALLS} calls -> {kinds}; writes refused "
        f"{dict(store.injected)}; slots held by refused releases {in_flight}, reclaimed by "
        "expiry; rewards lost 0"
    )


async def test_malformed_usage_never_fails_the_call(otel: Otel) -> None:
    """Regression: the attempt span read token counts with int(), so an answer with a
    malformed usage report became a failure of its arm (with an SDK configured)."""
    answer = AIMessage.model_construct(content="right", usage_metadata={"input_tokens": "lots"})

    async def arm(_input: Any) -> Any:
        return answer

    router = BanditRouterRunnable(
        arms={"m": RunnableLambda(arm)},
        reward=is_right,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    )
    out = await router.ainvoke("q")
    assert out.content == "right"
    assert [c.content async for c in router.astream("q")] == ["right"]
    stats = await router.astatistics()
    assert (stats["m"].pulls, stats["m"].failures) == (2, 0)


async def test_an_answer_with_broken_metadata_is_still_returned() -> None:
    answer = AIMessage.model_construct(content="right", response_metadata=None)

    async def arm(_input: Any) -> Any:
        return answer

    router = BanditRouterRunnable(arms={"m": RunnableLambda(arm)}, reward=is_right)
    out = await router.ainvoke("q")
    assert out.content == "right"


async def test_a_call_that_outlives_its_decision_still_returns_its_answer() -> None:
    router = BanditRouterRunnable(
        arms={"a": FakeArm(jitter=0.005, seed=1), "b": FakeArm(jitter=0.005, seed=2)},
        reward=is_right,
        max_pending=10,  # 50 calls in flight: the first 40 decisions are evicted meanwhile
    )
    results = await asyncio.gather(
        *(router.ainvoke("q") for _ in range(50)), return_exceptions=True
    )
    assert [r for r in results if isinstance(r, BaseException)] == []
