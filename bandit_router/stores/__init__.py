"""State stores: where a router's learning lives (memory, SQLite; Redis in an integration).

A store author implements :class:`StateStore` using :class:`BanditState`'s maths
(``apply``), the :class:`Rules` and :class:`Outcome` the router passes in, and keeps
:class:`PendingDecision` records; the contract suite in ``tests/stores`` checks the result.
"""

from __future__ import annotations

from bandit_router._engine import PendingDecision, Rules
from bandit_router._stats import BanditState, Outcome
from bandit_router.stores._base import Chooser, StateStore
from bandit_router.stores.memory import InMemoryStore
from bandit_router.stores.sqlite import SQLiteStore

__all__ = [
    "BanditState",
    "Chooser",
    "InMemoryStore",
    "Outcome",
    "PendingDecision",
    "Rules",
    "SQLiteStore",
    "StateStore",
]
