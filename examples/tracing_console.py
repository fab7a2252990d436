"""Print the router's OpenTelemetry spans to the console (offline, no API key).

Three calls through a ``BanditRouterRunnable`` over two fake chat models:

1. ``gpt-4o-mini`` fails, the call falls back to ``gpt-4o``, an inline evaluator scores it;
2. a streamed call;
3. a call scored later by delayed feedback: its ``bandit_router.feedback`` span links to the
   call's route span.

The SDK's ``ConsoleSpanExporter`` prints every span as JSON when it ends; a compact tree of
the same spans follows. In production, configure an OTLP exporter instead (docs/telemetry.md).

Run:  python examples/tracing_console.py
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bandit_router import BanditRouterRunnable, Prior
from bandit_router.testing import FakeArm, is_right


async def main() -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    arms = {
        "gpt-4o-mini": FakeArm(model="gpt-4o-mini", fail_first=1, quality=0.8, seed=1),
        "gpt-4o": FakeArm(model="gpt-4o", quality=0.95, seed=2),
    }
    # A prior on gpt-4o makes the untried gpt-4o-mini the first choice (it fails once).
    router = BanditRouterRunnable(
        arms=arms,
        reward=is_right,
        priors={"gpt-4o": Prior(0.9, 2)},
        tracer_provider=provider,
        name="support_router",
        seed=0,
    )
    await router.ainvoke("Where is my order?")
    async for _ in router.astream("And my invoice?"):
        pass
    # A router without an inline evaluator: the reward arrives later, as feedback.
    later = BanditRouterRunnable(
        arms=arms, tracer_provider=provider, name="support_router_feedback", seed=0
    )
    run_id = uuid.uuid4()
    await later.ainvoke("Cancel my subscription", config={"run_id": run_id})
    await later.arecord_feedback(run_id, 1.0)  # the user's thumbs-up, later
    provider.shutdown()
    return list(memory.get_finished_spans())


def tree(spans: list[ReadableSpan]) -> None:
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    for s in spans:
        parent = s.parent.span_id if s.parent else None
        by_parent.setdefault(parent, []).append(s)

    def show(span: ReadableSpan, depth: int) -> None:
        attrs = span.attributes or {}
        keys = ("bandit_router.arm", "bandit_router.reward", "error.type", "gen_ai.request.model")
        shown = {k.split(".")[-1]: attrs[k] for k in keys if k in attrs}
        links = f" links to {len(span.links)} route span" if span.links else ""
        print(f"{'  ' * depth}{span.name} {shown}{links}")
        for child in by_parent.get(span.context.span_id, []):
            show(child, depth + 1)

    print("\n--- the same spans as a tree ---")
    for root in by_parent.get(None, []):
        show(root, 0)


if __name__ == "__main__":
    tree(asyncio.run(main()))
