"""Production-style tracing: the router's spans and metrics to an OTLP collector or the console.

The OpenTelemetry SDK is configured once, globally, as a service would do it: a resource
naming the service, a ``BatchSpanProcessor`` and a periodic metric reader. The router needs
no argument: it uses the global providers. Then 30 calls are routed between two fake models
(no API needed) and one is scored later by feedback.

* By default (offline) every span is printed on one line, and the metrics once at the end.
* With ``--otlp``, or when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, spans and metrics go to an
  OTLP collector over HTTP (Jaeger, Tempo, Phoenix, Honeycomb, an OpenTelemetry Collector ...;
  default endpoint ``http://localhost:4318``). That needs the exporter package:
  ``pip install opentelemetry-exporter-otlp-proto-http``. The standard ``OTEL_EXPORTER_OTLP_*``
  variables (endpoint, headers) configure it. See docs/telemetry.md.

Run:  python examples/tracing_otlp.py            # spans on the console
      OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 python examples/tracing_otlp.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Sequence

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from bandit_router import BanditRouterRunnable
from bandit_router.testing import FakeArm, is_right

KEYS = ("bandit_router.arm", "bandit_router.explore", "bandit_router.reward", "error.type")


def one_line(span: ReadableSpan) -> str:
    """A span as one line: name, kind, duration and the attributes worth a glance."""
    attrs = span.attributes or {}
    shown = " ".join(f"{k.removeprefix('bandit_router.')}={attrs[k]!r}" for k in KEYS if k in attrs)
    ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    return f"span {span.name:22s} {span.kind.name:8s} {ms:6.1f} ms  {shown}\n"


def metric_lines(data: MetricsData) -> str:
    """The router's metrics as one line each: name and total over its data points."""
    lines = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points = list(m.data.data_points)
                if hasattr(points[0], "value"):
                    total = sum(getattr(p, "value", 0) for p in points)
                    lines.append(f"metric {m.name}: {total}\n")
                else:  # a histogram: how many values were recorded
                    count = sum(getattr(p, "count", 0) for p in points)
                    lines.append(f"metric {m.name}: {count} recorded\n")
    return "".join(lines)


class Counting(SpanProcessor):
    """Counts the spans that end (to report how many were exported)."""

    def __init__(self) -> None:
        self.ended = 0

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


def exporters(otlp: bool) -> tuple[SpanExporter, MetricExporter, str]:
    if not otlp:
        return (
            ConsoleSpanExporter(out=sys.stdout, formatter=one_line),
            ConsoleMetricExporter(out=sys.stdout, formatter=metric_lines),
            "the console",
        )
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise SystemExit(
            "OTLP export needs the exporter: pip install opentelemetry-exporter-otlp-proto-http"
        ) from None
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")
    return OTLPSpanExporter(), OTLPMetricExporter(), f"OTLP at {endpoint}"


async def main(otlp: bool) -> None:
    span_exporter, metric_exporter, where = exporters(otlp)
    resource = Resource.create({"service.name": "support-bot"})
    counting = Counting()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    tracer_provider.add_span_processor(counting)
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=60_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    # Once, at start-up: every library that uses the global providers now reports here.
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)

    router = BanditRouterRunnable(
        arms={
            "gpt-4o-mini": FakeArm(model="gpt-4o-mini", quality=0.7, failure_rate=0.1, seed=1),
            "gpt-4o": FakeArm(model="gpt-4o", quality=0.9, seed=2),
        },
        reward=is_right,
        name="support_router",
        max_attempts=1,  # FakeArm's errors are not transient anyway: fall back at once
        seed=0,
    )
    for _ in range(29):
        await router.ainvoke("Where is my order?")
    later = BanditRouterRunnable(arms=router.arms, name="support_router_feedback", seed=0)
    run_id = uuid.uuid4()
    await later.ainvoke("Was this helpful?", config={"run_id": run_id})
    await later.arecord_feedback(run_id, 1.0)  # a thumbs-up, later: a linked feedback span

    tracer_provider.shutdown()  # flushes the batch processor
    meter_provider.shutdown()  # exports the metrics once more
    print(f"{counting.ended} spans exported to {where}.")


def wants_otlp(argv: Sequence[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--otlp", action="store_true", help="export to OTLP instead")
    args = parser.parse_args(argv)
    return bool(args.otlp or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


if __name__ == "__main__":
    asyncio.run(main(wants_otlp()))
