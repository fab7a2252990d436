"""Selection policies: pure index maths, no I/O, no clocks.

Every policy implements the :class:`Policy` protocol; write your own the same way.
"""

from __future__ import annotations

from bandit_router.policies._base import BoundedPolicy, IndexBounds, Policy, RewardTransform
from bandit_router.policies.klucb import KLUCB
from bandit_router.policies.thompson import ThompsonSampling
from bandit_router.policies.ucb import UCB1, UCBTuned

__all__ = [
    "KLUCB",
    "UCB1",
    "BoundedPolicy",
    "IndexBounds",
    "Policy",
    "RewardTransform",
    "ThompsonSampling",
    "UCBTuned",
]
