"""Without an OpenTelemetry SDK the router skips its (no-op) spans and metrics altogether.

The global providers are process-wide and can be set once, so each case runs in a fresh
interpreter.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PRELUDE = """
import asyncio
from opentelemetry import metrics, trace
from bandit_router import BanditRouterRunnable
from bandit_router.telemetry import _NULL_ROUTE, _inert
from bandit_router.testing import FakeArm, is_right

def router():
    return BanditRouterRunnable(arms={"a": FakeArm()}, reward=is_right)

def route_is_null():
    return router()._telemetry.start_route("r") is _NULL_ROUTE
"""


def run(body: str) -> str:
    code = PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("", "True True"),
        (
            "from opentelemetry.sdk.trace import TracerProvider\n"
            "trace.set_tracer_provider(TracerProvider())",
            "False False",
        ),
        (
            "from opentelemetry.sdk.metrics import MeterProvider\n"
            "metrics.set_meter_provider(MeterProvider())",
            "False False",
        ),
    ],
    ids=["no SDK", "tracing SDK", "metrics SDK only"],
)
def test_inert_only_while_neither_global_provider_has_an_sdk(setup: str, expected: str) -> None:
    assert run(setup + "\nprint(_inert(), route_is_null())") == expected


def test_a_metrics_only_sdk_still_counts_the_routers_pulls() -> None:
    out = run(
        """
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        r = router()
        for _ in range(3):
            asyncio.run(r.ainvoke("q"))
        data = reader.get_metrics_data()
        pulls = [
            p.value
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "bandit_router.pulls"
            for p in m.data.data_points
        ]
        print(sum(pulls))
        """
    )
    assert out == "3"


def test_an_sdk_set_after_the_router_is_built_is_followed() -> None:
    out = run(
        """
        r = router()
        before = r._telemetry.start_route("r") is _NULL_ROUTE
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        asyncio.run(r.ainvoke("q"))
        names = sorted(s.name for s in exporter.get_finished_spans())
        print(before, names)
        """
    )
    assert out.startswith("True ")
    assert "bandit_router.route" in out
