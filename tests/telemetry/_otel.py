"""A real OpenTelemetry SDK wired to in-memory exporters, and readers for the tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

from bandit_router.telemetry import Telemetry

Attrs = frozenset[tuple[str, Any]]


class Otel:
    """Providers of the SDK with everything kept in memory."""

    def __init__(self, sampler: Sampler | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = (
            TracerProvider() if sampler is None else TracerProvider(sampler=sampler)
        )
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def telemetry(self, **kwargs: Any) -> Telemetry:
        return Telemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kwargs
        )

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()

    # --- spans ---

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    # --- metrics ---

    def _points(self, name: str) -> Iterator[tuple[Any, Any]]:
        data = self.reader.get_metrics_data()
        if data is None:
            return
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            yield metric, point

    def metric(self, name: str) -> Any:
        """The metric itself (name, unit, description), or None."""
        for metric, _ in self._points(name):
            return metric
        return None

    def counts(self, name: str) -> dict[Attrs, int | float]:
        out: dict[Attrs, int | float] = {}
        for _, point in self._points(name):
            assert isinstance(point, NumberDataPoint)
            out[_key(point.attributes)] = point.value
        return out

    def histograms(self, name: str) -> dict[Attrs, HistogramDataPoint]:
        out: dict[Attrs, HistogramDataPoint] = {}
        for _, point in self._points(name):
            assert isinstance(point, HistogramDataPoint)
            out[_key(point.attributes)] = point
        return out


def _key(attributes: Mapping[str, Any] | None) -> Attrs:
    return frozenset((attributes or {}).items())


def attrs(**kv: Any) -> Attrs:
    """A metric attribute set, written with ``__`` for dots: ``bandit_router__arm="a"``."""
    return frozenset((k.replace("__", "."), v) for k, v in kv.items())


def everything_exported(otel: Otel) -> list[str]:
    """Every string a back end would receive: span names, attributes, events, links, status,
    metric names and attributes, flattened to text."""
    out: list[str] = []

    def add(value: object) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, Sequence):
            for v in value:
                add(v)
        elif value is not None:
            out.append(str(value))

    for span in otel.spans():
        add(span.name)
        add(span.status.description)
        for k, v in (span.attributes or {}).items():
            add(k)
            add(v)
        for event in span.events:
            add(event.name)
            for k, v in (event.attributes or {}).items():
                add(k)
                add(v)
        for link in span.links:
            for k, v in (link.attributes or {}).items():
                add(k)
                add(v)
        add(span.to_json())
    data = otel.reader.get_metrics_data()
    if data is not None:
        add(data.to_json())
    return out
