"""KL-UCB (Garivier & Cappé 2011) with the classic or an anytime KL-UCB++-style rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random
from typing import Any, Literal

from bandit_router._errors import ConfigurationError
from bandit_router.policies import _vector

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


# --- certified bounds, for the engine's exact pruning (see KLUCB) --------------------------
#
# The engine only needs the largest index, so it asks first for cheap bounds of every arm's
# index and computes exact indices only for the arms whose upper bound can still beat the best.
# Every bound is certified against the index *as computed* (the 32-step bisection, rounding
# included), not only against the mathematical root: see _bernstein and _below. The rounding
# error of a computed divergence is below 3e-14 (see the fast bound above).
#
# Every index is a + w * kl_upper_bound(y, level): a = 0, w = 1, y = mean for the Bernoulli
# index, the two-point transform for the variance-adaptive one (variance_kl_upper_bound). Both
# roundings of a + w * y are monotone in y, so bounds of the Bernoulli index in y give bounds
# of the index. The bisection starts at y and only moves up, so a + w * y is a lower bound.


def _split(p: float, v: float, level: float, variance: bool) -> tuple[float, ...] | float:
    """Return an index's ``(a, w, y, level)``, or the index itself when it needs no bisection.

    Exact cases: the mean when ``level <= 0`` (or below the variance index's noise level);
    ``a + w`` when ``y`` is within 1e-12 of 1 (the divergence is then computed as 0 at the
    clipped end, so the bisection's first test returns 1).
    """
    p = min(max(p, 0.0), 1.0)
    if not level > 0.0:
        return p
    if variance and v < p * (1.0 - p) * (1.0 - 1e-9) and p < 1.0:
        if level <= _NOISE_LEVEL:
            return p
        a = p - (v if v > 0.0 else 0.0) / (1.0 - p)
        w = 1.0 - a
        y = (p - a) / w
        if y >= _HI:
            return a + w * 1.0
        return a, w, y, level
    if p >= _HI:
        return 1.0
    return 0.0, 1.0, p, level


def _bernstein(y: float, level: float) -> float:
    """Return a number >= ``kl_upper_bound(y, level)``, for ``level > 0`` and ``y < 1 - 1e-12``.

    ``KL(y, q)`` is the integral from y to q of ``(x - y) / (x (1 - x))``, at least
    ``(q - y)^2 / (2 V)`` with ``V`` the largest ``x (1 - x)`` on [y, q]: the root of
    ``KL(y, q) = level`` lies below ``y + d``, ``d = sqrt(2 V level)`` (Pinsker's inequality,
    sharpened by the variance as in Bernstein's). ``V = y (1 - y)`` when ``y >= 1/2``; below,
    ``V = u (1 - u)`` for ``u = y + sqrt(level / 2)`` (a first bound) when ``u < 1/2``, else 1/4.

    From ``y >= 1/2`` the cubic term sharpens it: ``1 / (x (1 - x))`` is convex, so at least
    its tangent at y, which gives ``KL >= h(D) = D^2 / (2 V) + (2 y - 1) D^3 / (3 V^2)`` for
    ``D = q - y``; h is convex and increasing, so one Newton step for ``h(D) = level`` from
    ``d`` (where ``h(d) >= level``) stays above the root of h, itself above the root of KL.

    The bisection's result can exceed the root only through the rounding of the divergence it
    computes (< 3e-14): beyond ``y + d + e`` the divergence exceeds the level by at least
    ``KL'(y + d) e >= 4 d e`` (as ``KL'(q) = (q - y) / (q (1 - q))``), so ``e = 2e-13 / d``
    (13 times the need) plus 1e-9 for the arithmetic certifies the bound.
    """
    pc = y if y > _EPS else _EPS
    if pc >= 0.5:
        v = pc * (1.0 - pc)
        d = math.sqrt(2.0 * v * level)
        # The Newton step d - (h(d) - level) / h'(d), as d (1 - r / (3 (1 + r))).
        r = (2.0 * pc - 1.0) * d / v
        d *= 1.0 - r / (3.0 + 3.0 * r)
    else:
        d = math.sqrt(0.5 * level)
        u = pc + d
        if u < 0.5:
            d = math.sqrt(2.0 * u * (1.0 - u) * level)
    if not d >= 1e-6:  # a level of about 1e-12 (or NaN): no useful bound
        return 1.0
    u = pc + d + (1e-9 + 2e-13 / d)
    return u if u < 1.0 else 1.0


def _below(arm: tuple[float, ...], x: float) -> bool:
    """Return True only if the index ``a + w * kl_upper_bound(y, level)`` is below ``x``.

    With ``z`` the largest number with ``a + w * z < x`` (as rounded), the index is below x
    if the Bernoulli index is below z. The bisection moves its lower end to a midpoint only
    where the divergence it computes is at most the level. If the divergence computed at z
    exceeds ``level + 1e-12``, then at any midpoint >= z the true divergence is larger still
    (it increases on [y, 1]), so the computed one, within 3e-14 of it, exceeds the level: no
    midpoint >= z becomes the result. Above 1 - 1e-12 every midpoint is tested at 1 - 1e-12
    (the divergence's clipping), and the result is 1 only if the first test there passes: a
    result below 1 - 1e-12 is below any z above it.
    """
    a, w, y, level = arm
    if a == 0.0 and w == 1.0:
        z = x
    else:
        z = (x - a) / w
        for _ in range(4):
            if a + w * z < x:
                break
            z = math.nextafter(z, -math.inf)
        else:
            return False
    pc = y if y > _EPS else _EPS
    if z > _HI:
        z = _HI
    if not pc < z:
        return False
    omp = 1.0 - pc
    log = math.log
    return pc * log(pc / z) + omp * log(omp / (1.0 - z)) > level + _MARGIN


#: From this many arms, the bounds are computed with numpy when it is installed.
_NUMPY_MIN_ARMS = 128
#: From this many arms to test, ``_KLBounds.keep`` tests them with numpy.
_NUMPY_MIN_TESTS = 8


class _NumpyArms:
    """Every arm's ``(a, w, y, level)``, bounds and exact cases, as numpy arrays.

    The same operations on the same numbers as ``_KLBounds.fill`` (so the same exact cases and
    lower bounds, bit for bit), with as few array operations as possible: with ~100 arms each
    costs about as much as an arm of the Python loop.
    """

    __slots__ = ("a", "known", "level", "lower", "pc", "w", "y")

    def __init__(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
        lt: float | None,
        variance: bool,
    ) -> None:
        np = _vector.np
        assert np is not None
        m = np.array(n, dtype=float)
        p = np.array(total, dtype=float) / m
        with np.errstate(all="ignore"):
            if lt is None:
                ratio = t / (len(m) * m)
                level = np.log(ratio, out=np.zeros_like(ratio), where=ratio > 1.0) / m
            else:
                level = lt / m
            if variance:
                v = np.array(total_sq, dtype=float) / m - p * p
            p = np.minimum(np.maximum(p, 0.0), 1.0)
            mean = ~(level > 0.0)
            if variance:
                lane = (v < p * (1.0 - p) * (1.0 - 1e-9)) & (p < 1.0)
                mean |= lane & (level <= _NOISE_LEVEL)
                a = np.where(lane, p - np.maximum(v, 0.0) / (1.0 - p), 0.0)
                w = 1.0 - a  # 1 off the variance lanes, so y = p there
                y = (p - a) / w
            else:
                a, w, y = np.zeros_like(p), np.ones_like(p), p
            top = y >= _HI
            self.lower = np.where(mean, p, a + w * np.where(top, 1.0, y))
        self.known = mean | top
        self.a, self.w, self.y, self.level = a, w, y, level
        self.pc = np.maximum(y, _EPS)

    def upper(self) -> Any:
        """Every arm's upper bound (:func:`_bernstein`, vectorised), as a numpy array."""
        np = _vector.np
        assert np is not None
        pc, level = self.pc, self.level
        with np.errstate(all="ignore"):
            v = np.where(pc >= 0.5, pc * (1.0 - pc), 0.25)
            d = np.sqrt(2.0 * v * level)
            r = np.maximum(2.0 * pc - 1.0, 0.0) * d / v
            d *= 1.0 - r / (3.0 + 3.0 * r)
            u = pc + d
            d = np.where(u < 0.5, np.sqrt(2.0 * u * (1.0 - u) * level), d)
            u = pc + d + (1e-9 + 2e-13 / d)
            u = np.where((d >= 1e-6) & (u < 1.0), u, 1.0)  # and NaN to 1
            return np.where(self.known, self.lower, self.a + self.w * u)

    def keep(self, arms: Sequence[int], xs: Sequence[float]) -> list[int]:
        """:meth:`_KLBounds.keep`, vectorised (:func:`_below` for every arm at once)."""
        np = _vector.np
        assert np is not None
        j = np.array(arms, dtype=np.intp)
        x: Any = xs[0] if len(xs) and xs.count(xs[0]) == len(xs) else np.array(xs, dtype=float)
        a, w, pc = self.a[j], self.w[j], self.pc[j]
        with np.errstate(all="ignore"):
            # One step below (x - a) / w: a + w * z < x then holds but in rare roundings,
            # where the arm is simply kept.
            z = np.nextafter((x - a) / w, -np.inf)
            ok = a + w * z < x
            z = np.minimum(z, _HI)
            omp = 1.0 - pc
            kl = pc * np.log(pc / z) + omp * np.log(omp / (1.0 - z))
            below = ok & (pc < z) & (kl > self.level[j] + _MARGIN)
        known = self.known[j]
        if known.any():
            below = np.where(known, self.lower[j] < x, below)
        kept: list[int] = j[~below].tolist()
        return kept


class _KLBounds:
    """The statistics of one selection, with the bounds and exact indices of its arms.

    Every index is ``a + w * kl_upper_bound(y, level)`` (``a = 0, w = 1, y = mean`` for the
    Bernoulli index), or known exactly: the mean when the level is 0, ``a + w`` when ``y`` is
    within 1e-12 of 1. ``fill`` computes every arm's bounds (inlined, as its loops run over
    every arm on every choice) and keeps its ``(a, w, y, level)`` for ``keep``.
    """

    __slots__ = (
        "_k",
        "_lt",
        "_n",
        "_numpy",
        "_params",
        "_q",
        "_s",
        "_t",
        "_variance",
        "lower",
        "upper",
    )

    # Set by fill (the engine's use); exact alone needs none of them.
    lower: list[float]
    upper: list[float]
    _params: list[tuple[float, ...] | None]
    _numpy: _NumpyArms | None

    def __init__(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
        rate: str,
        variance: bool,
    ) -> None:
        self._n = n
        self._s = total
        self._q = total_sq
        self._t = t
        self._k = len(n)
        # The "log" rate's ln(t), shared by every arm; None for the anytime rate.
        self._lt = (math.log(t) if t > 1.0 else 0.0) if rate == "log" else None
        self._variance = variance
        self._params = []
        self._numpy = None

    def _level(self, m: float) -> float:
        lt = self._lt
        if lt is not None:
            return lt / m
        ratio = self._t / (self._k * m)
        return (math.log(ratio) if ratio > 1.0 else 0.0) / m

    def exact(self, i: int) -> float:
        """Arm ``i``'s index (what ``KLUCB.indices`` returns for it)."""
        m = self._n[i]
        p = self._s[i] / m
        if self._variance:
            return variance_kl_upper_bound(p, self._q[i] / m - p * p, self._level(m))
        return _kl_index(p, self._level(m))

    def keep(self, arms: Sequence[int], xs: Sequence[float]) -> list[int]:
        """Return the arms of ``arms`` whose index may be >= the matching ``x``.

        An arm is dropped only if its index is certainly below its ``x``: the divergence
        computed at the matching point exceeds the arm's level by 1e-12 (:func:`_below`).
        """
        arrays = self._numpy
        if arrays is not None and len(arms) >= _NUMPY_MIN_TESTS:
            return arrays.keep(arms, xs)
        params = self._params
        kept = []
        for i, x in zip(arms, xs, strict=True):
            arm: Any = params[i] if params else self._split(i)
            if arm is None:  # filled, and the bounds are the index
                arm = self.lower[i]
            if type(arm) is float:  # the index itself
                if not arm < x:
                    kept.append(i)
            elif not _below(arm, x):
                kept.append(i)
        return kept

    def _split(self, i: int) -> tuple[float, ...] | float:
        """Arm ``i``'s ``(a, w, y, level)``, or its index when that needs no bisection."""
        m = self._n[i]
        p = self._s[i] / m
        return _split(p, self._q[i] / m - p * p, self._level(m), self._variance)

    def bounds_of(self, i: int) -> tuple[float, float]:
        """Arm ``i``'s ``(lower, upper)``: the numbers ``fill`` computes for it."""
        arm = self._split(i)
        if type(arm) is float:
            return arm, arm
        a, w, y, level = arm  # type: ignore[misc]
        return a + w * y, a + w * _bernstein(y, level)

    def fill(self) -> None:
        """Compute ``lower`` and ``upper`` for every arm."""
        n, s, q, t, lt, k = self._n, self._s, self._q, self._t, self._lt, self._k
        np = _vector.np
        if k >= _NUMPY_MIN_ARMS and np is not None:
            arrays = self._numpy = _NumpyArms(n, s, q, t, lt, self._variance)
            self.lower = arrays.lower.tolist()
            self.upper = arrays.upper().tolist()
            self._params = []
            return
        self._numpy = None
        log, sqrt = math.log, math.sqrt
        variance = self._variance
        eps, top, noise = _EPS, _HI, _NOISE_LEVEL
        lower: list[float] = []
        upper: list[float] = []
        params: list[tuple[float, ...] | None] = []
        low, keep = lower.append, params.append
        for m, si, qi in zip(n, s, q, strict=True):
            p = si / m
            if lt is None:
                ratio = t / (k * m)
                level = log(ratio) / m if ratio > 1.0 else 0.0
            else:
                level = lt / m
            if not 0.0 <= p <= 1.0:
                v = qi / m - p * p  # with the mean before clipping, as the index computes it
                p = 1.0 if p > 1.0 else 0.0
            elif variance:
                v = qi / m - p * p
            if not level > 0.0:  # the index is the mean
                low(p)
                keep(None)
                continue
            if variance and v < p * (1.0 - p) * (1.0 - 1e-9) and p < 1.0:
                if level <= noise:
                    low(p)
                    keep(None)
                    continue
                a = p - (v if v > 0.0 else 0.0) / (1.0 - p)
                w = 1.0 - a
                y = (p - a) / w
                if y >= top:  # the index is a + w * 1
                    keep(None)
                    low(a + w * 1.0)
                    continue
                keep((a, w, y, level))
                low(a + w * y)
            elif p >= top:  # the Bernoulli index is 1
                keep(None)
                low(1.0)
                continue
            else:
                a, w, y = 0.0, 1.0, p
                keep((0.0, 1.0, p, level))
                low(p)
        # Second pass, over the arms that need a bisection: an arm whose index is certainly
        # below the best lower bound (one divergence, as in _below) gets the number just under
        # that bound as its upper bound; the others, the cheap _bernstein bound (inlined).
        floor = max(lower)
        under = math.nextafter(floor, -math.inf)
        upper[:] = lower
        margin = _MARGIN
        for j, arm in enumerate(params):
            if arm is None:  # the bounds are the index
                continue
            a, w, y, level = arm
            if a == 0.0 and w == 1.0:
                z = floor
            else:
                z = (floor - a) / w
                for _ in range(4):
                    if a + w * z < floor:
                        break
                    z = math.nextafter(z, -math.inf)
                else:
                    z = -math.inf
            pc = y if y > eps else eps
            if z > top:
                z = top
            if pc < z:
                omp = 1.0 - pc
                if pc * log(pc / z) + omp * log(omp / (1.0 - z)) > level + margin:
                    upper[j] = under
                    continue
            if y >= 0.5:
                vy = y * (1.0 - y)
                d = sqrt(2.0 * vy * level)
                r = (2.0 * y - 1.0) * d / vy
                d *= 1.0 - r / (3.0 + 3.0 * r)
            else:
                d = sqrt(0.5 * level)
                hi = pc + d
                if hi < 0.5:
                    d = sqrt(2.0 * hi * (1.0 - hi) * level)
                y = pc
            if d >= 1e-6:
                hi = y + d + (1e-9 + 2e-13 / d)
                upper[j] = a + w * hi if hi < 1.0 else a + w * 1.0
            else:
                upper[j] = a + w * 1.0
        self.lower = lower
        self.upper = upper
        self._params = params


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

    **Exact pruning** (:class:`~bandit_router.policies.BoundedPolicy`). A bisection per arm is
    costly, and only the largest index matters, so the engine first takes a cheap bound of
    every index, with ``p = mean_i``, ``lam = rate_i / n_i`` and ``x`` the transformed mean
    ``(mean_i - a_i) / (1 - a_i)`` of the variance-adaptive index::

        bernoulli:  index_i <= p + d + 1e-9 + 2e-13 / d,   d = sqrt(2 V lam)
        variance:   index_i <= a_i + (1 - a_i) * (the same bound, for x)

    with ``V = p (1 - p)`` when ``p >= 1/2``, else ``u (1 - u)`` for ``u = p + sqrt(lam / 2)``
    when ``u < 1/2``, else 1/4 (capped at 1; the mean itself when ``lam = 0``). It holds
    because ``KL(p, q)``, the integral from p to q of ``(x - p) / (x (1 - x))``, is at least
    ``(q - p)^2 / (2 V)`` for ``V`` the largest ``x (1 - x)`` between p and the root (the
    Pinsker inequality with Bernstein's variance term); the slack covers the rounding of the
    divergence the bisection computes (below 3e-14, which moves its result by at most
    ``3e-14 / KL'`` and ``KL' >= 4 d`` there) and of the arithmetic. The engine then computes
    exact indices in decreasing order of the bound, stops at the first bound below the best
    exact index, and skips an arm when the divergence at the best index so far (computed as
    the bisection computes it) exceeds its level by 1e-12: then no bisection midpoint at or
    above that value can be accepted (the policy already runs that test against the best
    lower bound when it computes the bounds, and reports such an arm's upper bound just
    below it). The choice is therefore the one the full computation
    makes, ties and their random draw included; only the time differs. As the index only
    grows with ``t`` while an arm's statistics stay the same, the engine also keeps, from one
    choice to the next, a bound of each arm's index at a later ``t`` (cheap, or exact when
    the cheap one is too loose), and skips the arms whose bound stays below the best.

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
        b = _KLBounds(n, total, total_sq, t, self.rate, self.variance)
        if len(total) != b._k or len(total_sq) != b._k:
            raise ValueError("n, total and total_sq must have the same length")
        exact = b.exact
        return [exact(i) for i in range(b._k)]

    def index_bounds(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
    ) -> _KLBounds:
        """Return certified bounds of every arm's index, and its exact index on demand.

        See "Exact pruning" above and :class:`~bandit_router.policies.BoundedPolicy`.
        """
        b = _KLBounds(n, total, total_sq, t, self.rate, self.variance)
        b.fill()
        return b

    def _lazy_bounds(
        self,
        n: Sequence[float],
        total: Sequence[float],
        total_sq: Sequence[float],
        t: float,
    ) -> _KLBounds:
        """The bounds object without ``fill``: per arm on demand (``bounds_of``, ``exact``)."""
        return _KLBounds(n, total, total_sq, t, self.rate, self.variance)
