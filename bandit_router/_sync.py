"""Thin sync adapters over the async implementation: one background event loop per process.

The router is implemented once, asynchronously. Sync callers (``invoke``, ``stream``,
``statistics``) run that coroutine on a private event loop in a daemon thread, which works
whether or not the calling thread already runs an event loop (Jupyter, a sync function called
from async code).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["iterate_sync", "run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=loop.run_forever, name="bandit-router-sync", daemon=True
            )
            thread.start()
            _loop = loop
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on the background loop and return its result."""
    loop = _background_loop()
    if threading.current_thread().name == "bandit-router-sync":  # pragma: no cover
        coro.close()
        raise RuntimeError("a sync bandit-router call was made from its own event loop")
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def iterate_sync(agen: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async iterator from sync code, one item at a time on the background loop."""
    loop = _background_loop()

    async def step() -> tuple[bool, T | None]:
        try:
            return True, await agen.__anext__()
        except StopAsyncIteration:
            return False, None

    try:
        while True:
            ok, item = asyncio.run_coroutine_threadsafe(step(), loop).result()
            if not ok:
                return
            yield item  # type: ignore[misc]
    finally:
        aclose = getattr(agen, "aclose", None)
        if aclose is not None:
            asyncio.run_coroutine_threadsafe(aclose(), loop).result()
