"""bandit-router: a learning LLM router for LangChain.

Each call is routed to one of several arms (chat models, chains) by a multi-armed bandit
policy (UCB family by default) that learns from rewards, with priors, decay on a global clock,
concurrency-aware selection and pluggable state stores.
"""

from __future__ import annotations

from bandit_router._bandit import Bandit, Decision
from bandit_router._engine import PendingDecision, Selection
from bandit_router._errors import (
    AllArmsFailedError,
    BanditRouterError,
    ConfigurationError,
    CorruptStateError,
    DecisionError,
    DuplicateDecisionError,
    InvalidRewardError,
    StoreError,
    UnknownArmError,
    UnknownDecisionError,
    UnsupportedEventLoopError,
)
from bandit_router._stats import ArmStatistics, Prior
from bandit_router._version import __version__
from bandit_router.langchain.chat_model import ChatBanditRouter
from bandit_router.langchain.runnable import BanditRouterRunnable

__all__ = [
    "AllArmsFailedError",
    "ArmStatistics",
    "Bandit",
    "BanditRouterError",
    "BanditRouterRunnable",
    "ChatBanditRouter",
    "ConfigurationError",
    "CorruptStateError",
    "Decision",
    "DecisionError",
    "DuplicateDecisionError",
    "InvalidRewardError",
    "PendingDecision",
    "Prior",
    "Selection",
    "StoreError",
    "UnknownArmError",
    "UnknownDecisionError",
    "UnsupportedEventLoopError",
    "__version__",
]
