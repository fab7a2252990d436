"""The issue's acceptance criteria through BanditRouterRunnable itself.

Skipped until the router takes ``tracer_provider=`` (the integration of
``bandit_router.telemetry`` into ``_runnable.py``); they then run on every ``make test``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from opentelemetry.trace import SpanKind, StatusCode

from bandit_router import BanditRouterRunnable, Prior
from bandit_router.testing import FakeArm, is_right

from ._otel import Otel, attrs, everything_exported

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        "tracer_provider" not in BanditRouterRunnable.model_fields,
        reason="telemetry is not wired into BanditRouterRunnable yet",
    ),
]

FAST: dict[str, Any] = {"retry_initial_wait": 0.0, "retry_max_wait": 0.0}
MARKER = "SECRET-MARKER-route-51c2"


def router(otel: Otel, **kwargs: Any) -> BanditRouterRunnable:
    arms = kwargs.pop("arms", None)
    if arms is None:  # the cheap model first (priors); it fails once
        arms = {
            "mini": FakeArm(model="gpt-4o-mini", fail_first=1, chunks=4),
            "big": FakeArm(model="gpt-4o", chunks=4),
        }
        kwargs["priors"] = {"mini": Prior(mean=0.9, weight=5), "big": Prior(mean=0.6, weight=5)}
    providers: dict[str, Any] = {  # (a dict: type-checks before the integration too)
        "tracer_provider": otel.tracer_provider,
        "meter_provider": otel.meter_provider,
    }
    return BanditRouterRunnable(arms=arms, **providers, **FAST, **kwargs)


async def test_a_failed_attempt_then_fallback_shows_two_attempt_spans(otel: Otel) -> None:
    r = router(otel, reward=is_right)
    await r.ainvoke([HumanMessage("q")])
    route = otel.one("bandit_router.route")
    failed, served = otel.one("chat gpt-4o-mini"), otel.one("chat gpt-4o")
    assert route.kind is SpanKind.INTERNAL
    for child in (failed, served):
        assert child.kind is SpanKind.CLIENT
        assert child.parent is not None
        assert child.parent.span_id == route.context.span_id
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "FakeArmError"
    assert served.status.status_code is StatusCode.UNSET
    assert (served.attributes or {})["gen_ai.usage.input_tokens"] == 10
    a = route.attributes or {}
    assert a["bandit_router.arm"] == "big"
    assert a["bandit_router.attempts"] == 2
    assert a["bandit_router.fallbacks"] == 1
    assert a["bandit_router.reward"] == 1.0
    assert a["bandit_router.arms"] == ("mini", "big")
    assert [e.name for e in route.events] == ["bandit_router.fallback", "gen_ai.evaluation.result"]
    assert (route.events[1].attributes or {})["gen_ai.evaluation.name"] == "is_right"
    key = attrs(bandit_router__name="bandit_router", bandit_router__arm="mini")
    assert otel.counts("bandit_router.pulls")[key] == 1


async def test_delayed_feedback_links_to_the_right_decision(otel: Otel) -> None:
    r = router(otel, arms={"a": FakeArm(model="m")})
    runs = [uuid.uuid4() for _ in range(3)]
    for run in runs:
        await r.ainvoke("q", config={"run_id": run})
    await r.arecord_feedback(runs[1], 0.5)
    feedback = otel.one("bandit_router.feedback")
    (link,) = feedback.links
    target = next(
        s for s in otel.named("bandit_router.route") if s.context.span_id == link.context.span_id
    )
    assert (target.attributes or {})["bandit_router.decision_id"] == str(runs[1])
    assert (feedback.attributes or {})["bandit_router.reward"] == 0.5
    assert (feedback.attributes or {})["bandit_router.arm"] == "a"


async def test_a_prompt_marker_never_appears_unless_capture_is_on(otel: Otel) -> None:
    r = router(otel, reward=is_right)
    await r.ainvoke([HumanMessage(f"my secret is {MARKER}")])
    assert not [t for t in everything_exported(otel) if MARKER in t]
    captured = router(otel, reward=is_right, capture_content=True)
    await captured.ainvoke([HumanMessage(f"my secret is {MARKER}")])
    assert [t for t in everything_exported(otel) if MARKER in t]


@pytest.mark.parametrize("close", ["aclose", "garbage-collected"])
async def test_breaking_out_of_astream_leaves_no_error_log(
    otel: Otel, caplog: pytest.LogCaptureFixture, close: str
) -> None:
    caplog.set_level(logging.DEBUG)
    r = router(otel, arms={"a": FakeArm(model="m", chunks=5)})
    stream = r.astream("q")
    async for _ in stream:
        break
    if close == "aclose":
        await stream.aclose()  # type: ignore[attr-defined]
    else:  # the usual `async for ...: break`: asyncio's finalizer closes it in a new task
        del stream
        gc.collect()
        for _ in range(20):
            await asyncio.sleep(0)
    route = otel.one("bandit_router.route")
    assert (route.attributes or {})["bandit_router.cancelled"] is True
    assert (otel.one("chat m").attributes or {})["bandit_router.cancelled"] is True
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if "Failed to detach" in r.getMessage()]
    assert (await r.astatistics())["a"].in_flight == 0  # its slot was released


async def test_a_whole_stream_records_usage(otel: Otel) -> None:
    r = router(otel, arms={"a": FakeArm(model="m", chunks=3, output_tokens=7)})
    chunks = [c async for c in r.astream("q")]
    assert "".join(c.content for c in chunks) == "right"
    assert (otel.one("chat m").attributes or {})["gen_ai.usage.output_tokens"] == 7
    assert otel.one("bandit_router.route").status.status_code is StatusCode.UNSET


async def test_telemetry_off_records_nothing(otel: Otel) -> None:
    r = router(otel, arms={"a": FakeArm(model="m")}, telemetry=False, reward=is_right)
    await r.ainvoke("q")
    assert otel.spans() == []
