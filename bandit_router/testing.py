"""Helpers for testing code that uses bandit-router, and for testing the policies themselves.

* :func:`simulate` runs a seeded Bernoulli bandit through the real sans-I/O core (the same
  :meth:`Engine.select <bandit_router._engine.Engine.select>` and
  :meth:`BanditState.apply <bandit_router._stats.BanditState.apply>` calls a store makes) and
  returns the pseudo-regret, optionally with an abrupt change of the arms' means.
* :class:`FakeArm` is a fake chat model of known quality (right answers with a given
  probability, scripted failures, latency, hangs, token usage, streaming), and
  :func:`is_right` the evaluator that scores it.
* :class:`ScriptedArm` is a fake chat model that reads its prompt: it calls bound tools (with
  arguments taken from the prompt, right with a given probability), answers in JSON for
  structured output, and streams text, tool-call chunks and token usage. Agents and
  LangChain's standard chat-model tests run on it offline.
* :class:`FrozenClock` is a clock that only moves when told to, for tests of pending-decision
  expiry (``Bandit(clock=FrozenClock())``).

Example::

    from bandit_router.policies import UCB1
    from bandit_router.testing import simulate

    regret = simulate(UCB1(), [0.9, 0.8, 0.7, 0.6, 0.5], 10_000, seed=0)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from bandit_router._engine import Engine
from bandit_router._errors import ConfigurationError
from bandit_router._fakes import FakeArm, FakeArmError, is_right
from bandit_router._scripted import ScriptedArm
from bandit_router._stats import check_decay
from bandit_router.policies import Policy

__all__ = ["FakeArm", "FakeArmError", "FrozenClock", "ScriptedArm", "is_right", "simulate"]


def _check_means(means: object, what: str) -> tuple[float, ...]:
    if isinstance(means, str | bytes) or not isinstance(means, Sequence) or not means:
        raise ConfigurationError(f"{what} must be a non-empty sequence of numbers, got {means!r}")
    out = []
    for m in means:
        if (
            isinstance(m, bool)
            or not isinstance(m, int | float)
            or not math.isfinite(m)
            or not 0.0 <= m <= 1.0
        ):
            raise ConfigurationError(f"{what} must lie in [0, 1], got {m!r} in {means!r}")
        out.append(float(m))
    return tuple(out)


def simulate(
    bandit: Engine | Policy,
    means: Sequence[float],
    horizon: int,
    seed: int = 0,
    change: tuple[int, Sequence[float]] | None = None,
    *,
    decay: float | None = None,
) -> float:
    """Run a seeded Bernoulli bandit through the engine and return its pseudo-regret.

    Each of ``horizon`` steps does what a store does for one decision settled before the next
    begins: :meth:`Engine.select` on the state, one call counted in flight, a Bernoulli reward
    with the chosen arm's mean, :meth:`Engine.reward_outcome` and
    :meth:`BanditState.apply` (which also releases the in-flight slot).

    The pseudo-regret is ``sum_t (max_a mean_t(a) - mean_t(chosen_t))``: it uses the means, not
    the rewards drawn, so it has far less noise than the realised regret. With ``change``, the
    best mean is the one in force at step ``t`` (dynamic regret).

    Args:
        bandit: A policy (a new engine is built over arms ``"arm0"``, ``"arm1"``, ... with
            ``decay`` and ``seed``), or a configured :class:`~bandit_router._engine.Engine`
            with one arm per mean, used as is (its own random generator, already seeded,
            breaks ties and samples; ``seed`` then only seeds the rewards).
        means: Each arm's probability of reward 1, in [0, 1].
        horizon: Number of steps (>= 0).
        seed: Seeds the rewards and, for a policy, the engine. The same arguments give the
            same result.
        change: ``(step, new_means)``: from step ``step`` (0-based) on, the arms' means are
            ``new_means``; ``None`` for a stationary bandit.
        decay: Discount per observation for the engine built from a policy; must be ``None``
            when ``bandit`` is an engine (configure the engine instead).

    Returns:
        The pseudo-regret, a float >= 0.

    Raises:
        ConfigurationError: If an argument is invalid: means outside [0, 1], a negative
            horizon, an engine whose number of arms differs from ``len(means)``, ``decay``
            given together with an engine, or a malformed ``change``.
    """
    mu = _check_means(means, "means")
    k = len(mu)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 0:
        raise ConfigurationError(f"horizon must be an integer >= 0, got {horizon!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigurationError(f"seed must be an integer, got {seed!r}")
    if isinstance(bandit, Engine):
        if decay is not None:
            raise ConfigurationError("pass decay to the Engine, not to simulate(), with an engine")
        engine = bandit
        if len(engine.arms) != k:
            raise ConfigurationError(
                f"the engine has {len(engine.arms)} arms but {k} means were given"
            )
    else:
        engine = Engine(
            [f"arm{i}" for i in range(k)], policy=bandit, decay=check_decay(decay), seed=seed
        )
    phases = [(0, mu)]
    if change is not None:
        if not isinstance(change, tuple) or len(change) != 2:
            raise ConfigurationError(f"change must be a (step, means) pair, got {change!r}")
        at, after = change
        if isinstance(at, bool) or not isinstance(at, int) or at < 0:
            raise ConfigurationError(f"change step must be an integer >= 0, got {at!r}")
        new = _check_means(after, "change means")
        if len(new) != k:
            raise ConfigurationError(f"change gives {len(new)} means for {k} arms")
        phases = [(0, mu), (at, new)] if at > 0 else [(0, new)]

    rng = random.Random(f"bandit-router.simulate:{seed}")  # independent of the engine's
    draw = rng.random
    state = engine.new_state()
    select = engine.select
    reward_outcome = engine.reward_outcome
    apply = state.apply
    in_flight = state.in_flight
    position = {arm: i for i, arm in enumerate(engine.arms)}
    decay_rule = engine.rules.decay
    regret = 0.0
    for j, (start, m) in enumerate(phases):
        stop = phases[j + 1][0] if j + 1 < len(phases) else horizon
        stop = min(stop, horizon)
        best = max(m)
        gap = [best - x for x in m]
        phase_regret = 0.0
        for _ in range(start, stop):
            i = position[select(state).arm]
            in_flight[i] += 1  # what a store's begin() does
            outcome = reward_outcome(1.0 if draw() < m[i] else 0.0)
            in_flight[i] -= 1  # and its settle()
            apply(i, outcome, decay_rule)
            phase_regret += gap[i]
        regret += phase_regret
    return regret


class FrozenClock:
    """A clock that stands still until told to move, for tests of time-dependent behaviour.

    Call it to read the time; pass it wherever a ``clock`` callable is accepted, e.g.
    ``Bandit(arms, clock=FrozenClock())``, then ``advance`` it past ``pending_ttl`` to make
    pending decisions expire without sleeping.

    Args:
        start: The initial time, in seconds.

    Attributes:
        now: The current time in seconds; may be assigned directly.

    Raises:
        ValueError: If ``start`` is not a finite number.
    """

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        self.now = _finite_seconds(start, "start")

    def __call__(self) -> float:
        """Return the current time."""
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock forward.

        Args:
            seconds: How far, in seconds (>= 0).

        Returns:
            The new time.

        Raises:
            ValueError: If ``seconds`` is negative or not a finite number.
        """
        s = _finite_seconds(seconds, "seconds")
        if s < 0:
            raise ValueError(f"a clock only moves forward: seconds must be >= 0, got {seconds!r}")
        self.now += s
        return self.now

    def set(self, now: float) -> None:
        """Set the time to ``now`` (seconds; may move backwards, to test clock skew).

        Raises:
            ValueError: If ``now`` is not a finite number.
        """
        self.now = _finite_seconds(now, "now")

    def __repr__(self) -> str:
        return f"FrozenClock(now={self.now!r})"


def _finite_seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number of seconds, got {value!r}")
    return float(value)
