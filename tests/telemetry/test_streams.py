"""Streams: spans stay open while chunks flow, close when the consumer stops, never leak context.

``routed_stream`` mirrors how the router drives the module from its async generators: the
route span is started (not made current), each attempt's context is attached only around the
single ``await`` that fetches the arm's first chunk, and chunks are yielded with nothing
attached. A consumer that stops early, from any task, or abandons the stream to the garbage
collector, must leave no "Failed to detach context" error in the logs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from bandit_router._engine import Selection
from bandit_router.telemetry import Telemetry
from bandit_router.testing import FakeArm, FakeArmError

from ._otel import Otel

pytestmark = pytest.mark.anyio

SEL = Selection("a", ("a",), (0.5,), (0.5,), (1,), (0,), False, "UCB1")
DETACH = "Failed to detach context"


async def routed_stream(tel: Telemetry, arm: FakeArm) -> AsyncGenerator[Any, None]:
    """A router-shaped async generator over one arm's stream."""
    route = tel.start_route("r", "", "run")
    try:
        route.decision(SEL, "run")
        attempt = route.attempt("a", 1)
        it = arm.astream([HumanMessage("q")]).__aiter__()
        try:
            with attempt.activate():
                first = await it.__anext__()
            attempt.chunk(first)
            yield first
            async for chunk in it:
                attempt.chunk(chunk)
                yield chunk
        except BaseException as exc:
            attempt.failed(exc)
            await it.aclose()  # type: ignore[attr-defined]
            raise
        else:
            attempt.ok()
    except BaseException as exc:
        route.end(exc)
        raise
    else:
        route.end()


def detach_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if DETACH in r.getMessage() or r.levelno >= logging.ERROR]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def arm() -> FakeArm:
    return FakeArm(model="m", chunks=5, input_tokens=4, output_tokens=5)


async def test_a_whole_stream_keeps_its_spans_open_until_the_end(
    otel: Otel, logs: pytest.LogCaptureFixture
) -> None:
    tel = otel.telemetry(arms={"a": arm()})
    before = trace.get_current_span()
    chunks = []
    async with aclosing(routed_stream(tel, arm())) as stream:
        async for chunk in stream:
            assert trace.get_current_span() is before  # nothing attached while yielding
            assert otel.spans() == []  # still open
            chunks.append(chunk)
    assert "".join(c.content for c in chunks) == "right"
    chat = otel.one("chat m")
    assert (chat.attributes or {})["gen_ai.usage.output_tokens"] == 5
    assert (chat.attributes or {})["gen_ai.response.model"] == "m"
    route = otel.one("bandit_router.route")
    assert route.status.status_code is StatusCode.UNSET
    assert "bandit_router.cancelled" not in (route.attributes or {})
    assert not detach_errors(logs)


async def test_breaking_out_early_closes_the_spans_as_cancelled_without_errors(
    otel: Otel, logs: pytest.LogCaptureFixture
) -> None:
    tel = otel.telemetry(arms={"a": arm()})
    async with aclosing(routed_stream(tel, arm())) as stream:
        async for _ in stream:
            break
    for name in ("bandit_router.route", "chat m"):
        span = otel.one(name)
        assert (span.attributes or {})["bandit_router.cancelled"] is True
        assert span.status.status_code is StatusCode.UNSET
    assert otel.counts("bandit_router.failures") == {}
    assert not detach_errors(logs)


async def test_closing_from_another_task_leaves_no_detach_error(
    otel: Otel, logs: pytest.LogCaptureFixture
) -> None:
    tel = otel.telemetry(arms={"a": arm()})
    stream = routed_stream(tel, arm())

    async def first() -> Any:
        return await stream.__anext__()

    await asyncio.create_task(first())  # iterated in one task (its own context copy) ...
    await asyncio.create_task(stream.aclose())  # ... closed in another
    assert (otel.one("bandit_router.route").attributes or {})["bandit_router.cancelled"] is True
    assert not detach_errors(logs)


async def test_an_abandoned_stream_finalized_by_the_loop_leaves_no_detach_error(
    otel: Otel, logs: pytest.LogCaptureFixture
) -> None:
    tel = otel.telemetry(arms={"a": arm()})
    stream = routed_stream(tel, arm())
    await stream.__anext__()
    del stream
    gc.collect()  # asyncio's async-generator finalizer schedules aclose() in a new task
    for _ in range(10):
        await asyncio.sleep(0)
    assert (otel.one("bandit_router.route").attributes or {})["bandit_router.cancelled"] is True
    assert not detach_errors(logs)


async def test_a_failure_mid_stream_ends_both_spans_with_the_error(
    otel: Otel, logs: pytest.LogCaptureFixture
) -> None:
    broken = FakeArm(model="m", chunks=5, failure_rate=1.0, fail_mid_stream=True)
    tel = otel.telemetry(arms={"a": broken})
    seen = 0

    async def consume() -> None:
        nonlocal seen
        async with aclosing(routed_stream(tel, broken)) as stream:
            async for _ in stream:
                seen += 1

    with pytest.raises(FakeArmError, match="scripted failure"):
        await consume()
    assert seen == 1  # the first chunk arrived, then the arm failed
    for name in ("bandit_router.route", "chat m"):
        span = otel.one(name)
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "FakeArmError"
    assert not [r for r in logs.records if DETACH in r.getMessage()]


async def test_the_check_catches_a_context_held_across_a_yield(
    otel: Otel, logs: pytest.LogCaptureFixture
) -> None:
    """The anti-pattern the module avoids does log the error: the check above is not idle."""
    tracer = otel.tracer_provider.get_tracer("bad")

    async def bad_stream() -> AsyncGenerator[int, None]:
        with tracer.start_as_current_span("held across yield"):
            yield 1
            yield 2

    stream = bad_stream()

    async def first() -> int:
        return await stream.__anext__()

    await asyncio.create_task(first())
    await asyncio.create_task(stream.aclose())
    assert [r for r in logs.records if DETACH in r.getMessage()]


async def test_cancelling_a_consumer_while_the_context_is_attached_is_clean(
    otel: Otel, logs: pytest.LogCaptureFixture
) -> None:
    import anyio

    hangs = FakeArm(model="m", hang=True)
    tel = otel.telemetry(arms={"a": hangs})
    before = trace.get_current_span()
    with anyio.move_on_after(0.05):
        async with aclosing(routed_stream(tel, hangs)) as stream:
            async for _ in stream:
                pass
    assert trace.get_current_span() is before
    for name in ("bandit_router.route", "chat m"):
        assert (otel.one(name).attributes or {})["bandit_router.cancelled"] is True
    assert not detach_errors(logs)
