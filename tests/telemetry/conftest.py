from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._otel import Otel


@pytest.fixture
def anyio_backend() -> str:
    """LangChain's async code needs asyncio."""
    return "asyncio"


@pytest.fixture
def otel() -> Iterator[Otel]:
    """A real OpenTelemetry SDK: in-memory span exporter and metric reader."""
    o = Otel()
    yield o
    o.shutdown()
