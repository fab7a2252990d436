"""KL-UCB (Garivier & Cappé 2011) with the classic or an anytime KL-UCB++-style rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random
from typing import Literal

from bandit_router._errors import ConfigurationError

__all__ = ["KLUCB", "bernoulli_kl", "kl_upper_bound", "variance_kl_upper_bound"]

_EPS = 1e-12


def bernoulli_kl(p: float, q: float) -> float:
    """Return the Kullback-Leibler divergence KL(Bernoulli(p) || Bernoulli(q)).

    Both arguments are clipped to [1e-12, 1 - 1e-12] so the result is finite.
    """
    p = min(max(p, _EPS), 1.0 - _EPS)
    q = min(max(q, _EPS), 1.0 - _EPS)
    return p * math.log(p / q) + (1.0 - p) * math.log((1.0 - p) / (1.0 - q))


def kl_upper_bound(p: float, level: float, *, iterations: int = 32) -> float:
    """Return ``max {q in [p, 1] : KL(p, q) <= level}`` by bisection.

    Args:
        p: The empirical mean, in [0, 1].
        level: The allowed divergence, >= 0.
        iterations: Bisection steps; 32 gives a precision of about 2e-10.

    Returns:
        The upper confidence bound; ``p`` itself when ``level <= 0``.
    """
    p = min(max(p, 0.0), 1.0)
    if level <= 0.0:
        return p
    lo, hi = p, 1.0
    if bernoulli_kl(p, hi) <= level:
        return 1.0
    for _ in range(iterations):
        mid = (lo + hi) * 0.5
        if bernoulli_kl(p, mid) > level:
            hi = mid
        else:
            lo = mid
    return lo


# The fast bound below decides most bisection steps by comparing the midpoint with a band
# [a, b] around the root, found by Halley's method, instead of evaluating the divergence.
# The band is accepted only if the divergence itself, computed exactly as the bisection
# computes it, is at most ``level - _MARGIN`` at ``a`` and above ``level + _MARGIN`` at
# ``b``. The rounding error of that computation is below 3e-14 (two logarithms of magnitude
# at most 28, each within one ulp, weighted by at most 1), so with a margin of 1e-12 every
# midpoint outside the band gets the same decision as the full computation would give it,
# and the result is bit for bit that of ``kl_upper_bound``. When the band cannot be
# certified (tiny levels, Halley not converging), the plain bisection runs instead.
_HI = 1.0 - _EPS
_MARGIN = 1e-12
_ITERATIONS = 32


def _kl_index(p: float, level: float) -> float:
    """Return ``kl_upper_bound(p, level)`` (32 iterations), bit for bit, several times faster."""
    if not (0.0 <= p <= 1.0 and level > 2.0 * _MARGIN):
        return kl_upper_bound(p, level)
    log = math.log
    pc = p if p > _EPS else _EPS
    if pc > _HI:
        pc = _HI
    omp = 1.0 - pc
    # KL(p, q) = integral from p to q of (x - p) / (x (1 - x)) dx >= (q - p)^2 / (2 v) with v
    # the largest x (1 - x) on [p, q]: p (1 - p) when p >= 1/2, at most 1/4 otherwise.
    v = pc * omp if pc >= 0.5 else 0.25
    g = _HI - pc
    if g * g <= 2.0 * v * (level + _MARGIN) and (
        pc * log(pc / _HI) + omp * log(omp / (1.0 - _HI)) <= level
    ):
        return 1.0
    # Halley's method on the convex, increasing f(q) = KL(p, q) - level, from above the root.
    q = pc + math.sqrt(2.0 * v * level)  # >= the root, by the bound above
    if q < 0.5:  # then v can be q (1 - q), the largest x (1 - x) on [p, q]
        q = pc + math.sqrt(2.0 * q * (1.0 - q) * level)
    elif q > 0.95:  # KL >= -(1 - p) ln(1 - q) - H(p) bounds the root better near 1
        h = -(pc * log(pc) + omp * log(omp))
        u = 1.0 - math.exp(-(level + h) / omp)
        if u < q:
            q = u
    if q > _HI:
        q = _HI
    for _ in range(60):
        r = 1.0 - q
        f = pc * log(pc / q) + omp * log(omp / r) - level
        d = omp / r - pc / q  # f'
        d2 = pc / (q * q) + omp / (r * r)  # f''
        den = 2.0 * d * d - f * d2
        if d <= 0.0 or den <= 0.0:
            return kl_upper_bound(p, level)
        step = 2.0 * f * d / den  # Halley's step
        q -= step
        if not pc < q < 1.0:
            return kl_upper_bound(p, level)
        w = 4.0 * _MARGIN / d  # the band's half-width: KL moves by about 4 margins across it
        if w < 1e-14:
            w = max(w, 8.0 * math.ulp(q))
        # The error left after this step is below Newton's, about f''/(2 f') * step^2:
        # stop once that is well inside the band.
        if d2 * step * step < 0.02 * w * d:
            break
    else:
        return kl_upper_bound(p, level)
    a, b = q - w, q + w
    qa = a if a < _HI else _HI
    qb = b if b < _HI else _HI
    if not (
        qa > pc
        and pc * log(pc / qa) + omp * log(omp / (1.0 - qa)) <= level - _MARGIN
        and pc * log(pc / qb) + omp * log(omp / (1.0 - qb)) > level + _MARGIN
    ):
        return kl_upper_bound(p, level)
    lo, hi = p, 1.0
    for _ in range(_ITERATIONS):
        mid = (lo + hi) * 0.5
        if mid <= a:
            lo = mid
        elif mid >= b:
            hi = mid
        else:  # inside the band: the exact test of bernoulli_kl(p, mid) > level
            x = mid if mid > _EPS else _EPS
            if x > _HI:
                x = _HI
            if pc * log(pc / x) + omp * log(omp / (1.0 - x)) > level:
                hi = mid
            else:
                lo = mid
    return lo


#: Levels below this are treated as 0 by :func:`variance_kl_upper_bound` (see there).
_NOISE_LEVEL = 1e-14


def variance_kl_upper_bound(p: float, v: float, level: float) -> float:
    """Return the KL-UCB bound of a [0, 1] arm with empirical mean ``p`` and variance ``v``.

    The empirical KL-UCB of Cappé et al. (2013) needs ``K_inf(F, q) = min KL(F, G)`` over the
    laws ``G`` on [0, 1] with mean >= ``q``; it is relaxed here to the first two moments. By
    Bennett's (1962) / Hoeffding's (1963) extremal argument, among the laws on ``(-inf, 1]``
    with mean ``p`` and variance ``v`` the two-point law on ``{a, 1}``, ``a = p - v / (1 - p)``,
    has the smallest ``E log(1 - lam (X - q))`` (that function of ``X`` has a negative third
    derivative), hence the smallest ``K_inf``. Its ``K_inf`` is the Bernoulli divergence on
    [a, 1], so::

        bound = a + (1 - a) * kl_upper_bound((p - a) / (1 - a), level)

    which is >= the empirical KL-UCB bound of any law with these moments and <= the Bernoulli
    bound ``kl_upper_bound(p, level)`` (equal to it when ``v = p (1 - p)``: 0/1 rewards).

    Args:
        p: The empirical mean, in [0, 1].
        v: The empirical variance (second moment minus the squared mean); clipped into
            [0, p (1 - p)], the range of a law on [0, 1].
        level: The allowed divergence, >= 0.

    Returns:
        The upper confidence bound, in [p, 1].
    """
    p = min(max(p, 0.0), 1.0)
    # Within rounding of the largest variance (0/1 rewards), or NaN: the Bernoulli bound.
    vmax = p * (1.0 - p) * (1.0 - 1e-9)
    if not v < vmax:
        return _kl_index(p, level)
    if p >= 1.0 or level <= _NOISE_LEVEL:
        # Below this level the bound is within 1e-7 of the mean and the divergence computed
        # near it is rounding noise (KL(x, x + d) ~ d**2 cancels in two logarithms), which
        # would make the result wander by a few 1e-9 and break monotonicity in the variance.
        return p
    a = p - (v if v > 0.0 else 0.0) / (1.0 - p)
    w = 1.0 - a
    x = (p - a) / w
    return a + w * _kl_index(x if x < 1.0 else 1.0, level)


@dataclass(frozen=True, slots=True)
class KLUCB:
    """KL-UCB: the largest mean still statistically plausible (by default, given the variance).

    Formula::

        index_i = max { q in [mean_i, 1] : n_i * KL(mean_i, q) <= rate_i }

        rate_i  = ln(t)                        rate="log"      (Garivier & Cappé 2011)
        rate_i  = max(0, ln(t / (K * n_i)))    rate="anytime"  (KL-UCB++-style)

    where ``KL(p, q) = p ln(p/q) + (1-p) ln((1-p)/(1-q))`` is the Bernoulli divergence (valid
    for any reward in [0, 1]), ``t = sum_i n_i`` and ``K`` the number of arms. The bound is
    found by bisection.

    The "log" rate is from Garivier & Cappé, "The KL-UCB Algorithm for Bounded Stochastic
    Bandits and Beyond", COLT 2011. The "anytime" rate ``log+(t / (K n_i))`` follows KL-UCB++
    (Ménard & Garivier, "A minimax and asymptotically optimal algorithm for stochastic
    bandits", ALT 2017) with the anytime horizon-free form of KL-UCB+ (Kaufmann, "On Bayesian
    index policies for sequential resource allocation", Annals of Statistics 2018/arXiv 2016):
    it explores an arm less once it has had its share ``t / K`` of the observations, which on
    the RouterBench replay reached 0.982-0.985 of the best model in hindsight against 0.965 for
    the "log" rate.

    By default (``variance=True``) the Bernoulli bound is replaced by
    :func:`variance_kl_upper_bound`: the empirical KL-UCB of Cappé, Garivier, Maillard, Munos
    & Stoltz ("Kullback-Leibler upper confidence bounds for optimal sequential allocation",
    Annals of Statistics 2013, section 4; Honda & Takemura's ``K_inf``) relaxed to each arm's
    empirical mean and variance::

        a_i     = mean_i - var_i / (1 - mean_i)        (0 <= a_i <= mean_i)
        index_i = a_i + (1 - a_i) * max { x : n_i * KL((mean_i - a_i) / (1 - a_i), x) <= rate_i }

    It is never above the Bernoulli index and equals it for 0/1 rewards; for rewards spread
    over less than [0, 1] (a cost-aware reward ``score - lam * cost``, normalised, spans about
    half of it) it explores less, like the variance-adaptive UCB-V (Audibert, Munos &
    Szepesvári 2009) but with the KL shape. It is still optimistic: at least the empirical
    KL-UCB bound of any law on [0, 1] with those two moments. A :class:`Prior` counts as
    observations of its ``variance`` (0 unless given), so without one it narrows the bound more
    than under the Bernoulli index.

    Attributes:
        rate: ``"anytime"`` (the default) or ``"log"``.
        variance: Use each arm's empirical variance (see above; the default). ``False`` is the
            plain Bernoulli KL-UCB, which treats every reward as if it could be 0 or 1.
    """

    rate: Literal["anytime", "log"] = "anytime"
    variance: bool = True

    def __post_init__(self) -> None:
        if self.rate not in ("anytime", "log"):
            raise ConfigurationError(f"KLUCB rate must be 'anytime' or 'log', got {self.rate!r}")
        if not isinstance(self.variance, bool):
            raise ConfigurationError(f"KLUCB variance must be True or False, got {self.variance!r}")

    @property
    def name(self) -> str:
        """``"kl-ucb"`` or ``"kl-ucb-log"``, with ``"-bernoulli"`` appended without ``variance``."""
        base = "kl-ucb" if self.rate == "anytime" else "kl-ucb-log"
        return base if self.variance else base + "-bernoulli"

    def indices(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
        rng: Random,
    ) -> list[float]:
        """Return the KL-UCB index of every arm."""
        if self.variance:
            return self._variance_indices(n, total, total_sq, t)
        bound = _kl_index
        if self.rate == "log":
            lt = math.log(t) if t > 1.0 else 0.0
            return [bound(s / m, lt / m) for m, s in zip(n, total, strict=True)]
        k = len(n)
        log = math.log
        out = []
        for m, s in zip(n, total, strict=True):
            ratio = t / (k * m)
            out.append(bound(s / m, (log(ratio) if ratio > 1.0 else 0.0) / m))
        return out

    def _variance_indices(
        self, n: Sequence[float], total: Sequence[float], total_sq: Sequence[float], t: float
    ) -> list[float]:
        k = len(n)
        log = math.log
        lt = log(t) if t > 1.0 else 0.0
        out = []
        for m, s, q in zip(n, total, total_sq, strict=True):
            p = s / m
            if self.rate == "log":
                level = lt / m
            else:
                ratio = t / (k * m)
                level = (log(ratio) if ratio > 1.0 else 0.0) / m
            out.append(variance_kl_upper_bound(p, q / m - p * p, level))
        return out
