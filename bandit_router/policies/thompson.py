"""Thompson sampling with a Beta posterior (Agrawal & Goyal 2012)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from random import Random

__all__ = ["ThompsonSampling"]


@dataclass(frozen=True, slots=True)
class ThompsonSampling:
    """Thompson sampling: draw each arm's mean from its Beta posterior, pick the largest.

    Formula::

        theta_i ~ Beta(1 + S_i, 1 + n_i - S_i),   index_i = theta_i

    with a uniform Beta(1, 1) prior, ``S_i`` the (discounted) number of successes and ``n_i``
    the (discounted) number of observations. Rewards in [0, 1] are first resampled as a
    Bernoulli success with probability equal to the reward (``learn``), which keeps the
    posterior exact for bounded rewards: Agrawal & Goyal, "Analysis of Thompson Sampling for
    the Multi-armed Bandit Problem", COLT 2012. Under decay this is discounted Thompson
    sampling (Raj & Kalyani, "Taming Non-stationary Bandits: A Bayesian Approach", 2017).

    Attributes:
        resample: Learn Bernoulli resamples of the rewards (True, the paper's method) or the
            rewards themselves as fractional successes (False).
    """

    resample: bool = True

    @property
    def name(self) -> str:
        """``"thompson"``."""
        return "thompson"

    def indices(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
        rng: Random,
    ) -> list[float]:
        """Return one posterior draw per arm."""
        beta = rng.betavariate
        return [beta(1.0 + s, 1.0 + max(m - s, 0.0)) for m, s in zip(n, total, strict=True)]

    def learn(self, reward: float, rng: Random) -> float:
        """Return a Bernoulli(reward) draw (or the reward itself when ``resample`` is off)."""
        if not self.resample:
            return reward
        return 1.0 if rng.random() < reward else 0.0
