"""What the routing core reports, and to whom: the observer interface.

The core calls one :class:`RouteObserver` per routed call and never looks at what it does;
:mod:`bandit_router.telemetry` implements it with OpenTelemetry spans and metrics. With no
observer (telemetry off, or no SDK configured) the core gets :data:`NULL_ROUTE`, whose methods
do nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from bandit_router._engine import Selection

__all__ = ["NULL_ROUTE", "AttemptObserver", "RouteObserver"]


class AttemptObserver(Protocol):
    """One attempt on one arm."""

    def activate(self) -> AbstractContextManager[None]:
        """Make the attempt current around one wait for the arm (never across a ``yield``)."""
        ...

    def chunk(self, chunk: object) -> None:
        """A stream chunk arrived."""

    def ok(self, output: object = None) -> None:
        """The attempt answered (for a stream: its last chunk arrived)."""

    def failed(self, exc: BaseException) -> None:
        """The attempt failed (raised, timed out, or its stream broke or was abandoned)."""


class RouteObserver(Protocol):
    """One routed call, from the decision to the end of its answer (and its reward)."""

    def decision(self, selection: Selection, decision_id: str, context: str | None = None) -> None:
        """The bandit chose an arm."""

    def attempt(self, arm: str, n: int) -> AttemptObserver:
        """Attempt ``n`` (from 1) on ``arm`` starts."""
        ...

    def fallback(self, from_arm: str, to_arm: str, exc: BaseException | None = None) -> None:
        """``from_arm`` failed; the call moves to ``to_arm``."""

    def cooldown(self, arm: str, seconds: float) -> None:
        """``arm`` is rate-limited: skipped for ``seconds``."""

    def degraded(self, reason: str, exc: BaseException | None = None) -> None:
        """The call was routed without the store's full service (e.g. it is down)."""

    def end(self, exc: BaseException | None = None, *, output: object = None) -> None:
        """The call ended: answered (``output``) or failed (``exc``)."""

    def reward(
        self, score: float, evaluator_name: str = "reward", *, elapsed_s: float | None = None
    ) -> None:
        """The answer was scored (possibly after :meth:`end`)."""

    def evaluator_error(
        self,
        exc: BaseException,
        evaluator_name: str = "reward",
        *,
        elapsed_s: float | None = None,
    ) -> None:
        """The evaluator failed or timed out (possibly after :meth:`end`)."""


class _NullAttempt:
    __slots__ = ()

    def activate(self) -> AbstractContextManager[None]:
        return _NOTHING

    def chunk(self, chunk: object) -> None:
        pass

    def ok(self, output: object = None) -> None:
        pass

    def failed(self, exc: BaseException) -> None:
        pass


class _NullRoute:
    __slots__ = ()

    def decision(self, selection: Selection, decision_id: str, context: str | None = None) -> None:
        pass

    def attempt(self, arm: str, n: int) -> AttemptObserver:
        return _NULL_ATTEMPT

    def fallback(self, from_arm: str, to_arm: str, exc: BaseException | None = None) -> None:
        pass

    def cooldown(self, arm: str, seconds: float) -> None:
        pass

    def degraded(self, reason: str, exc: BaseException | None = None) -> None:
        pass

    def end(self, exc: BaseException | None = None, *, output: object = None) -> None:
        pass

    def reward(
        self, score: float, evaluator_name: str = "reward", *, elapsed_s: float | None = None
    ) -> None:
        pass

    def evaluator_error(
        self,
        exc: BaseException,
        evaluator_name: str = "reward",
        *,
        elapsed_s: float | None = None,
    ) -> None:
        pass


_NOTHING: Final = nullcontext()
_NULL_ATTEMPT: Final = _NullAttempt()
#: The observer that observes nothing.
NULL_ROUTE: Final[RouteObserver] = _NullRoute()
