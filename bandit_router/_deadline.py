"""Per-attempt time limits that share one timer per event loop.

``asyncio.timeout`` schedules (and cancels) a timer handle for every block it guards: a heap
push, a handle and a cancellation per attempt, about a tenth of the router's own time. Every
attempt of one router has the same limit, so the deadlines of the attempts started on one
loop come in increasing order: a queue in start order is sorted by deadline, and one timer for
its head is enough. A finished attempt only marks its entry done; the timer, when it fires,
drops finished entries, expires the overdue ones and re-arms for the next one.

Expiry works as in ``asyncio.timeout`` (Python 3.11+): the task is cancelled, and leaving the
block turns that cancellation, and only that one, into :class:`TimeoutError`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

__all__ = ["Deadline", "Deadlines"]

_PENDING, _DONE, _EXPIRING, _EXPIRED = range(4)


class Deadline:
    """One guarded block: ``with deadlines.start(): await ...``.

    Made by :meth:`Deadlines.start`; the clock starts, and the block is watched, only once it
    is entered (a deadline never entered can cancel nothing).
    """

    __slots__ = ("_cancelling", "_owner", "_seconds", "_state", "_task", "when")

    def __init__(self, owner: Deadlines | None, seconds: float) -> None:
        self._owner = owner
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self.when = float("inf")
        self._state = _PENDING
        self._cancelling = 0

    def __enter__(self) -> Deadline:
        owner = self._owner
        assert owner is not None  # _Never overrides this
        task = asyncio.current_task(owner.loop)
        if task is None:
            raise RuntimeError("a deadline must be entered inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self.when = owner.loop.time() + self._seconds
        owner._watch(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state == _PENDING:
            self._state = _DONE
            return
        if self._state == _EXPIRING:
            self._state = _EXPIRED
            assert self._task is not None  # only a deadline with a task expires
            # Ours only if no one else cancelled the task meanwhile (asyncio.timeout's rule).
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc

    def expired(self) -> bool:
        """Whether this deadline passed (and cancelled its block)."""
        return self._state >= _EXPIRING

    def _expire(self) -> None:
        self._state = _EXPIRING
        assert self._task is not None
        self._task.cancel()


class _Never(Deadline):
    """No limit (``timeout=None``)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(None, 0.0)

    def __enter__(self) -> Deadline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def expired(self) -> bool:
        """Never."""
        return False


_NEVER = _Never()


class Deadlines:
    """The deadlines of one router's attempts on one event loop, ``limit`` seconds each.

    Args:
        loop: The running loop; every deadline is started and entered on it.
        limit: Seconds per block, > 0; ``None`` for no limit.
    """

    __slots__ = ("_queue", "_timer", "limit", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: float | None) -> None:
        self.loop = loop
        self.limit = limit
        self._queue: deque[Deadline] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> Deadline:
        """Return a deadline of ``limit`` seconds for the block it is entered around."""
        return _NEVER if self.limit is None else Deadline(self, self.limit)

    def _watch(self, d: Deadline) -> None:
        queue = self._queue
        while queue and queue[0]._state != _PENDING:  # finished or expired: nothing to watch
            queue.popleft()
        queue.append(d)
        if self._timer is None:
            self._timer = self.loop.call_at(d.when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        queue = self._queue
        now = self.loop.time()
        while queue:
            d = queue[0]
            if d._state == _PENDING:
                if d.when > now:
                    self._timer = self.loop.call_at(d.when, self._fire)
                    return
                d._expire()
            queue.popleft()

    def __len__(self) -> int:
        """Blocks still watched (finished ones are dropped lazily)."""
        return sum(1 for d in self._queue if d._state == _PENDING)
