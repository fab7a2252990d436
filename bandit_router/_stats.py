"""Per-arm statistics: priors as pseudo-observations and exponential decay on a global clock.

The state of one bandit (one router name and one context) is a :class:`BanditState`: a
struct of arrays indexed by arm position, so that selection is a few list operations and an
update touches one arm. Everything here is pure computation; stores persist it.

Decay follows Garivier & Moulines' discounted UCB (2011, "On Upper-Confidence Bound Policies
for Switching Bandit Problems"): after every observation of *any* arm, every arm's discounted
count, sum and sum of squares are multiplied by ``decay``. Multiplying every arm on every step
would make an update touch all arms, so the discount is applied lazily: each arm remembers the
clock value (``stamp``) its sums are up to date with, and its value at clock ``T`` is
``stored * decay ** (T - stamp)``. ``decay=None`` skips the discount and is exactly the
stationary maths.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from operator import mul
from typing import Any

from bandit_router._errors import ConfigurationError, InvalidRewardError, UnknownArmError

__all__ = ["ArmStatistics", "BanditState", "Outcome", "Prior", "check_decay", "check_reward"]


def _finite(x: object) -> bool:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int too large for a float
        return False


def _as_real(value: object) -> float | None:
    """Return ``value`` as a float if it is a real number (numpy scalars too), else None."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    dtype = getattr(value, "dtype", None)
    if dtype is not None and getattr(dtype, "kind", "") == "b":  # numpy.bool_
        return 1.0 if value else 0.0
    # numbers.Real covers int, float, fractions.Fraction and numpy's integer and float
    # scalars; decimal.Decimal is deliberately not a Real and is refused.
    if not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]


def check_reward(value: object, *, what: str = "reward") -> float:
    """Validate a reward and return it as a float.

    Args:
        value: A number (or bool) that should lie in [0, 1].
        what: How to call the value in the error message.

    Returns:
        The reward as a float.

    Raises:
        InvalidRewardError: If ``value`` is not a real number, is NaN or infinite, or lies
            outside [0, 1]. The message names the value.
    """
    v = _as_real(value)
    if v is None:
        raise InvalidRewardError(
            f"{what} must be a number in [0, 1], got {value!r} of type {type(value).__name__}"
        )
    if math.isnan(v) or math.isinf(v):
        raise InvalidRewardError(f"{what} must be a finite number in [0, 1], got {value!r}")
    if not 0.0 <= v <= 1.0:
        raise InvalidRewardError(f"{what} must lie in [0, 1], got {value!r}")
    return v


