"""bandit-router-langsmith: LangSmith and openevals evaluators as bandit-router rewards.

* :func:`langsmith_reward` turns an evaluator written for ``langsmith.evaluate()`` (a
  ``(run, example)`` function, an ``(inputs, outputs, reference_outputs)`` function, an
  openevals evaluator, a ``RunEvaluator``), unchanged, into a router's ``reward=``.
* :class:`LangSmithFeedback` forwards every reward, inline or delayed, to LangSmith as
  feedback on the router's run id, in the background.

See ``docs/langsmith.md``.
"""

from __future__ import annotations

from bandit_router_langsmith._feedback import FeedbackTarget, LangSmithFeedback
from bandit_router_langsmith._reward import (
    REFERENCE_KEY,
    LangSmithReward,
    langsmith_reward,
    message_text,
)

__all__ = [
    "REFERENCE_KEY",
    "FeedbackTarget",
    "LangSmithFeedback",
    "LangSmithReward",
    "langsmith_reward",
    "message_text",
]
__version__ = "0.1.0"
