"""Pytest fixtures for the real-HTTP lane: a running :class:`OpenAIServer` and real clients.

Registered for the whole suite by ``tests/conftest.py``. One server runs for the session; the
``openai_server`` fixture resets it around each test (scripts, records, stalled requests) and
gives it a fresh :attr:`~tests.support.openai_server.OpenAIServer.base_url`, so a test never
reuses another test's pooled connections.

Build clients with :func:`chat_openai`: ``langchain-openai`` caches one async connection pool
per base URL and timeout for the whole process, and a pool's connections belong to the event
loop that opened them. After a test its loop is closed, so those connections can neither be
reused nor closed; collected, they would raise ``ResourceWarning`` (an error here).
:func:`chat_openai` therefore keeps the async clients it built referenced until the process
ends, and closes the sync ones after the test.

``aiohttp`` and ``langchain-openai`` are imported when a test asks for them, so that the rest
of the suite runs in an environment without them (tests that need them are skipped).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

    from tests.support.openai_server import OpenAIServer

# Clients built during the running test (closed or parked after it), and the parked async
# clients: referenced for the whole session so that the garbage collector never finalises a
# connection whose event loop is closed.
_BUILT: list[ChatOpenAI] = []
_PARKED: list[Any] = []


def chat_openai(server: OpenAIServer, model: str, **kwargs: Any) -> ChatOpenAI:
    """A real ``ChatOpenAI`` for ``model`` on ``server``, with default client settings.

    Args:
        server: The server to talk to (its current ``base_url``).
        model: The model name, which picks the server's script.
        **kwargs: Any other ``ChatOpenAI`` argument (``max_retries``, ``timeout``,
            ``stream_usage``, ...); nothing else is changed from LangChain's defaults.

    Returns:
        The model.
    """
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model=model, base_url=server.base_url, api_key=SecretStr("test"), **kwargs)
    _BUILT.append(chat)
    return chat


def _release_clients() -> None:
    while _BUILT:
        chat = _BUILT.pop()
        if chat.root_client is not None:
            chat.root_client.close()
        _PARKED.append(chat.root_async_client)


@pytest.fixture(scope="session")
def openai_server_session() -> Iterator[OpenAIServer]:
    """The session's OpenAI-compatible server (use ``openai_server``, which resets it)."""
    pytest.importorskip("aiohttp")
    pytest.importorskip("langchain_openai")
    from tests.support.openai_server import OpenAIServer

    with OpenAIServer() as server:
        yield server
    _release_clients()


@pytest.fixture
def openai_server(openai_server_session: OpenAIServer) -> Iterator[OpenAIServer]:
    """The running OpenAI-compatible server, reset (and on a fresh base URL) for this test."""
    openai_server_session.reset()
    try:
        yield openai_server_session
    finally:
        _release_clients()
        openai_server_session.reset()
