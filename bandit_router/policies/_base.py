"""The :class:`Policy` protocol every selection rule implements."""

from __future__ import annotations

from collections.abc import Sequence
from random import Random
from typing import Protocol, runtime_checkable

__all__ = ["Policy", "RewardTransform"]


@runtime_checkable
class Policy(Protocol):
    """A pure, synchronous selection rule: statistics in, one index per arm out.

    The engine picks the arm with the largest index, breaking ties at random. It handles the
    arms with no data and no prior itself (they are tried first), so ``indices`` is only called
    when every ``n[i] > 0``. A policy holds no state: the statistics live in the store, so many
    workers can share them.

    To add a policy, write a class with a ``name`` and an ``indices`` method; no subclassing
    or registration is needed.
    """

    @property
    def name(self) -> str:
        """A short name for logs and spans, such as ``"kl-ucb"``."""
        ...

    def indices(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
        rng: Random,
    ) -> Sequence[float]:
        """Return one index per arm.

        Args:
            n: Each arm's (discounted, prior-blended) observation count; every value is > 0.
            total: Each arm's (discounted) sum of rewards, ``0 <= total[i] <= n[i]``.
            total_sq: Each arm's (discounted) sum of squared rewards.
            t: The total count, ``sum(n)``.
            rng: The router's seeded random generator (for sampling policies).

        Returns:
            One number per arm; the largest wins.
        """
        ...


@runtime_checkable
class RewardTransform(Protocol):
    """Optional: a policy that learns from a transformed reward (Thompson's resampling)."""

    def learn(self, reward: float, rng: Random) -> float:
        """Return the value the statistics should learn for an observed ``reward``."""
        ...
