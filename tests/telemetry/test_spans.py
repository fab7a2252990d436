"""The route span, its attempt spans and every attribute, driven directly (no router)."""

from __future__ import annotations

import asyncio
import math

import pytest
from langchain_core.messages import AIMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from bandit_router import Bandit, __version__
from bandit_router._engine import Selection
from bandit_router.telemetry import (
    INDEX_NONE,
    INDEX_UNTRIED,
    MEAN_NONE,
    Telemetry,
)
from bandit_router.testing import FakeArm, FakeArmError

from ._otel import Otel

SEL = Selection(
    arm="mini",
    arms=("mini", "big", "new", "off"),
    indices=(0.93, 0.71, math.inf, math.nan),
    means=(0.8, 0.9, None, 0.1),
    pulls=(12, 30, 0, 4),
    in_flight=(1, 0, 0, 2),
    explore=True,
    policy="KLUCB",
)


def answer(model: str = "gpt-4o-mini-2024-07-18", tokens: tuple[int, int] = (11, 7)) -> AIMessage:
    return AIMessage(
        content="the answer",
        response_metadata={"model_name": model},
        usage_metadata={
            "input_tokens": tokens[0],
            "output_tokens": tokens[1],
            "total_tokens": sum(tokens),
        },
    )


def telemetry(otel: Otel) -> Telemetry:
    return otel.telemetry(
        arms={"mini": FakeArm(model="gpt-4o-mini"), "big": FakeArm(model="gpt-4o")}
    )


def test_a_successful_call_is_one_route_span_with_one_attempt_child(otel: Otel) -> None:
    tel = telemetry(otel)
    tracer = otel.tracer_provider.get_tracer("the-app")
    with tracer.start_as_current_span("request") as parent:
        route = tel.start_route("my_router", "code", "run-1")
    route.decision(SEL, "run-1")
    attempt = route.attempt("mini", 1)
    attempt.ok(answer())
    route.end(output=answer())

    span = otel.one("bandit_router.route")
    assert span.kind is SpanKind.INTERNAL
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id  # the caller's span
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "bandit_router"
    assert span.instrumentation_scope.version == __version__
    assert dict(span.attributes or {}) == {
        "bandit_router.name": "my_router",
        "bandit_router.context": "code",
        "bandit_router.decision_id": "run-1",
        "bandit_router.arm": "mini",
        "bandit_router.policy": "KLUCB",
        "bandit_router.explore": True,
        "bandit_router.arms": ("mini", "big", "new", "off"),
        "bandit_router.indices": (0.93, 0.71, INDEX_UNTRIED, INDEX_NONE),
        "bandit_router.means": (0.8, 0.9, MEAN_NONE, 0.1),
        "bandit_router.pulls": (12, 30, 0, 4),
        "bandit_router.in_flight": (1, 0, 0, 2),
        "bandit_router.attempts": 1,
        "bandit_router.fallbacks": 0,
    }
    assert span.events == ()

    chat = otel.one("chat gpt-4o-mini")
    assert chat.kind is SpanKind.CLIENT
    assert chat.parent is not None
    assert chat.parent.span_id == span.context.span_id
    assert chat.context.trace_id == span.context.trace_id
    assert chat.status.status_code is StatusCode.UNSET
    assert dict(chat.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "fakearm",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "bandit_router.arm": "mini",
        "bandit_router.attempt": 1,
    }
    # The route span encloses its attempt.
    assert span.start_time is not None
    assert chat.start_time is not None
    assert span.end_time is not None
    assert chat.end_time is not None
    assert span.start_time <= chat.start_time <= chat.end_time <= span.end_time


def test_sentinels_keep_every_array_finite_and_aligned(otel: Otel) -> None:
    sel = Selection(
        arm="a",
        arms=("a", "b", "c", "d"),
        indices=(math.inf, -math.inf, math.nan, -0.25),
        means=(None, 0.0, 1.0, None),
        pulls=(0, 1, 2, 3),
        in_flight=(0, 0, 0, 0),
        explore=False,
        policy="UCB1",
    )
    route = telemetry(otel).start_route("r")
    route.decision(sel, "d")
    route.end()
    attributes = otel.one("bandit_router.route").attributes or {}
    indices = attributes["bandit_router.indices"]
    means = attributes["bandit_router.means"]
    assert indices == (INDEX_UNTRIED, INDEX_NONE, INDEX_NONE, -0.25)  # negative indices pass
    assert means == (MEAN_NONE, 0.0, 1.0, MEAN_NONE)
    assert isinstance(indices, tuple)
    assert isinstance(means, tuple)
    assert all(math.isfinite(x) for x in (*indices, *means))
    assert INDEX_UNTRIED > 1e300
    assert INDEX_NONE < -1e300
    assert MEAN_NONE == -1.0
    for key in ("arms", "indices", "means", "pulls", "in_flight"):
        value = attributes[f"bandit_router.{key}"]
        assert isinstance(value, tuple), key
        assert len(value) == 4, key


