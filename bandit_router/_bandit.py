"""Bandit: the async, store-backed bandit that routers (and users without LangChain) drive."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from bandit_router._engine import (
    DEFAULT,
    DEFAULT_MAX_PENDING,
    DEFAULT_PENDING_TTL,
    Engine,
    PendingDecision,
    Selection,
    _Default,
)
from bandit_router._errors import ConfigurationError, DecisionError, UnknownArmError
from bandit_router._stats import ArmStatistics, BanditState, Outcome, Prior
from bandit_router.policies import Policy
from bandit_router.stores import InMemoryStore, StateStore

__all__ = ["Bandit", "Decision"]

T = TypeVar("T")

_NOTHING = Outcome(reward=None, learn=None)


@dataclass(frozen=True, slots=True)
class Decision:
    """One routing decision, begun and waiting for its reward.

    Attributes:
        decision_id: The id to settle it with (``reward``, ``fail`` or ``release``).
        arm: The arm chosen.
        context: The context whose statistics it counts in.
        selection: The figures the choice was made from.
    """

    decision_id: str
    arm: str
    context: str
    selection: Selection


class Bandit:
    """A multi-armed bandit whose statistics live in a :class:`StateStore`.

    This is the engine behind the LangChain routers, usable on its own: ``choose`` picks an
    arm and counts the call in flight, ``reward`` settles it. Works on asyncio and trio.

    Args:
        arms: Arm names (non-empty, unique).
        name: The namespace of this bandit's state in the store; bandits with the same name
            and store share their learning.
        policy: The selection rule; default ``KLUCB()``.
        priors: Optional ``{arm: Prior}`` pseudo-observations.
        decay: Discount per observation of any arm, in (0, 1]; ``None`` is stationary.
        store: Where the statistics live; default a new :class:`InMemoryStore`.
        failure_reward: What a failure teaches about its arm (default 0.0; ``None``: nothing).
        expired_reward: What a decision whose reward never arrives counts as (default
            ``None``: nothing, its in-flight slot is released).
        pending_ttl: Seconds a decision waits for its reward.
        max_pending: Most decisions waiting at once for this name.
        seed: Seed for tie-breaking and sampling.
        clock: Wall-clock function (seconds) used for pending-decision expiry.
        context_prior_weight: When set, every outcome in a named context is also counted in
            the global context ``""``, and a context's selection uses the global statistics as
            its prior, worth at most this many observations: a new context starts from what
            all contexts learned instead of from zero. ``None`` (default): contexts are
            independent.
        rate_limit_reward: What a rate-limited attempt teaches about its arm (default
            ``None``: nothing; counted in ``failures`` only).
        costs: Optional ``{arm: cost}``: the known cost of one call of each arm, in the
            reward's units, subtracted from its policy index; the rewards then measure quality
            only (see :class:`~bandit_router._engine.Engine`).

    Raises:
        ConfigurationError: On any invalid argument; the message names it.
    """

    def __init__(
        self,
        arms: Collection[str],
        *,
        name: str = "default",
        policy: Policy | None = None,
        priors: Mapping[str, Prior] | None = None,
        decay: float | None = None,
        store: StateStore | None = None,
        failure_reward: float | None = 0.0,
        expired_reward: float | None = None,
        pending_ttl: float = DEFAULT_PENDING_TTL,
        max_pending: int = DEFAULT_MAX_PENDING,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        context_prior_weight: float | None = None,
        costs: Mapping[str, float] | None = None,
        rate_limit_reward: float | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"name must be a non-empty string, got {name!r}")
        store = InMemoryStore() if store is None else store
        if not isinstance(store, StateStore):
            raise ConfigurationError(f"store must implement the StateStore protocol, got {store!r}")
        self.engine = Engine(
            arms,
            policy=policy,
            priors=priors,
            decay=decay,
            failure_reward=failure_reward,
            expired_reward=expired_reward,
            pending_ttl=pending_ttl,
            max_pending=max_pending,
            seed=seed,
            costs=costs,
            rate_limit_reward=rate_limit_reward,
        )
        if context_prior_weight is not None:
            try:  # validated like a prior weight: a finite number >= 0
                Prior(mean=0.5, weight=context_prior_weight)
            except ConfigurationError:  # but named as the argument it is, not as a Prior
                raise ConfigurationError(
                    "context_prior_weight must be None or a finite number >= 0, "
                    f"got {context_prior_weight!r}"
                ) from None
        self.name = name
        self.store: StateStore = store
        self._clock = clock
        self.context_prior_weight = context_prior_weight

    @property
    def arms(self) -> tuple[str, ...]:
        """The arm names, in order."""
        return self.engine.arms

    async def choose(
        self,
        *,
        context: str = "",
        decision_id: str | None = None,
        exclude: Collection[str] = (),
    ) -> Decision:
        """Choose an arm and count the call in flight, in one atomic store step.

        Args:
            context: Which bandit's statistics to use ("" is the global one).
            decision_id: The id to settle the decision with; a new UUID if ``None``.
            exclude: Arms that must not be chosen.

        Returns:
            The decision; settle it with :meth:`reward`, :meth:`fail` or :meth:`release`.

        Raises:
            DuplicateDecisionError: If ``decision_id`` was already used.
            UnknownArmError: If ``exclude`` names an unknown arm or every arm.
        """
        did = str(uuid.uuid4()) if decision_id is None else _check_id(decision_id)
        engine = self.engine
        picked: list[Selection] = []
        # No await (and no coroutine) for the common case: no context seeding.
        priors = (
            await self._context_priors(context)
            if context and self.context_prior_weight
            else DEFAULT
        )

        def choose(state: BanditState) -> str:
            sel = engine.select(state, exclude, priors)
            picked.append(sel)
            return sel.arm

        arm = await self.store.begin(
            self.name, context, engine.arms, choose, did, engine.rules, self._clock()
        )
        return Decision(did, arm, context, picked[-1])

    async def reroute(
        self,
        decision: Decision,
        exclude: Collection[str] = (),
        *,
        outcome: Outcome | None = None,
    ) -> Decision:
        """Fall back: count ``decision``'s arm as failed and move the call to another arm.

        One atomic store step: the failure is applied to the old arm and its in-flight slot
        released, a new arm is chosen (never the old one nor any in ``exclude``) and counted
        in flight. The decision keeps its id, so its reward reaches the arm that answered.

        Returns:
            The decision, now on its new arm.

        Raises:
            UnknownDecisionError: If the decision is no longer pending.
            UnknownArmError: If no arm is left to choose.
        """
        engine = self.engine
        excluded = {*exclude, decision.arm}
        unknown = excluded - set(engine.arms)
        if unknown:
            raise UnknownArmError(f"cannot exclude unknown arms {sorted(unknown)}")
        if len(excluded) >= len(engine.arms):
            raise UnknownArmError(
                f"no arm left to fall back to: every arm is excluded {sorted(excluded)}"
            )
        picked: list[Selection] = []
        priors = await self._context_priors(decision.context)

        def choose(state: BanditState) -> str:
            sel = engine.select(state, excluded, priors)
            picked.append(sel)
            return sel.arm

        failed = engine.failure_outcome() if outcome is None else outcome
        arm = await self.store.reroute(
            self.name,
            decision.decision_id,
            engine.arms,
            choose,
            failed,
            engine.rules,
            self._clock(),
        )
        await self._mirror(decision.context, decision.arm, failed)
        return Decision(decision.decision_id, arm, decision.context, picked[-1])

    async def _context_priors(self, context: str) -> tuple[Prior | None, ...] | _Default:
        """The priors a named context selects with: the global statistics, capped in weight."""
        w = self.context_prior_weight
        if not context or not w:
            return DEFAULT
        engine = self.engine
        glob = await self.store.load(self.name, "", engine.arms, engine.rules)
        n, s, q = glob.discounted(engine.decay, engine.priors)
        return tuple(context_seed(n[i], s[i], q[i], w) if n[i] > 0 else None for i in range(len(n)))

    async def _mirror(self, context: str, arm: str, outcome: Outcome) -> None:
        """Count a named context's outcome in the global context too (context seeding)."""
        if not context or not self.context_prior_weight:
            return
        if outcome.learn is not None or outcome.failure:
            engine = self.engine
            await self.store.observe(self.name, "", engine.arms, arm, outcome, engine.rules)

    async def reward(self, decision_id: str, reward: object) -> PendingDecision:
        """Settle a decision with a reward in [0, 1] (bool allowed).

        Raises:
            InvalidRewardError: If the reward is invalid; nothing changes.
            UnknownDecisionError: If the decision is unknown, settled or expired.
        """
        outcome = self.engine.reward_outcome(reward)
        done = await self.store.settle(
            self.name, _check_id(decision_id), outcome, self.engine.rules, self._clock()
        )
        await self._mirror(done.context, done.arm, outcome)
        return done

    async def fail(self, decision_id: str, *, outcome: Outcome | None = None) -> PendingDecision:
        """Settle a decision whose call failed (counted as a failure of its arm).

        Args:
            decision_id: The decision.
            outcome: What the failure teaches (default: ``failure_reward``'s outcome).
        """
        outcome = self.engine.failure_outcome() if outcome is None else outcome
        done = await self.store.settle(
            self.name, _check_id(decision_id), outcome, self.engine.rules, self._clock()
        )
        await self._mirror(done.context, done.arm, outcome)
        return done

    async def release(self, decision_id: str) -> PendingDecision:
        """Settle a decision without counting anything (a cancelled call)."""
        return await self.store.settle(
            self.name, _check_id(decision_id), _NOTHING, self.engine.rules, self._clock()
        )

    async def record_failure(
        self, arm: str, *, context: str = "", outcome: Outcome | None = None
    ) -> None:
        """Count a failed attempt of ``arm`` outside any decision (a retry that failed).

        Args:
            arm: The arm.
            context: The context whose statistics count it.
            outcome: What the failure teaches (default: ``failure_reward``'s outcome).
        """
        if arm not in self.engine.arms:
            raise UnknownArmError(f"unknown arm {arm!r}; the arms are {list(self.engine.arms)}")
        failed = self.engine.failure_outcome() if outcome is None else outcome
        await self.store.observe(
            self.name,
            context,
            self.engine.arms,
            arm,
            failed,
            self.engine.rules,
        )
        await self._mirror(context, arm, failed)

    async def state(self, context: str = "") -> BanditState:
        """Return a snapshot of the raw statistics of ``context``."""
        return await self.store.load(self.name, context, self.engine.arms, self.engine.rules)

    async def statistics(self, context: str = "") -> dict[str, ArmStatistics]:
        """Return a frozen report per arm of ``context``'s statistics."""
        st = await self.state(context)
        return st.statistics(self.engine.decay, self.engine.priors)

    async def expire(self) -> int:
        """Expire every overdue pending decision now; return how many."""
        return await self.store.expire(self.name, self.engine.rules, self._clock())

    # --- sync faces (the routers' sync faces call these from the caller's thread) ----------

    def choose_sync(
        self,
        *,
        context: str = "",
        decision_id: str | None = None,
        exclude: Collection[str] = (),
    ) -> Decision:
        """Sync face of :meth:`choose`."""
        return _run(self, self.choose(context=context, decision_id=decision_id, exclude=exclude))

    def reroute_sync(
        self, decision: Decision, exclude: Collection[str] = (), *, outcome: Outcome | None = None
    ) -> Decision:
        """Sync face of :meth:`reroute`."""
        return _run(self, self.reroute(decision, exclude, outcome=outcome))

    def reward_sync(self, decision_id: str, reward: object) -> PendingDecision:
        """Sync face of :meth:`reward`."""
        return _run(self, self.reward(decision_id, reward))

    def fail_sync(self, decision_id: str, *, outcome: Outcome | None = None) -> PendingDecision:
        """Sync face of :meth:`fail`."""
        return _run(self, self.fail(decision_id, outcome=outcome))

    def release_sync(self, decision_id: str) -> PendingDecision:
        """Sync face of :meth:`release`."""
        return _run(self, self.release(decision_id))

    def record_failure_sync(
        self, arm: str, *, context: str = "", outcome: Outcome | None = None
    ) -> None:
        """Sync face of :meth:`record_failure`."""
        _run(self, self.record_failure(arm, context=context, outcome=outcome))

    def statistics_sync(self, context: str = "") -> dict[str, ArmStatistics]:
        """Sync face of :meth:`statistics`."""
        return _run(self, self.statistics(context))


