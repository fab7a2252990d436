"""The time limit of one attempt, measured as time spent waiting for the arm.

``timeout`` bounds an attempt end to end: the call, or every chunk of a stream until its end.
Only time spent waiting for the arm counts (a consumer that takes its time between two chunks
does not use up the arm's time), and ``stall_timeout`` bounds any single wait (the first
chunk, or the gap between two chunks).

A saturated event loop is not the arm's fault. While attempts are timed, a heartbeat measures
how far behind its timers the loop runs (a beat due every :data:`BEAT` seconds that runs late
was kept waiting by other work: thousands of calls at once, a CPU-bound callback, a starved
process). When a deadline passes, the time the loop spent behind since the attempt started
is not the arm's: if it exceeds :data:`LAG_MIN`, the deadline moves by it, at most
:data:`MAX_EXTENSION` times the limit in all. An arm that hangs on a loop that keeps up times
out on time. (On trio the deadline is a plain cancel scope deadline.)

The async faces wait inside an anyio cancel scope, which the deadline cancels. The sync
faces cannot interrupt a blocking call (Python cannot cancel a thread): they check the limit
as each chunk arrives, so a stream that runs past it ends there; a single blocking call is
bounded by the client's own timeout (the router sets it on clients it knows, see
:mod:`bandit_router.langchain.arms`).
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from types import TracebackType
from typing import Final

import anyio

__all__ = ["BEAT", "LAG_MIN", "MAX_EXTENSION", "AttemptTimeoutError", "AttemptTimer"]

#: Seconds between two beats of a loop's heartbeat (only while attempts are timed on it).
BEAT: Final = 0.05
#: A beat later than this is the loop falling behind (below it: timer granularity).
_SLACK: Final = 0.005
#: Time behind (seconds) above which a deadline moves.
LAG_MIN: Final = 0.05
#: The deadline moves at most this many limits in all.
MAX_EXTENSION: Final = 3.0


class _Heartbeat:
    """How far behind its timers one event loop has run, in all: the lateness of its beats."""

    __slots__ = ("__weakref__", "_handle", "_loop", "_when", "behind", "users")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._when = 0.0
        self.behind = 0.0
        self.users = 0

    def acquire(self) -> float:
        """One more timed wait; returns the loop's time behind so far."""
        self.users += 1
        if self._handle is None:
            self._when = self._loop.time() + BEAT
            self._handle = self._loop.call_at(self._when, self._beat)
        return self.behind

    def release(self) -> None:
        """A timed wait ended (the heartbeat stops at its next beat when none is left)."""
        self.users -= 1

    def _beat(self) -> None:
        now = self._loop.time()
        late = now - self._when
        if late > _SLACK:
            self.behind += late
        if self.users > 0:
            self._when = now + BEAT
            self._handle = self._loop.call_at(self._when, self._beat)
        else:
            self._handle = None


_HEARTBEATS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Heartbeat] = (
    weakref.WeakKeyDictionary()
)


def _heartbeat(loop: asyncio.AbstractEventLoop) -> _Heartbeat:
    beat = _HEARTBEATS.get(loop)
    if beat is None:
        beat = _HEARTBEATS[loop] = _Heartbeat(loop)
    return beat


class AttemptTimeoutError(TimeoutError):
    """An arm gave no answer (or no next chunk) within the router's limit.

    Attributes:
        arm: The arm.
        limit: The limit that passed, in seconds.
        attempt: The attempt's number on the arm, from 1.
    """

    def __init__(
        self, arm: str, limit: float, attempt: int, what: str, name: str = "timeout"
    ) -> None:
        super().__init__(f"arm {arm!r} gave no {what} within {name}={limit} s (attempt {attempt})")
        self.arm = arm
        self.limit = limit
        self.attempt = attempt


