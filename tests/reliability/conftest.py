"""Fixtures of the reliability suite: every store kind, fresh for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ._support import STORE_KINDS, Stores


@pytest.fixture
def anyio_backend() -> str:
    """LangChain's async code needs asyncio."""
    return "asyncio"


@pytest.fixture(params=STORE_KINDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    """Makes fresh stores of one kind (memory, SQLite, Redis); closes and deletes them after."""
    made = Stores(request.param, tmp_path)
    try:
        yield made
    finally:
        await made.close()