def check_decay(decay: object) -> float | None:
    """Validate a decay factor.

    Args:
        decay: ``None`` (stationary) or a number in (0, 1].

    Returns:
        The decay as a float, or ``None``.

    Raises:
        ConfigurationError: If ``decay`` is not ``None`` and not a finite number in (0, 1].
    """
    if decay is None:
        return None
    if not _finite(decay) or not 0.0 < float(decay) <= 1.0:  # type: ignore[arg-type]
        raise ConfigurationError(f"decay must be None or a number in (0, 1], got {decay!r}")
    return float(decay)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Prior:
    """Prior knowledge of an arm's reward, as pseudo-observations.

    ``Prior(mean=m, weight=w)`` is exactly ``w`` observations of mean ``m`` (and variance 0)
    made before the first real one: they count in the arm's mean and in its confidence, and
    under decay they fade like observations made at clock 0. ``variance=v`` makes them ``w``
    observations of mean ``m`` and variance ``v`` instead, which matters to the policies that
    read the spread of the rewards (the default, variance-adaptive :class:`KLUCB`, and
    :class:`UCBTuned`): ``m * (1 - m)`` says "pass/fail outcomes with that success rate".

    Attributes:
        mean: The believed mean reward, in [0, 1].
        weight: How many observations the belief is worth; 0 disables it.
        variance: The believed variance of one reward, in [0, mean * (1 - mean)] (the
            largest any law on [0, 1] with that mean has); default 0.

    Raises:
        ConfigurationError: If ``mean`` is outside [0, 1] or not finite, ``weight`` is
            negative or not finite, or ``variance`` is outside [0, mean * (1 - mean)].
    """

    mean: float
    weight: float
    variance: float = 0.0

    def __post_init__(self) -> None:
        if not _finite(self.mean) or not 0.0 <= self.mean <= 1.0:
            raise ConfigurationError(f"Prior mean must be a number in [0, 1], got {self.mean!r}")
        if not _finite(self.weight) or self.weight < 0:
            raise ConfigurationError(
                f"Prior weight must be a finite number >= 0, got {self.weight!r}"
            )
        v = self.variance
        # A hair of slack above m (1 - m): a variance computed from sums carries rounding.
        if not _finite(v) or not 0.0 <= v <= self.mean * (1.0 - self.mean) * (1 + 1e-9) + 1e-15:
            raise ConfigurationError(
                f"Prior variance must be a number in [0, mean * (1 - mean)] = "
                f"[0, {self.mean * (1.0 - self.mean)!r}], got {v!r}"
            )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one settled call does to an arm's statistics.

    Attributes:
        reward: The raw reward counted in ``pulls`` and ``reward_sum`` (reporting), or ``None``
            when the call produced no reward (a failure, or a decision released without one).
        learn: The value added to the decayed statistics the policy sees (advancing the
            clock), or ``None`` for no observation. It differs from ``reward`` when a policy
            transforms rewards (Thompson sampling's Bernoulli resampling) or for a failure's
            credit.
        failure: Whether the call failed (counted in ``failures``).
    """

    reward: float | None
    learn: float | None
    failure: bool = False


@dataclass(frozen=True, slots=True)
class ArmStatistics:
    """A frozen report of one arm, as :meth:`BanditRouterRunnable.statistics` returns it.

    Attributes:
        pulls: Completed observations with a reward (raw count, never decayed).
        failures: Failed attempts (raw count).
        in_flight: Calls begun and still waiting for their reward.
        mean: The reward estimate the policy sees (decayed, blended with the prior), or
            ``None`` when the arm has neither data nor prior.
        weight: How many observations that estimate is worth (decayed count plus prior weight).
        raw_mean: ``reward_sum / pulls`` over every reward ever received, or ``None``.
        reward_sum: Sum of every reward ever received (never decayed).
    """

    pulls: int
    failures: int
    in_flight: int
    mean: float | None
    weight: float
    raw_mean: float | None
    reward_sum: float


class BanditState:
    """The mutable state of one bandit: per-arm arrays plus the global decay clock.

    Attributes:
        arms: Arm names, in order; every list below is indexed like it.
        clock: Observations of any arm so far (the global clock decay runs on).
        n: Discounted observation count of each arm, up to date as of ``stamp``.
        total: Discounted sum of learned values, as of ``stamp``.
        total_sq: Discounted sum of squared learned values, as of ``stamp``.
        stamp: Clock value each arm's discounted sums are up to date with.
        pulls: Raw count of rewarded observations.
        reward_sum: Raw sum of rewards (never decayed).
        failures: Raw count of failed attempts.
        in_flight: Calls begun and not yet settled.
    """

    __slots__ = (
        "arms",
        "clock",
        "failures",
        "in_flight",
        "n",
        "pulls",
        "reward_sum",
        "stamp",
        "total",
        "total_sq",
    )

    def __init__(self, arms: tuple[str, ...], clock: int = 0) -> None:
        """Create the empty state of a bandit over ``arms``.

        Args:
            arms: Arm names, in order.
            clock: Initial clock value.
        """
        k = len(arms)
        self.arms = arms
        self.clock = clock
        self.n = [0.0] * k
        self.total = [0.0] * k
        self.total_sq = [0.0] * k
        self.stamp = [0] * k
        self.pulls = [0] * k
        self.reward_sum = [0.0] * k
        self.failures = [0] * k
        self.in_flight = [0] * k

    def index(self, arm: str) -> int:
        """Return the position of ``arm``.

        Raises:
            UnknownArmError: If ``arm`` is not one of this state's arms.
        """
        try:
            return self.arms.index(arm)
        except ValueError:
            raise UnknownArmError(f"unknown arm {arm!r}; the arms are {list(self.arms)}") from None

    def copy(self) -> BanditState:
        """Return an independent copy (a snapshot)."""
        c = BanditState.__new__(BanditState)
        c.arms = self.arms
        c.clock = self.clock
        c.n = self.n.copy()
        c.total = self.total.copy()
        c.total_sq = self.total_sq.copy()
        c.stamp = self.stamp.copy()
        c.pulls = self.pulls.copy()
        c.reward_sum = self.reward_sum.copy()
        c.failures = self.failures.copy()
        c.in_flight = self.in_flight.copy()
        return c

    def apply(self, i: int, outcome: Outcome, decay: float | None) -> None:
        """Apply one settled call's outcome to arm ``i`` in place (one arm touched).

        Args:
            i: The arm's position.
            outcome: What to count.
            decay: The discount per observation, or ``None``.
        """
        if outcome.failure:
            self.failures[i] += 1
        r = outcome.reward
        if r is not None:
            self.pulls[i] += 1
            self.reward_sum[i] += r
        v = outcome.learn
        if v is None:
            return
        clock = self.clock + 1
        if decay is None or decay == 1.0:
            self.n[i] += 1.0
            self.total[i] += v
            self.total_sq[i] += v * v
        else:
            # Discount everything, then add the new observation (Garivier & Moulines).
            f = decay ** (clock - self.stamp[i])
            n, total, total_sq = self.n, self.total, self.total_sq
            n[i] = n[i] * f + 1.0
            total[i] = total[i] * f + v
            total_sq[i] = total_sq[i] * f + v * v
        self.stamp[i] = clock
        self.clock = clock

    def discounted(
        self, decay: float | None, priors: tuple[Prior | None, ...] | None = None
    ) -> tuple[list[float], list[float], list[float]]:
        """Return each arm's count, sum and sum of squares as of the current clock.

        Priors are added as pseudo-observations made at clock 0 (they fade under decay like
        any observation that old).

        Args:
            decay: The discount per observation, or ``None``.
            priors: One optional prior per arm, aligned with ``arms``.

        Returns:
            Three lists aligned with ``arms``: discounted counts, sums and sums of squares.
        """
        if decay is None or decay == 1.0:
            n, s, q = self.n.copy(), self.total.copy(), self.total_sq.copy()
            prior_factor = 1.0
        else:
            c = self.clock
            fs = [decay ** (c - st) for st in self.stamp]
            n = list(map(mul, self.n, fs))
            s = list(map(mul, self.total, fs))
            q = list(map(mul, self.total_sq, fs))
            prior_factor = decay**c
        if priors is not None:
            for i, p in enumerate(priors):
                if p is not None and p.weight > 0:
                    w = p.weight * prior_factor
                    n[i] += w
                    s[i] += w * p.mean
                    q[i] += w * (p.variance + p.mean * p.mean)
        return n, s, q

    def statistics(
        self, decay: float | None, priors: tuple[Prior | None, ...] | None = None
    ) -> dict[str, ArmStatistics]:
        """Return a frozen report of every arm (see :class:`ArmStatistics`)."""
        n, s, _ = self.discounted(decay, priors)
        out: dict[str, ArmStatistics] = {}
        for i, arm in enumerate(self.arms):
            out[arm] = ArmStatistics(
                pulls=self.pulls[i],
                failures=self.failures[i],
                in_flight=self.in_flight[i],
                mean=s[i] / n[i] if n[i] > 0 else None,
                weight=n[i],
                raw_mean=self.reward_sum[i] / self.pulls[i] if self.pulls[i] else None,
                reward_sum=self.reward_sum[i],
            )
        return out

    # --- serialisation (JSON-compatible, never pickle) -----------------------------------

    def arm_record(self, i: int) -> dict[str, Any]:
        """Return arm ``i``'s persistent fields as a JSON-compatible dict."""
        return {
            "n": self.n[i],
            "total": self.total[i],
            "total_sq": self.total_sq[i],
            "stamp": self.stamp[i],
            "pulls": self.pulls[i],
            "reward_sum": self.reward_sum[i],
            "failures": self.failures[i],
            "in_flight": self.in_flight[i],
        }

    def set_arm_record(self, i: int, rec: dict[str, Any]) -> None:
        """Load arm ``i``'s fields from :meth:`arm_record`'s form, validating every field.

        Raises:
            ValueError: If a field is missing, of the wrong type, negative or not finite.
        """
        floats = ("n", "total", "total_sq", "reward_sum")
        ints = ("stamp", "pulls", "failures", "in_flight")
        for key in floats:
            v = rec[key]
            if not _finite(v) or v < 0:
                raise ValueError(f"field {key!r} must be a finite number >= 0, got {v!r}")
        for key in ints:
            v = rec[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"field {key!r} must be an integer >= 0, got {v!r}")
        self.n[i] = float(rec["n"])
        self.total[i] = float(rec["total"])
        self.total_sq[i] = float(rec["total_sq"])
        self.stamp[i] = rec["stamp"]
        self.pulls[i] = rec["pulls"]
        self.reward_sum[i] = float(rec["reward_sum"])
        self.failures[i] = rec["failures"]
        self.in_flight[i] = rec["in_flight"]

    def __repr__(self) -> str:
        return (
            f"BanditState(arms={list(self.arms)}, clock={self.clock}, pulls={self.pulls}, "
            f"failures={self.failures}, in_flight={self.in_flight})"
        )
