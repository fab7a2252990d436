"""Delayed feedback: a short span linked to the decision's route span; the bounded link map."""

from __future__ import annotations

import threading
import time

import pytest
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags

from bandit_router import ConfigurationError, InvalidRewardError, UnknownDecisionError
from bandit_router._engine import Selection
from bandit_router.telemetry import LinkCache, RouteSpan, Telemetry

from ._otel import Otel, attrs


def sel(arm: str = "a") -> Selection:
    return Selection(arm, ("a", "b"), (0.5, 0.4), (0.5, 0.4), (1, 1), (0, 0), False, "UCB1")


def route_pending(otel: Otel) -> tuple[Telemetry, str]:
    """A call routed and ended without an inline reward: its decision waits for feedback."""
    tel = otel.telemetry()
    route = tel.start_route("r", "tenant-7", "run-9")
    route.decision(sel("b"), "run-9")
    route.attempt("b", 1).ok()
    route.end()
    return tel, "run-9"


def test_feedback_is_a_short_span_linked_to_the_right_decision(otel: Otel) -> None:
    tel = otel.telemetry()
    routes = {}
    for i in range(3):  # three pending decisions: the link must find the right one
        route = tel.start_route("r", "tenant-7", f"run-{i}")
        route.decision(sel("b"), f"run-{i}")
        route.attempt("b", 1).ok()
        route.end()
        routes[f"run-{i}"] = route.span_context
    assert len(tel.links) == 3
    time.sleep(0.02)
    tracer = otel.tracer_provider.get_tracer("the-app")
    with (
        tracer.start_as_current_span("POST /feedback") as request,
        tel.feedback("run-1", "r") as fb,
    ):
        fb.settled(0.25, arm="b", context="tenant-7")
    assert fb.linked == routes["run-1"]

    span = otel.one("bandit_router.feedback")
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id  # where feedback came in
    (link,) = span.links
    assert link.context.trace_id == routes["run-1"].trace_id
    assert link.context.span_id == routes["run-1"].span_id
    decision_span = next(
        s
        for s in otel.named("bandit_router.route")
        if (s.attributes or {})["bandit_router.decision_id"] == "run-1"
    )
    assert link.context.span_id == decision_span.context.span_id
    attributes = dict(span.attributes or {})
    delay = attributes.pop("bandit_router.feedback.delay_s")
    assert isinstance(delay, float)
    assert 0.02 <= delay < 5
    assert attributes == {
        "bandit_router.name": "r",
        "bandit_router.decision_id": "run-1",
        "bandit_router.reward": 0.25,
        "bandit_router.arm": "b",
        "bandit_router.context": "tenant-7",
    }
    (event,) = span.events
    assert event.name == "gen_ai.evaluation.result"
    assert dict(event.attributes or {}) == {
        "gen_ai.evaluation.name": "feedback",
        "gen_ai.evaluation.score.value": 0.25,
    }
    assert "run-1" not in tel.links
    assert len(tel.links) == 2
    key = attrs(bandit_router__name="r", bandit_router__arm="b")
    hist = otel.histograms("bandit_router.reward")[key]
    assert (hist.count, hist.sum) == (1, 0.25)


def test_an_explicit_link_and_delay_win(otel: Otel) -> None:
    tel, run = route_pending(otel)
    elsewhere = SpanContext(
        trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=TraceFlags(1)
    )
    with tel.feedback(run, "r", link=elsewhere, evaluation_name="thumbs") as fb:
        fb.settled(1.0, arm="b", delay_s=42.0)
    span = otel.one("bandit_router.feedback")
    (link,) = span.links
    assert (link.context.trace_id, link.context.span_id) == (0x1234, 0x5678)
    assert (span.attributes or {})["bandit_router.feedback.delay_s"] == 42.0
    assert (span.events[0].attributes or {})["gen_ai.evaluation.name"] == "thumbs"


def test_feedback_for_a_decision_made_elsewhere_has_no_link(otel: Otel) -> None:
    tel = otel.telemetry()
    with tel.feedback("made-by-another-process", "r") as fb:
        fb.settled(0.5, arm="a", context="")
    span = otel.one("bandit_router.feedback")
    assert span.links == ()
    assert fb.linked is None
    assert "bandit_router.feedback.delay_s" not in (span.attributes or {})
    assert (span.attributes or {})["bandit_router.reward"] == 0.5


@pytest.mark.parametrize(
    "exc", [InvalidRewardError("score 1.5 is out of [0, 1]"), UnknownDecisionError("expired")]
)
def test_rejected_feedback_is_an_error_span_and_keeps_the_link(otel: Otel, exc: Exception) -> None:
    tel, run = route_pending(otel)
    with pytest.raises(type(exc)), tel.feedback(run, "r"):
        raise exc
    span = otel.one("bandit_router.feedback")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == type(exc).__name__
    assert (span.attributes or {})["error.type"] == type(exc).__name__
    assert "bandit_router.reward" not in (span.attributes or {})
    assert len(span.links) == 1
    assert run in tel.links  # a corrected retry can still link
    assert otel.histograms("bandit_router.reward") == {}


def test_settled_decisions_leave_the_link_map(otel: Otel) -> None:
    tel = otel.telemetry()

    def call(run: str) -> RouteSpan:
        route = tel.start_route("r", "", run)
        route.decision(sel(), run)
        return route

    r1 = call("inline")
    r1.reward(1.0)
    r1.end()
    r2 = call("failed")
    r2.end(RuntimeError())
    r3 = call("cancelled")
    r3.end(GeneratorExit())
    r4 = call("judge-broke")
    r4.evaluator_error(ValueError())
    r4.end()
    r5 = call("pending")
    r5.end()
    assert list(tel.links._data) == ["pending"]


def test_link_cache_is_a_bounded_lru() -> None:
    cache = LinkCache(maxsize=3)
    ctx = [
        SpanContext(trace_id=i + 1, span_id=i + 1, is_remote=False, trace_flags=TraceFlags(1))
        for i in range(5)
    ]
    for i in range(3):
        cache.put(f"d{i}", ctx[i], float(i))
    assert cache.get("d0") == ctx[0]  # d0 is now the most recent
    cache.put("d3", ctx[3], 3.0)  # evicts d1, the least recently used
    assert "d1" not in cache
    assert len(cache) == 3
    assert cache.started("d3") == 3.0
    assert cache.pop("d0") == ctx[0]
    assert cache.pop("d0") is None
    assert cache.get("missing") is None
    assert cache.started("missing") is None
    cache.put("d2", ctx[4], 9.0)  # replacing an id keeps one entry
    assert cache.get("d2") == ctx[4]
    assert len(cache) == 2
    empty = LinkCache(maxsize=0)
    empty.put("x", ctx[0], 0.0)
    assert len(empty) == 0
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigurationError, match="maxsize"):
            LinkCache(maxsize=bad)  # type: ignore[arg-type]


def test_link_cache_survives_threads() -> None:
    cache = LinkCache(maxsize=100)
    ctx = SpanContext(trace_id=1, span_id=1, is_remote=False)

    def work(k: int) -> None:
        for i in range(2000):
            cache.put(f"{k}-{i}", ctx, 0.0)
            cache.get(f"{k}-{i - 1}")
            cache.pop(f"{k}-{i - 2}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) <= 100


def test_telemetry_bounds_its_link_map(otel: Otel) -> None:
    tel = otel.telemetry(max_links=2)
    for i in range(5):
        route = tel.start_route("r", "", f"d{i}")
        route.decision(sel(), f"d{i}")
        route.end()
    assert list(tel.links._data) == ["d3", "d4"]