def _run(bandit: Bandit, coro: Coroutine[Any, Any, T]) -> T:
    """Run one of the bandit's coroutines from a thread without a running loop.

    An in-memory store never suspends: its coroutine runs to the end here, in the caller's
    thread. Other stores are served by the portal loop.
    """
    if isinstance(bandit.store, InMemoryStore):
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        coro.close()
        raise RuntimeError("bandit-router: an in-memory store operation suspended")
    from bandit_router.core._loops import run_on_portal

    return run_on_portal(coro)


def context_seed(n: float, s: float, q: float, weight: float) -> Prior:
    """A context's prior from the global statistics ``n, s, q`` of one arm, capped in weight.

    It carries the global spread as well as the mean: seeded with a variance of 0, a context
    would look surer of its rewards than the data says to a policy that reads the variance.
    """
    mean = min(max(s / n, 0.0), 1.0)
    variance = min(max(q / n - mean * mean, 0.0), mean * (1.0 - mean))
    return Prior(mean=mean, weight=min(weight, n), variance=variance)


def _check_id(decision_id: object) -> str:
    if not isinstance(decision_id, str) or not decision_id or len(decision_id) > 512:
        raise DecisionError(
            f"decision id must be a non-empty string of at most 512 characters, got {decision_id!r}"
        )
    return decision_id
