"""The policies' numpy paths (many arms): the same indices as pure Python, or the same laws."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit_router.policies import UCB1, Policy, ThompsonSampling, UCBTuned, _vector

np = pytest.importorskip("numpy")


@contextmanager
def numpy_hidden() -> Iterator[None]:
    """Run the pure-Python paths, as without numpy installed."""
    saved = _vector.np
    _vector.np = None
    try:
        yield
    finally:
        _vector.np = saved


def stats(k: int, pattern: int) -> tuple[list[float], list[float], list[float]]:
    """Valid statistics of ``k`` arms: counts (decayed or not), sums, sums of squares."""
    rng = random.Random(pattern)
    n = [rng.choice([1.0, 2.0, 7.0, rng.uniform(1e-3, 1e4)]) for _ in range(k)]
    s = [m * rng.choice([0.0, 1.0, 0.5, rng.random()]) for m in n]
    q = [si * si / m + rng.random() * (si - si * si / m) for si, m in zip(s, n, strict=True)]
    return n, s, q


@settings(max_examples=60, deadline=None)
@given(
    policy=st.sampled_from([UCB1(), UCB1(c=0.5), UCBTuned()]),
    k=st.integers(1, 400),
    pattern=st.integers(0, 2**32),
    scale=st.sampled_from([1e-3, 1.0, 3.0, 1e6]),
)
def test_numpy_indices_are_the_pure_python_ones(
    policy: Policy, k: int, pattern: int, scale: float
) -> None:
    n, s, q = stats(k, pattern)
    t = math.fsum(n) * scale
    fast = policy.indices(n, s, q, t, Random(0))
    with numpy_hidden():
        slow = policy.indices(n, s, q, t, Random(0))
    assert type(fast) is list
    assert all(type(x) is float for x in fast)
    assert fast == slow  # bit for bit


def test_thompson_below_32_arms_is_the_pure_python_path() -> None:
    n, s, q = stats(31, 1)
    fast = ThompsonSampling().indices(n, s, q, math.fsum(n), Random(5))
    with numpy_hidden():
        assert ThompsonSampling().indices(n, s, q, math.fsum(n), Random(5)) == fast


def test_thompson_with_numpy_draws_the_same_laws_reproducibly() -> None:
    k = 2000
    n, s = [7.0] * k, [2.0] * k  # every posterior is Beta(3, 6): mean 1/3, sd ~0.149
    rng = Random(9)
    draws = ThompsonSampling().indices(n, s, s, math.fsum(n), rng)
    assert len(draws) == k
    assert all(0.0 <= x <= 1.0 for x in draws)
    assert statistics.fmean(draws) == pytest.approx(1 / 3, abs=0.015)  # ~4.5 standard errors
    assert statistics.stdev(draws) == pytest.approx(math.sqrt(3 * 6 / (81 * 10)), rel=0.08)
    # One draw of the router's generator per choice, so the seed still fixes everything.
    spent = Random(9)
    spent.getrandbits(64)
    assert rng.getstate() == spent.getstate()
    assert ThompsonSampling().indices(n, s, s, math.fsum(n), Random(9)) == draws
    with numpy_hidden():
        slow = ThompsonSampling().indices(n, s, s, math.fsum(n), Random(9))
    assert statistics.fmean(slow) == pytest.approx(1 / 3, abs=0.015)
    assert slow != draws  # documented: other numbers than the pure-Python path
