"""Which event loop runs, background work on it, and one portal loop for sync callers.

The routing core runs on asyncio and on trio (through anyio), and from plain threads (the sync
faces). Work that must outlive a call (scoring an answer after it was returned) is spawned
here: a task on the caller's asyncio loop, a system task under trio, or a coroutine on the
portal loop for sync callers that have no loop of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["Background", "asyncio_loop", "portal_loop"]

T = TypeVar("T")

_portal_lock = threading.Lock()
_portal: asyncio.AbstractEventLoop | None = None
_PORTAL_THREAD = "bandit-router-portal"


def asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or ``None`` (no loop, or another library such as trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def portal_loop() -> asyncio.AbstractEventLoop:
    """The process's portal loop: one daemon thread running an asyncio loop.

    Sync callers hand it work that is asynchronous by nature (an async evaluator, a store with
    only an async interface). Arms are never called on it: a client's connection pool would
    bind itself to this loop and fail on the caller's.
    """
    global _portal
    with _portal_lock:
        if _portal is None or _portal.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name=_PORTAL_THREAD, daemon=True).start()
            _portal = loop
        return _portal


def run_on_portal(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the portal loop and wait for its result (from a thread without a loop)."""
    if threading.current_thread().name == _PORTAL_THREAD:
        coro.close()
        raise RuntimeError("bandit-router: a sync call was made from the router's own portal loop")
    return asyncio.run_coroutine_threadsafe(coro, portal_loop()).result()


class Background:
    """Work spawned to run after a call returns, and a way to wait for all of it.

    Tasks on asyncio loops are kept (strong references: the loop keeps only weak ones) until
    they finish; coroutines handed to the portal loop are kept as futures.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._futures: set[Future[Any]] = set()

    def spawn(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``make()`` in the background of the current async context (asyncio or trio)."""
        loop = asyncio_loop()
        if loop is not None:
            task = loop.create_task(make())
            with self._lock:
                self._tasks.add(task)
            task.add_done_callback(self._task_done)
            return
        import trio

        trio.lowlevel.spawn_system_task(make)

    def spawn_on_portal(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` on the portal loop, from a sync caller, without waiting for it."""
        future = asyncio.run_coroutine_threadsafe(coro, portal_loop())
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._future_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        with self._lock:
            self._tasks.discard(task)

    def _future_done(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)

    def pending(self) -> int:
        """How many spawned jobs have not finished."""
        with self._lock:
            return len(self._tasks) + len(self._futures)

    async def wait(self) -> None:
        """Wait for the jobs spawned on the current asyncio loop and on the portal loop.

        Jobs on other loops that still run are waited for from a worker thread; jobs on a loop
        that has closed were cancelled with it.
        """
        loop = asyncio_loop()
        while True:
            with self._lock:
                mine = [t for t in self._tasks if loop is not None and t.get_loop() is loop]
                others = [t for t in self._tasks if t not in mine and not t.get_loop().is_closed()]
                futures = list(self._futures)
            if not mine and not others and not futures:
                return
            if mine:
                await asyncio.wait(mine)
            if futures or others:
                import anyio.to_thread

                await anyio.to_thread.run_sync(_wait_all, futures, others)

    def wait_sync(self) -> None:
        """Wait, from a thread without a running loop, for every job that can still finish."""
        while True:
            with self._lock:
                tasks = [t for t in self._tasks if not t.get_loop().is_closed()]
                futures = list(self._futures)
            if not tasks and not futures:
                return
            _wait_all(futures, tasks)


def _wait_all(futures: list[Future[Any]], tasks: list[asyncio.Task[Any]]) -> None:
    for future in futures:
        # The job logged its own failure: waiting is all that is wanted here.
        with contextlib.suppress(BaseException):
            future.result()
    for task in tasks:
        done = threading.Event()
        loop = task.get_loop()
        try:
            loop.call_soon_threadsafe(_when_done, task, done)
        except RuntimeError:  # the loop closed meanwhile: its tasks were cancelled
            continue
        done.wait()


def _when_done(task: asyncio.Task[Any], done: threading.Event) -> None:
    if task.done():
        done.set()
    else:
        task.add_done_callback(lambda _: done.set())
