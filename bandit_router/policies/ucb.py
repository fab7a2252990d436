"""UCB1 and UCB-Tuned (Auer, Cesa-Bianchi & Fischer 2002)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random

from bandit_router._errors import ConfigurationError
from bandit_router.policies import _vector

__all__ = ["UCB1", "UCBTuned"]


#: From this many arms the indices are computed with numpy, when it is installed (measured:
#: below, converting the lists costs more than the loop).
_NUMPY_MIN_ARMS = 128
_NUMPY_MIN_ARMS_TUNED = 32


def _log_t(t: float) -> float:
    # Under decay the discounted total can fall below 1; the bonus must stay >= 0.
    return math.log(t) if t > 1.0 else 0.0


@dataclass(frozen=True, slots=True)
class UCB1:
    """UCB1: the mean plus a Hoeffding confidence bonus.

    Formula::

        index_i = mean_i + sqrt(c * ln(t) / n_i)

    where ``n_i`` is arm i's observation count and ``t = sum_i n_i``. ``c = 2`` is the
    textbook bonus ``sqrt(2 ln t / n_i)`` of Auer, Cesa-Bianchi & Fischer, "Finite-time
    Analysis of the Multiarmed Bandit Problem", Machine Learning 47 (2002). Smaller ``c``
    explores less.

    From 128 arms, with numpy installed, the indices are computed with numpy: the same
    operations (division, square root), correctly rounded in both, so the same numbers.

    Attributes:
        c: The exploration coefficient, > 0.
    """

    c: float = 2.0

    def __post_init__(self) -> None:
        c = self.c
        ok = isinstance(c, int | float) and not isinstance(c, bool)
        try:
            ok = ok and math.isfinite(c) and c > 0
        except OverflowError:  # an int too large for a float
            ok = False
        if not ok:
            raise ConfigurationError(f"UCB1 exploration coefficient c must be > 0, got {self.c!r}")

    @property
    def name(self) -> str:
        """``"ucb1"``."""
        return "ucb1"

    def indices(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
        rng: Random,
    ) -> list[float]:
        """Return ``mean_i + sqrt(c ln t / n_i)`` for every arm."""
        lt = self.c * (math.log(t) if t > 1.0 else 0.0)  # _log_t, inlined
        if len(n) >= _NUMPY_MIN_ARMS and _vector.np is not None:
            np = _vector.np
            m = np.array(n, dtype=float)
            out: list[float] = (np.array(total, dtype=float) / m + np.sqrt(lt / m)).tolist()
            if len(out) != len(total):
                raise ValueError("n and total must have the same length")
            return out
        sqrt = math.sqrt
        return [s / m + sqrt(lt / m) for m, s in zip(n, total, strict=True)]


@dataclass(frozen=True, slots=True)
class UCBTuned:
    """UCB-Tuned: UCB1 with the bonus scaled by an upper bound on the arm's variance.

    Formula::

        V_i     = total_sq_i / n_i - mean_i**2 + sqrt(2 ln(t) / n_i)
        index_i = mean_i + sqrt(ln(t) / n_i * min(1/4, V_i))

    From Auer, Cesa-Bianchi & Fischer, "Finite-time Analysis of the Multiarmed Bandit
    Problem", Machine Learning 47 (2002), section 4. 1/4 is the largest variance of a
    distribution on [0, 1].

    From 32 arms, with numpy installed, the indices are computed with numpy: the same
    operations in the same order, correctly rounded in both, so the same numbers.
    """

    @property
    def name(self) -> str:
        """``"ucb-tuned"``."""
        return "ucb-tuned"

    def indices(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
        rng: Random,
    ) -> list[float]:
        """Return the UCB-Tuned index of every arm."""
        lt = _log_t(t)
        if len(n) >= _NUMPY_MIN_ARMS_TUNED and _vector.np is not None:
            np = _vector.np
            if not len(n) == len(total) == len(total_sq):
                raise ValueError("n, total and total_sq must have the same length")
            m = np.array(n, dtype=float)
            mu = np.array(total, dtype=float) / m
            x = np.array(total_sq, dtype=float) / m - mu * mu
            # Python's max(x, 0.0) and min(0.25, v), NaN included.
            v = np.where(x < 0.0, 0.0, x) + np.sqrt(2.0 * lt / m)
            vec: list[float] = (mu + np.sqrt(lt / m * np.where(v < 0.25, v, 0.25))).tolist()
            return vec
        sqrt = math.sqrt
        out = []
        for m, s, q in zip(n, total, total_sq, strict=True):
            mean = s / m
            v = max(q / m - mean * mean, 0.0) + sqrt(2.0 * lt / m)
            out.append(mean + sqrt(lt / m * min(0.25, v)))
        return out
