"""The :class:`Policy` protocol every selection rule implements, and its optional extensions."""

from __future__ import annotations

from collections.abc import Sequence
from random import Random
from typing import Protocol, runtime_checkable

__all__ = ["BoundedPolicy", "IndexBounds", "Policy", "RewardTransform"]


@runtime_checkable
class Policy(Protocol):
    """A pure, synchronous selection rule: statistics in, one index per arm out.

    The engine picks the arm with the largest index, breaking ties at random. It handles the
    arms with no data and no prior itself (they are tried first), so ``indices`` is only called
    when every ``n[i] > 0``. A policy holds no state: the statistics live in the store, so many
    workers can share them.

    To add a policy, write a class with a ``name`` and an ``indices`` method; no subclassing
    or registration is needed. A deterministic policy whose indices are costly may also
    implement :class:`BoundedPolicy`, which lets the engine skip the arms that cannot win.
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


class IndexBounds(Protocol):
    """What a :class:`BoundedPolicy` knows about its indices before computing them.

    Attributes:
        lower: One number per arm with ``lower[i] <= exact(i)``, certified like ``upper``
            (``-inf`` when nothing better is known). Where ``lower[i] == upper[i]`` the engine
            takes that number as the index without calling :meth:`exact`.
        upper: One number per arm, never NaN, with ``upper[i] >= exact(i)``: a certified upper
            bound of the index as :meth:`exact` computes it (rounding included).
    """

    @property
    def lower(self) -> Sequence[float]:
        """One certified lower bound per arm (see above)."""
        ...

    @property
    def upper(self) -> Sequence[float]:
        """One certified upper bound per arm (see above)."""
        ...

    def exact(self, i: int) -> float:
        """Return arm ``i``'s index, bit for bit what ``Policy.indices`` returns for it."""
        ...

    def keep(self, arms: Sequence[int], xs: Sequence[float]) -> list[int]:
        """Return, in order, the arms of ``arms`` whose index may be >= the matching ``x``.

        An arm may be dropped only if ``exact(arm) < x`` is certain; keeping an arm whose
        index is below is allowed (it only costs an exact computation).
        """
        ...


@runtime_checkable
class BoundedPolicy(Protocol):
    """Optional: a deterministic policy that can bound its indices cheaply (exact pruning).

    The engine then computes exact indices only for the arms that might win: in decreasing
    order of ``upper``, stopping at the first arm whose bound is below the best index so far,
    and skipping every arm that :meth:`IndexBounds.keep` rules out. The choice (ties and
    their random draw included) is the one the full ``indices`` computation gives; the indices
    of the arms skipped are computed only if :attr:`Selection.indices` is read. The policy must
    not use ``rng`` (its indices are a function of the statistics).
    """

    def index_bounds(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
    ) -> IndexBounds:
        """Return the bounds of the indices ``indices(n, total, total_sq, t, rng)`` would give.

        The arguments are as for :meth:`Policy.indices`; the engine hands over lists it never
        modifies afterwards, so the result may keep them (to compute ``exact`` later).
        """
        ...


@runtime_checkable
class RewardTransform(Protocol):
    """Optional: a policy that learns from a transformed reward (Thompson's resampling)."""

    def learn(self, reward: float, rng: Random) -> float:
        """Return the value the statistics should learn for an observed ``reward``."""
        ...
