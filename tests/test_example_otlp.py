"""examples/tracing_otlp.py with OTLP export, received by a local fake collector."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tracing_otlp.py"


class Collector(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.received: dict[str, list[bytes]] = {}
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_spans_and_metrics_reach_an_otlp_collector(collector: Collector, tmp_path: Path) -> None:
    port = collector.server_address[1]
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONWARNINGS": "error", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"62 spans exported to OTLP at {endpoint}." in proc.stdout
    assert "span bandit_router.route" not in proc.stdout  # not on the console
    names: list[str] = []
    for body in collector.received.get("/v1/traces", []):
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}
            assert service["service.name"] == "support-bot"
            names += [s.name for ss in rs.scope_spans for s in ss.spans]
    assert len(names) == 62
    assert names.count("bandit_router.route") == 30
    assert names.count("bandit_router.feedback") == 1
    metric_names = set()
    for body in collector.received.get("/v1/metrics", []):
        mreq = ExportMetricsServiceRequest()
        mreq.ParseFromString(body)
        for rm in mreq.resource_metrics:
            metric_names |= {m.name for sm in rm.scope_metrics for m in sm.metrics}
    assert {"bandit_router.pulls", "bandit_router.reward"} <= metric_names


def test_without_the_exporter_package_the_message_says_what_to_install(tmp_path: Path) -> None:
    # Hide the exporter package: the example must say what to install, not crash.
    shadow = tmp_path / "shadow" / "opentelemetry" / "exporter"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('hidden for the test')\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path / "shadow"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
    }
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert proc.returncode != 0
    assert "pip install opentelemetry-exporter-otlp-proto-http" in proc.stderr
