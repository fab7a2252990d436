"""Privacy by default: no prompt, answer or exception text anywhere unless capture is on."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.prompt_values import ChatPromptValue

from bandit_router._engine import Selection
from bandit_router.telemetry import Telemetry

from ._otel import Otel, everything_exported

MARKER = "SECRET-MARKER-7f3a"
SEL = Selection("a", ("a", "b"), (0.5, 0.4), (0.5, 0.4), (1, 1), (0, 0), False, "UCB1")


def answer(text: str) -> AIMessage:
    return AIMessage(
        content=text,
        response_metadata={"model_name": "m"},
        usage_metadata={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
    )


def every_path(tel: Telemetry, tracer: Any) -> None:
    """Drive every method with the marker in every input, output and exception message."""
    prompt = [SystemMessage(f"be brief {MARKER}"), HumanMessage(f"my card is {MARKER}")]
    with tracer.start_as_current_span("app"):
        route = tel.start_route("r", "", "d1", input=prompt)
    route.decision(SEL, "d1")
    failing = route.attempt("a", 1)
    failing.failed(ValueError(f"provider says: bad request {MARKER}"))
    route.fallback("a", "b", ValueError(f"provider says {MARKER}"))
    streaming = route.attempt("b", 1)
    streaming.chunk(AIMessageChunk(content=f"streamed {MARKER}"))
    streaming.ok()
    ok = route.attempt("b", 2)
    ok.ok(answer(f"the answer is {MARKER}"))
    route.evaluator_error(RuntimeError(f"judge choked on {MARKER}"), "judge")
    route.reward(1.0, "judge")
    route.degraded("store unavailable", ConnectionError(f"redis://{MARKER}"))
    route.end(output=answer(f"the answer is {MARKER}"))

    failed_call = tel.start_route("r", "", "d2", input=f"second {MARKER}")
    failed_call.decision(SEL, "d2")
    failed_call.attempt("a", 1).failed(RuntimeError(f"boom {MARKER}"))
    failed_call.end(RuntimeError(f"all arms failed: {MARKER}"))

    pending = tel.start_route("r", "", "d3", input={"question": MARKER})
    pending.decision(SEL, "d3")
    pending.end(output=answer(MARKER))
    with pytest.raises(ValueError, match="invalid score"), tel.feedback("d3", "r"):
        raise ValueError(f"invalid score for {MARKER}")
    with tel.feedback("d3", "r") as fb:
        fb.settled(0.5, arm="a", context="")


def test_no_content_is_exported_by_default(otel: Otel) -> None:
    tel = otel.telemetry()
    every_path(tel, otel.tracer_provider.get_tracer("app"))
    exported = everything_exported(otel)
    assert len(otel.spans()) == 10  # app, 3 routes, 4 attempts, 2 feedbacks
    assert exported  # the check looks at something
    assert not [text for text in exported if MARKER in text]
    for span in otel.spans():
        assert all(e.name != "exception" for e in span.events)
        for key in ("bandit_router.input", "bandit_router.output"):
            assert key not in (span.attributes or {})


def test_capture_content_records_truncated_text_and_exception_messages(otel: Otel) -> None:
    tel = otel.telemetry(capture_content=True)
    every_path(tel, otel.tracer_provider.get_tracer("app"))
    assert [text for text in everything_exported(otel) if MARKER in text]
    first = next(
        s
        for s in otel.named("bandit_router.route")
        if (s.attributes or {})["bandit_router.decision_id"] == "d1"
    )
    attributes = first.attributes or {}
    assert attributes["bandit_router.input"] == (
        f"system: be brief {MARKER}\nhuman: my card is {MARKER}"
    )
    assert attributes["bandit_router.output"] == f"ai: the answer is {MARKER}"
    failed = next(
        s
        for s in otel.named("bandit_router.route")
        if (s.attributes or {})["bandit_router.decision_id"] == "d2"
    )
    assert failed.status.description == f"all arms failed: {MARKER}"
    (exception,) = [e for e in failed.events if e.name == "exception"]
    assert MARKER in str((exception.attributes or {})["exception.message"])
    pending = next(
        s
        for s in otel.named("bandit_router.route")
        if (s.attributes or {})["bandit_router.decision_id"] == "d3"
    )
    assert (pending.attributes or {})["bandit_router.input"] == f'{{"question": "{MARKER}"}}'


def test_captured_text_is_truncated(otel: Otel) -> None:
    tel = otel.telemetry(capture_content=True, max_content_length=10)
    route = tel.start_route("r", input="x" * 50)
    route.end(output="short")
    attributes = otel.one("bandit_router.route").attributes or {}
    assert attributes["bandit_router.input"] == "x" * 10 + "…"
    assert attributes["bandit_router.output"] == "short"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")

    __repr__ = __str__


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("plain", "plain"),
        (HumanMessage("hi"), "human: hi"),
        (
            AIMessage(content=[{"type": "text", "text": "a"}, "b", {"type": "image_url"}]),
            "ai: ab",
        ),
        (ChatPromptValue(messages=[HumanMessage("q")]), "Human: q"),
        (("user", "hello"), "user: hello"),
        ([("user", "hi"), ("assistant", "yo")], "user: hi\nassistant: yo"),
        ({"k": [1, 2]}, '{"k": [1, 2]}'),
        ({"obj": object}, '{"obj": "<class \'object\'>"}'),
        (42, "42"),
        (Unprintable(), "<unprintable Unprintable>"),
    ],
)
def test_content_is_rendered_as_readable_text(otel: Otel, value: object, text: str) -> None:
    tel = otel.telemetry(capture_content=True)
    tel.start_route("r", input=value).end()
    assert (otel.one("bandit_router.route").attributes or {})["bandit_router.input"] == text
