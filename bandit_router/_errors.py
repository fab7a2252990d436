"""The exceptions bandit-router raises.

Every input error is a :class:`ValueError` subclass whose message names the bad value, so
callers can catch the broad built-in class or the precise one. Store failures are
:class:`StoreError` (not ``ValueError``): they are about the environment, not the input.
"""

from __future__ import annotations

__all__ = [
    "AllArmsFailedError",
    "BanditRouterError",
    "ConfigurationError",
    "CorruptStateError",
    "DecisionError",
    "DuplicateDecisionError",
    "InvalidRewardError",
    "StoreError",
    "UnknownArmError",
    "UnknownDecisionError",
]


class BanditRouterError(Exception):
    """Base class of every exception raised by bandit-router."""


class ConfigurationError(BanditRouterError, ValueError):
    """A constructor argument is invalid (no arms, bad decay, bad prior ...)."""


class InvalidRewardError(BanditRouterError, ValueError):
    """A reward is NaN, infinite, outside [0, 1] or not a number."""


class UnknownArmError(BanditRouterError, ValueError):
    """An arm name is not one of the router's arms."""


class DecisionError(BanditRouterError, ValueError):
    """Base class of errors about a decision id."""


class UnknownDecisionError(DecisionError, KeyError):
    """A decision id was never issued, was already settled, or has expired."""

    def __str__(self) -> str:
        # KeyError quotes its argument (repr); keep the readable message instead.
        return str(self.args[0]) if self.args else ""


class DuplicateDecisionError(DecisionError):
    """A decision id is already pending; decision ids must be unique."""


class StoreError(BanditRouterError):
    """A state store failed (I/O error, locked database, lost connection ...)."""


class CorruptStateError(StoreError):
    """A state file is corrupt, foreign or of an unsupported schema version; it was not modified."""


class AllArmsFailedError(BanditRouterError):
    """Every arm tried for one call failed; ``errors`` maps each arm to its last exception."""

    def __init__(self, errors: dict[str, BaseException]) -> None:
        """Create the error from ``{arm: last exception}``."""
        self.errors = dict(errors)
        detail = "; ".join(f"{arm}: {type(e).__name__}: {e}" for arm, e in self.errors.items())
        super().__init__(f"every arm failed ({len(self.errors)} tried): {detail}")


class UnsupportedEventLoopError(BanditRouterError, RuntimeError):
    """An async face was called outside asyncio (e.g. under trio).

    LangChain's async runnables run on asyncio only. Nothing was routed or counted. Under
    trio, call the sync face in a worker thread: ``await trio.to_thread.run_sync(router.invoke,
    x)``; the :class:`~bandit_router.Bandit` under the router works on trio itself.
    """