@pytest.mark.anyio
async def test_the_decision_of_a_real_bandit_is_recorded(otel: Otel) -> None:
    bandit = Bandit(["a", "b"], name="real")
    tel = otel.telemetry()
    route = tel.start_route("real", run_id="id-1")
    decision = await bandit.choose(context="ctx", decision_id="id-1")
    route.decision(decision.selection, decision.decision_id, decision.context)
    route.end()
    attributes = otel.one("bandit_router.route").attributes or {}
    assert attributes["bandit_router.arm"] == decision.arm
    assert attributes["bandit_router.context"] == "ctx"
    assert attributes["bandit_router.arms"] == ("a", "b")
    assert attributes["bandit_router.indices"] == (INDEX_UNTRIED, INDEX_UNTRIED)  # untried
    assert attributes["bandit_router.means"] == (MEAN_NONE, MEAN_NONE)
    assert attributes["bandit_router.pulls"] == (0, 0)
    assert attributes["bandit_router.policy"] == decision.selection.policy


def test_a_failed_attempt_then_fallback_shows_two_attempt_spans(otel: Otel) -> None:
    tel = telemetry(otel)
    route = tel.start_route("r", "", "run-2")
    route.decision(SEL, "run-2")
    first = route.attempt("mini", 1)
    first.failed(FakeArmError("gpt-4o-mini: scripted failure"))
    route.fallback("mini", "big", FakeArmError("gpt-4o-mini: scripted failure"))
    second = route.attempt("big", 1)
    second.ok(answer("gpt-4o-2024-08-06", (20, 5)))
    route.end()

    failed = otel.one("chat gpt-4o-mini")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "FakeArmError"  # the type, never the message
    assert (failed.attributes or {})["error.type"] == "FakeArmError"
    assert "gen_ai.response.model" not in (failed.attributes or {})
    assert "gen_ai.usage.input_tokens" not in (failed.attributes or {})
    assert failed.events == ()  # no exception event (its message may quote the prompt)

    served = otel.one("chat gpt-4o")
    assert served.status.status_code is StatusCode.UNSET
    assert (served.attributes or {})["gen_ai.usage.input_tokens"] == 20
    assert (served.attributes or {})["bandit_router.arm"] == "big"
    route_span = otel.one("bandit_router.route")
    for child in (failed, served):
        assert child.parent is not None
        assert child.parent.span_id == route_span.context.span_id
    assert failed.end_time is not None
    assert served.start_time is not None
    assert failed.end_time <= served.start_time

    attributes = route_span.attributes or {}
    assert attributes["bandit_router.arm"] == "big"  # the arm that served the call
    assert attributes["bandit_router.attempts"] == 2
    assert attributes["bandit_router.fallbacks"] == 1
    assert route_span.status.status_code is StatusCode.UNSET  # the call succeeded
    (event,) = route_span.events
    assert event.name == "bandit_router.fallback"
    assert dict(event.attributes or {}) == {
        "bandit_router.fallback.from": "mini",
        "bandit_router.fallback.to": "big",
        "error.type": "FakeArmError",
    }


def test_retries_on_one_arm_are_numbered(otel: Otel) -> None:
    route = telemetry(otel).start_route("r")
    route.decision(SEL, "d")
    route.attempt("mini", 1).failed(ConnectionError("reset"))
    route.attempt("mini", 2).failed(TimeoutError())
    route.attempt("mini", 3).ok(answer())
    route.end()
    spans = sorted(otel.named("chat gpt-4o-mini"), key=lambda s: s.start_time or 0)
    assert [(s.attributes or {})["bandit_router.attempt"] for s in spans] == [1, 2, 3]
    assert [(s.attributes or {}).get("error.type") for s in spans] == [
        "ConnectionError",
        "TimeoutError",
        None,
    ]
    assert (otel.one("bandit_router.route").attributes or {})["bandit_router.attempts"] == 3


