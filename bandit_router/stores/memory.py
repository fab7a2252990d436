"""InMemoryStore: the default store, for one process."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace

from bandit_router._engine import PendingDecision, Rules
from bandit_router._errors import DuplicateDecisionError, UnknownDecisionError
from bandit_router._stats import BanditState, Outcome
from bandit_router.stores._base import Chooser

__all__ = ["InMemoryStore", "project", "unknown_message"]


def project(state: BanditState, arms: tuple[str, ...]) -> BanditState:
    """Return a copy of ``state`` holding exactly ``arms`` (missing arms start empty)."""
    if state.arms == arms:
        return state.copy()
    out = BanditState(arms, clock=state.clock)
    for j, arm in enumerate(arms):
        if arm in state.arms:
            out.set_arm_record(j, state.arm_record(state.arms.index(arm)))
    return out


def _widen(state: BanditState, arms: tuple[str, ...]) -> BanditState:
    """Return ``state`` itself when it covers ``arms``, else a copy with the missing arms added."""
    missing = tuple(a for a in arms if a not in state.arms)
    if not missing:
        return state
    return project(state, state.arms + missing)


@dataclass
class _Namespace:
    contexts: dict[str, BanditState] = field(default_factory=dict)
    pending: OrderedDict[str, PendingDecision] = field(default_factory=OrderedDict)
    # Recently finished ids and how they finished ("settled" or "expired"), so a second
    # settle gets a precise error; bounded like pending.
    settled: OrderedDict[str, str] = field(default_factory=OrderedDict)


class InMemoryStore:
    """Keeps every router's statistics in this process's memory.

    Fast and simple; the learning is lost when the process exits and is not shared with other
    processes (use :class:`~bandit_router.stores.SQLiteStore` or the Redis store for that).
    Safe to share between asyncio tasks and threads of one process.
    """

    def __init__(self) -> None:
        """Create an empty store."""
        self._lock = threading.Lock()
        self._spaces: dict[str, _Namespace] = {}

    def _space(self, namespace: str) -> _Namespace:
        sp = self._spaces.get(namespace)
        if sp is None:
            sp = self._spaces[namespace] = _Namespace()
        return sp

    def _state(self, sp: _Namespace, context: str, arms: tuple[str, ...]) -> BanditState:
        st = sp.contexts.get(context)
        if st is None:
            st = sp.contexts[context] = BanditState(arms)
        elif st.arms != arms and not set(arms) <= set(st.arms):  # sets only when they differ
            st = sp.contexts[context] = _widen(st, arms)
        return st

    def _release(
        self, sp: _Namespace, d: PendingDecision, outcome: Outcome, rules: Rules, how: str
    ) -> None:
        st = sp.contexts[d.context]
        i = st.arms.index(d.arm)
        st.in_flight[i] -= 1
        st.apply(i, outcome, rules.decay)
        sp.settled[d.decision_id] = how
        while len(sp.settled) > rules.max_pending:
            sp.settled.popitem(last=False)

    def _expire(self, sp: _Namespace, rules: Rules, now: float, room: int = 0) -> int:
        count = 0
        pend = sp.pending
        # Decisions are kept in start order; TTL is uniform, so the overdue ones are first.
        while pend:
            d = next(iter(pend.values()))
            if d.expires_at > now and len(pend) + room <= rules.max_pending:
                break
            pend.popitem(last=False)
            self._release(sp, d, rules.expired, rules, "expired")
            count += 1
        return count

    async def load(
        self, namespace: str, context: str, arms: tuple[str, ...], rules: Rules
    ) -> BanditState:
        """See :meth:`StateStore.load`."""
        with self._lock:
            sp = self._spaces.get(namespace)
            st = sp.contexts.get(context) if sp else None
            return BanditState(arms) if st is None else project(st, arms)

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
        """See :meth:`StateStore.begin`."""
        with self._lock:
            sp = self._space(namespace)
            if decision_id in sp.pending or decision_id in sp.settled:
                raise DuplicateDecisionError(f"decision id {decision_id!r} was already used")
            self._expire(sp, rules, now, room=1)
            # The chooser gets a snapshot over exactly ``arms`` (never the live state), and the
            # state is created or widened only once it has chosen an arm among ``arms``: a
            # chooser that raises changes nothing.
            current = sp.contexts.get(context)
            view = BanditState(arms) if current is None else project(current, arms)
            arm = choose(view)
            view.index(arm)  # raises UnknownArmError for an arm outside ``arms``
            st = self._state(sp, context, arms)
            st.in_flight[st.index(arm)] += 1
            sp.pending[decision_id] = PendingDecision(
                decision_id, context, arm, now, now + rules.pending_ttl
            )
            return arm

    async def settle(
        self, namespace: str, decision_id: str, outcome: Outcome, rules: Rules, now: float
    ) -> PendingDecision:
        """See :meth:`StateStore.settle`."""
        with self._lock:
            sp = self._space(namespace)
            self._expire(sp, rules, now)
            d = sp.pending.pop(decision_id, None)
            if d is None:
                raise UnknownDecisionError(
                    unknown_message(decision_id, sp.settled.get(decision_id))
                )
            self._release(sp, d, outcome, rules, "settled")
            return d

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
        """See :meth:`StateStore.reroute`."""
        with self._lock:
            sp = self._space(namespace)
            self._expire(sp, rules, now)
            d = sp.pending.get(decision_id)
            if d is None:
                raise UnknownDecisionError(
                    unknown_message(decision_id, sp.settled.get(decision_id))
                )
            # Choose on a snapshot that already shows the old arm's release and outcome, and
            # touch the live state only once the chooser has returned: a raise changes nothing.
            view = project(sp.contexts[d.context], tuple(dict.fromkeys((*arms, d.arm))))
            old = view.index(d.arm)
            view.in_flight[old] -= 1
            view.apply(old, outcome, rules.decay)
            arm = choose(project(view, arms))
            view.index(arm)
            view.in_flight[view.index(arm)] += 1
            st = self._state(sp, d.context, view.arms)
            for i, name in enumerate(view.arms):
                st.set_arm_record(st.index(name), view.arm_record(i))
            st.clock = view.clock
            sp.pending[decision_id] = replace(d, arm=arm)
            return arm

    async def observe(
        self,
        namespace: str,
        context: str,
        arms: tuple[str, ...],
        arm: str,
        outcome: Outcome,
        rules: Rules,
    ) -> None:
        """See :meth:`StateStore.observe`."""
        if arm not in arms:
            BanditState(arms).index(arm)  # raises UnknownArmError before anything is created
        with self._lock:
            st = self._state(self._space(namespace), context, arms)
            st.apply(st.index(arm), outcome, rules.decay)

    async def pending(self, namespace: str, decision_id: str) -> PendingDecision | None:
        """See :meth:`StateStore.pending`."""
        with self._lock:
            sp = self._spaces.get(namespace)
            return sp.pending.get(decision_id) if sp else None

    async def expire(self, namespace: str, rules: Rules, now: float) -> int:
        """See :meth:`StateStore.expire`."""
        with self._lock:
            return self._expire(self._space(namespace), rules, now)

    async def contexts(self, namespace: str) -> list[str]:
        """See :meth:`StateStore.contexts`."""
        with self._lock:
            sp = self._spaces.get(namespace)
            return sorted(sp.contexts) if sp else []

    async def aclose(self) -> None:
        """Nothing to release."""


def unknown_message(decision_id: str, how: str | None) -> str:
    """Return the error message for settling ``decision_id``, which finished ``how`` (or never)."""
    if how == "settled":
        return f"decision id {decision_id!r} was already settled; a reward counts once"
    if how == "expired":
        return f"decision id {decision_id!r} expired before its reward arrived"
    return f"unknown decision id {decision_id!r}: it was never issued (or expired long ago)"
