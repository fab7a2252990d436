"""The LangChain faces of the router: thin adapters over the routing core.

* :class:`~bandit_router.langchain.runnable.BanditRouterRunnable`: a ``Runnable`` (any arms).
* :class:`~bandit_router.langchain.chat_model.ChatBanditRouter`: a ``BaseChatModel``.
* :class:`~bandit_router.langchain.options.RouterOptions`: their shared arguments.
* :mod:`~bandit_router.langchain.arms`: how an arm is called (child runs, client retries, usage).
"""

from __future__ import annotations

from bandit_router.langchain.chat_model import ChatBanditRouter
from bandit_router.langchain.options import RouterOptions
from bandit_router.langchain.runnable import BanditRouterRunnable

__all__ = ["BanditRouterRunnable", "ChatBanditRouter", "RouterOptions"]
