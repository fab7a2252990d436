"""The LangChain-free core: how a call is routed, retried, timed, scored and observed.

* :mod:`~bandit_router.core.routing`: decide -> attempt -> fall back -> finish (one plan, two
  drivers: sync and async).
* :mod:`~bandit_router.core.timeouts`: the time limit of an attempt.
* :mod:`~bandit_router.core.failures`: what an arm's exception means (retry, rate limit).
* :mod:`~bandit_router.core.scoring`: evaluators, after the answer.
* :mod:`~bandit_router.core.observer`: what the core reports (telemetry implements it).
"""

from __future__ import annotations

from bandit_router.core.failures import is_rate_limit, is_transient, retry_after
from bandit_router.core.timeouts import AttemptTimeoutError

__all__ = ["AttemptTimeoutError", "is_rate_limit", "is_transient", "retry_after"]
