from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """LangChain's async code needs asyncio."""
    return "asyncio"
