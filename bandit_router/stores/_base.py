"""The :class:`StateStore` protocol: where a router's learning lives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from bandit_router._engine import PendingDecision, Rules
from bandit_router._stats import BanditState, Outcome

__all__ = ["Chooser", "StateStore"]

#: Picks an arm from a state snapshot; called by :meth:`StateStore.begin` inside its
#: atomic step, so it must be pure and quick (the engine's ``select``).
Chooser = Callable[[BanditState], str]


@runtime_checkable
class StateStore(Protocol):
    """Async storage of bandit statistics and pending decisions.

    State is addressed by a *namespace* (the router's name) and a *context* (one bandit per
    context). Every mutating method is one atomic step: concurrent callers, in this process or
    others, never lose an update. Stores apply the statistics maths of
    :meth:`BanditState.apply` and know nothing about LangChain.

    Pending decisions are kept per namespace, at most ``rules.max_pending`` of them, each for
    ``rules.pending_ttl`` seconds. A decision that expires (or is evicted as the oldest when
    the registry is full) releases its in-flight slot and has ``rules.expired`` applied.
    ``now`` is always passed in by the caller, so tests can run on a frozen clock.
    """

    async def load(
        self, namespace: str, context: str, arms: tuple[str, ...], rules: Rules
    ) -> BanditState:
        """Return a snapshot of one bandit's statistics over ``arms``.

        Arms the store has never seen start empty; stored arms not in ``arms`` are kept but
        not returned.
        """
        ...

    async def begin(
        self,
        namespace: str,
        context: str,
        arms: tuple[str, ...],
        choose: Chooser,
        decision_id: str,
        rules: Rules,
        now: float,
    ) -> str:
        """Atomically choose an arm and count the call in flight.

        In one atomic step: expire overdue decisions, read the state, call ``choose`` on it,
        add one in-flight call to the chosen arm and record a :class:`PendingDecision`.

        Returns:
            The chosen arm.

        Raises:
            DuplicateDecisionError: If ``decision_id`` is pending or was settled recently;
                nothing is changed.
        """
        ...

    async def settle(
        self, namespace: str, decision_id: str, outcome: Outcome, rules: Rules, now: float
    ) -> PendingDecision:
        """Atomically settle a pending decision: release its slot and apply ``outcome``.

        Returns:
            The decision that was settled.

        Raises:
            UnknownDecisionError: If ``decision_id`` is not pending (never issued, already
                settled, or expired); nothing is changed.
        """
        ...

    async def reroute(
        self,
        namespace: str,
        decision_id: str,
        arms: tuple[str, ...],
        choose: Chooser,
        outcome: Outcome,
        rules: Rules,
        now: float,
    ) -> str:
        """Atomically move a pending decision to another arm (a fallback).

        In one atomic step: apply ``outcome`` to the decision's current arm and release its
        in-flight slot, call ``choose`` on the resulting state of the decision's context, add
        one in-flight call to the chosen arm and make it the decision's arm. The decision keeps
        its id, start and expiry, so feedback for it reaches the arm that answered.

        Returns:
            The newly chosen arm.

        Raises:
            UnknownDecisionError: If ``decision_id`` is not pending; nothing is changed.
        """
        ...

    async def observe(
        self,
        namespace: str,
        context: str,
        arms: tuple[str, ...],
        arm: str,
        outcome: Outcome,
        rules: Rules,
    ) -> None:
        """Atomically apply an outcome to an arm outside any decision (a failed retry)."""
        ...

    async def pending(self, namespace: str, decision_id: str) -> PendingDecision | None:
        """Return the pending decision ``decision_id``, or ``None``."""
        ...

    async def expire(self, namespace: str, rules: Rules, now: float) -> int:
        """Expire every overdue decision of ``namespace``; return how many."""
        ...

    async def contexts(self, namespace: str) -> list[str]:
        """Return the contexts that have state under ``namespace``, sorted."""
        ...

    async def aclose(self) -> None:
        """Release the store's resources (connections, threads)."""
        ...