def test_attempt_names_fall_back_to_the_arm_and_accept_overrides(otel: Otel) -> None:
    route = otel.telemetry().start_route("r")  # no arms registered
    route.attempt("my-chain", 1).ok("plain text output")
    route.attempt("x", 1, "claude-3-5-haiku", provider="anthropic").ok()
    route.end()
    chain = otel.one("chat my-chain")
    assert dict(chain.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "bandit_router.arm": "my-chain",
        "bandit_router.attempt": 1,
    }
    haiku = otel.one("chat claude-3-5-haiku")
    assert (haiku.attributes or {})["gen_ai.request.model"] == "claude-3-5-haiku"
    assert (haiku.attributes or {})["gen_ai.provider.name"] == "anthropic"


def test_a_streamed_attempt_reads_usage_and_model_from_its_chunks(otel: Otel) -> None:
    from langchain_core.messages import AIMessageChunk

    route = telemetry(otel).start_route("r")
    attempt = route.attempt("mini", 1)
    attempt.chunk(AIMessageChunk(content="the ", usage_metadata=None))
    attempt.chunk(
        AIMessageChunk(
            content="",
            usage_metadata={"input_tokens": 9, "output_tokens": 0, "total_tokens": 9},
        )
    )
    attempt.chunk(
        AIMessageChunk(
            content="answer",
            response_metadata={"model_name": "gpt-4o-mini-2024-07-18"},
            usage_metadata={"input_tokens": 0, "output_tokens": 4, "total_tokens": 4},
        )
    )
    attempt.chunk("a str chunk has no usage")
    attempt.ok()
    route.end()
    attributes = otel.one("chat gpt-4o-mini").attributes or {}
    assert attributes["gen_ai.usage.input_tokens"] == 9  # summed, as LangChain adds chunks
    assert attributes["gen_ai.usage.output_tokens"] == 4
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"


def test_inline_reward_is_an_attribute_and_an_evaluation_event(otel: Otel) -> None:
    route = telemetry(otel).start_route("r")
    route.decision(SEL, "d")
    route.attempt("mini", 1).ok(answer())
    route.reward(0.75, "is_right")
    route.end()
    span = otel.one("bandit_router.route")
    assert (span.attributes or {})["bandit_router.reward"] == 0.75
    (event,) = span.events
    assert event.name == "gen_ai.evaluation.result"
    assert dict(event.attributes or {}) == {
        "gen_ai.evaluation.name": "is_right",
        "gen_ai.evaluation.score.value": 0.75,
    }


def test_a_failing_evaluator_is_recorded_without_failing_the_call(otel: Otel) -> None:
    route = telemetry(otel).start_route("r")
    route.decision(SEL, "d")
    route.attempt("mini", 1).ok(answer())
    route.evaluator_error(ValueError("judge down"), "llm_judge")
    route.end()
    span = otel.one("bandit_router.route")
    assert span.status.status_code is StatusCode.UNSET
    attributes = span.attributes or {}
    assert attributes["bandit_router.evaluator_error"] == "ValueError"
    assert "bandit_router.reward" not in attributes
    (event,) = span.events
    assert event.name == "gen_ai.evaluation.result"
    assert dict(event.attributes or {}) == {
        "gen_ai.evaluation.name": "llm_judge",
        "error.type": "ValueError",
    }


def test_degraded_routing_is_an_attribute_and_an_event(otel: Otel) -> None:
    route = telemetry(otel).start_route("r")
    route.degraded("store unavailable: routing on defaults", ConnectionError("redis"))
    route.degraded("no error given")
    route.end()
    span = otel.one("bandit_router.route")
    assert (span.attributes or {})["bandit_router.degraded"] == "no error given"  # the last
    first, second = span.events
    assert first.name == second.name == "bandit_router.degraded"
    assert dict(first.attributes or {}) == {
        "bandit_router.degraded.reason": "store unavailable: routing on defaults",
        "error.type": "ConnectionError",
    }
    assert dict(second.attributes or {}) == {"bandit_router.degraded.reason": "no error given"}


def test_a_failed_call_has_error_status_and_type_only(otel: Otel) -> None:
    route = telemetry(otel).start_route("r")
    route.decision(SEL, "d")
    exc = RuntimeError("every arm failed for this secret prompt")
    route.attempt("mini", 1).failed(exc)
    route.end(exc)
    span = otel.one("bandit_router.route")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RuntimeError"
    assert (span.attributes or {})["error.type"] == "RuntimeError"
    assert span.events == ()


@pytest.mark.parametrize(
    "exc",
    [GeneratorExit(), asyncio.CancelledError(), KeyboardInterrupt()],
    ids=lambda e: type(e).__name__,
)
def test_a_stopped_or_cancelled_call_is_not_an_error(otel: Otel, exc: BaseException) -> None:
    route = telemetry(otel).start_route("r")
    route.decision(SEL, "d")
    route.attempt("mini", 1).failed(exc)
    route.end(exc)
    for span in (otel.one("bandit_router.route"), otel.one("chat gpt-4o-mini")):
        assert span.status.status_code is StatusCode.UNSET
        assert (span.attributes or {})["bandit_router.cancelled"] is True
        assert "error.type" not in (span.attributes or {})
    assert otel.counts("bandit_router.failures") == {}  # nothing counted