class AttemptTimer:
    """The time budget of one attempt on one arm.

    Args:
        arm: The arm (for the error message).
        attempt: The attempt's number (for the error message).
        limit: Seconds of waiting for the arm in all (``None``: no limit).
        stall: Seconds of any single wait (``None``: no limit).
    """

    __slots__ = ("_attempt", "_left", "_limit", "_stall", "arm")

    def __init__(self, arm: str, attempt: int, limit: float | None, stall: float | None) -> None:
        self.arm = arm
        self._attempt = attempt
        self._limit = limit
        self._left = math.inf if limit is None else limit
        self._stall = stall

    def wait(self, what: str = "answer") -> _Wait:
        """A context manager around one async wait for the arm (``with timer.wait(): await ...``).

        Raises:
            AttemptTimeoutError: Leaving the block, if the limit passed while it waited.
        """
        return _Wait(self, what)

    def spent(self, seconds: float, what: str = "answer") -> None:
        """Count ``seconds`` of a sync wait; raise if the budget is exhausted.

        Raises:
            AttemptTimeoutError: If the attempt's limit or the stall limit has passed.
        """
        self._left -= seconds
        if self._left < 0:
            self._raise(self._limit, what)
        if self._stall is not None and seconds > self._stall:
            self._raise(self._stall, what)

    def _budget(self) -> tuple[float, float | None]:
        """Seconds this wait may take, and the limit that bounds it (``None``: unlimited)."""
        left, stall = self._left, self._stall
        if stall is not None and stall < left:
            return stall, stall
        return left, self._limit

    def _raise(self, limit: float | None, what: str) -> None:
        name = "stall_timeout" if limit is not None and limit == self._stall else "timeout"
        raise AttemptTimeoutError(
            self.arm, limit if limit is not None else math.inf, self._attempt, what, name
        )


class _Wait:
    """One guarded wait (see :meth:`AttemptTimer.wait`): an async context manager.

    On asyncio the block runs inside the standard library's ``asyncio.timeout`` (cheap, and
    exact about whose cancellation it was); the router's own timer, which knows the loop's
    heartbeat, tells it when to expire. On trio, an anyio cancel scope with a deadline.
    """

    __slots__ = (
        "_beat",
        "_behind0",
        "_cm",
        "_fired_at",
        "_handle",
        "_limit",
        "_loop",
        "_moved",
        "_scope",
        "_started",
        "_timer",
        "_what",
        "expired",
    )

    def __init__(self, timer: AttemptTimer, what: str) -> None:
        self._timer = timer
        self._what = what
        self._handle: asyncio.TimerHandle | None = None
        self._beat: _Heartbeat | None = None
        self._behind0 = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cm: asyncio.Timeout | None = None
        self._scope: anyio.CancelScope | None = None
        self._limit: float | None = None
        self._moved = 0.0
        self._fired_at = 0.0
        self._started = 0.0
        self.expired = False

    async def __aenter__(self) -> _Wait:
        budget, self._limit = self._timer._budget()
        self._started = time.perf_counter()
        if budget == math.inf:
            return self
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio: a plain deadline
            self._scope = scope = anyio.CancelScope(deadline=anyio.current_time() + max(budget, 0))
            scope.__enter__()
            return self
        self._loop = loop
        self._cm = cm = asyncio.timeout(None)
        await cm.__aenter__()
        self._beat = beat = _heartbeat(loop)
        self._behind0 = beat.acquire()
        self._handle = loop.call_at(loop.time() + max(budget, 0.0), self._fire)
        return self

    def _fire(self) -> None:
        loop = self._loop
        if loop is None:  # pragma: no cover (the handle is cancelled with the wait)
            return
        self._fired_at = loop.time()
        self._handle = None
        # Measure the loop's queueing delay too: how long a callback scheduled now waits.
        loop.call_soon(self._confirm)

    def _confirm(self) -> None:
        cm, beat, loop = self._cm, self._beat, self._loop
        if cm is None or beat is None or loop is None or self.expired:
            return  # the wait ended before this check ran
        now = loop.time()
        # The loop's time behind since the attempt started, and how long this very check
        # waited in its queue: neither is the arm's; what was already granted is not again.
        queued = now - self._fired_at
        behind = beat.behind - self._behind0 + (queued if queued > _SLACK else 0.0)
        owed = behind - self._moved
        limit = self._limit or 0.0
        if owed > LAG_MIN and self._moved < MAX_EXTENSION * limit:
            owed = min(owed, MAX_EXTENSION * limit - self._moved)
            self._moved += owed
            self._handle = loop.call_at(now + owed, self._fire)
            return
        self.expired = True
        cm.reschedule(now)  # expire now: asyncio cancels the task and turns it into TimeoutError

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        timer = self._timer
        timer._left -= time.perf_counter() - self._started
        scope = self._scope
        if scope is not None:  # trio
            swallowed = scope.__exit__(exc_type, exc, tb)
            if scope.cancelled_caught:
                timer._raise(self._limit, self._what)
            return bool(swallowed)
        cm = self._cm
        if cm is None:
            return False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._beat is not None:
            self._beat.release()
            self._beat = None
        self._cm = None  # a late _confirm finds nothing to expire
        try:
            await cm.__aexit__(exc_type, exc, tb)
        except TimeoutError as raised:
            if self.expired and raised is not exc:  # ours, not the arm's own TimeoutError
                timer._raise(self._limit, self._what)
            raise
        return False