def test_every_end_is_idempotent_and_late_calls_are_harmless(otel: Otel) -> None:
    route = telemetry(otel).start_route("r")
    route.decision(SEL, "d")
    attempt = route.attempt("mini", 1)
    attempt.ok(answer())
    attempt.ok(answer())
    attempt.failed(ValueError())  # too late: ignored
    route.end()
    route.end(ValueError())  # ignored
    assert len(otel.spans()) == 2
    assert otel.one("chat gpt-4o-mini").status.status_code is StatusCode.UNSET
    assert otel.one("bandit_router.route").status.status_code is StatusCode.UNSET
    assert otel.counts("bandit_router.failures") == {}


def test_activate_nests_instrumented_calls_under_the_attempt_and_restores(otel: Otel) -> None:
    tel = telemetry(otel)
    route = tel.start_route("r")
    before = trace.get_current_span()
    attempt = route.attempt("mini", 1)
    assert trace.get_current_span() is before  # starting spans attaches nothing
    with attempt.activate():
        assert trace.get_current_span().get_span_context() == attempt.span_context
        # What an instrumented HTTP client or a provider's GenAI instrumentation would do:
        with otel.tracer_provider.get_tracer("httpx").start_as_current_span("POST"):
            pass
    assert trace.get_current_span() is before
    attempt.ok()
    route.end()
    post = otel.one("POST")
    assert post.parent is not None
    assert post.parent.span_id == attempt.span_context.span_id


def _route_span_of(spans: list[ReadableSpan]) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == "bandit_router.route"]
    return span


def test_a_sampled_out_call_records_no_span_but_keeps_metrics_and_propagation() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    otel = Otel(sampler=ALWAYS_OFF)
    try:
        tel = otel.telemetry(arms={"mini": FakeArm(model="gpt-4o-mini")})
        route = tel.start_route("r")
        assert not route.recording
        assert route.span_context.is_valid  # a real (unsampled) trace to propagate
        route.decision(SEL, "d")
        attempt = route.attempt("mini", 1)
        with attempt.activate():
            current = trace.get_current_span().get_span_context()
            assert current.trace_id == route.span_context.trace_id
        attempt.failed(ValueError())
        route.end()
        assert otel.spans() == []
        assert len(tel.links) == 0
        assert otel.counts("bandit_router.pulls")
        assert otel.counts("bandit_router.failures")
        assert otel.histograms("bandit_router.overhead.duration")
    finally:
        otel.shutdown()


def test_without_an_sdk_everything_is_a_no_op() -> None:
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    no_global_sdk = isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    for tel in (
        Telemetry(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider()),
        Telemetry(enabled=False),
        Telemetry(),  # the global providers (the tests never set one)
    ):
        route = tel.start_route("r", "c", "d", input="hello")
        if tel.enabled is False or tel.tracer.__class__.__name__ == "NoOpTracer" or no_global_sdk:
            assert not route.recording
            assert not route.span_context.is_valid
        route.decision(SEL, "d", "c")
        attempt = route.attempt("mini", 1)
        with attempt.activate():
            pass
        attempt.chunk(answer())
        attempt.failed(ValueError())
        route.fallback("mini", "big", ValueError())
        route.attempt("big", 1).ok(answer())
        route.reward(1.0, "judge")
        route.evaluator_error(ValueError())
        route.degraded("x")
        route.end(output=answer())
        with tel.feedback("d") as fb:
            fb.settled(1.0, arm="big", context="c")
        assert fb.linked is None
        assert len(tel.links) == 0


def test_disabled_telemetry_hands_out_shared_null_objects() -> None:
    tel = Telemetry(enabled=False)
    assert tel.start_route("a") is tel.start_route("b")
    assert tel.start_route("a").attempt("x", 1) is tel.start_route("b").attempt("y", 2)
    assert tel.feedback("x") is tel.feedback("y")


def test_configuration_is_validated() -> None:
    from bandit_router import ConfigurationError

    with pytest.raises(ConfigurationError, match="max_content_length"):
        Telemetry(max_content_length=-1)
    with pytest.raises(ConfigurationError, match="maxsize"):
        Telemetry(max_links=-5)
    with pytest.raises(ValueError, match="max_content_length"):
        Telemetry(max_content_length=True)
