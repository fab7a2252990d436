"""ReplayArm: a chat model that answers with a logged outcome instead of calling an LLM."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, PrivateAttr

from bandit_router.replay._table import OutcomeTable

__all__ = ["ReplayArm", "replay_arms"]


class ReplayArm(BaseChatModel):
    """A chat model that replays one model's logged outcomes from an :class:`OutcomeTable`.

    Ask it a prompt id (the text of the last message, e.g. ``arm.invoke("q17")``): it answers
    with that model's logged score as text, and puts the outcome in the message's
    ``response_metadata``: ``{"prompt_id", "row", "score", "cost", "model_name"}``. An evaluator
    reads the reward from there. No network, no randomness: the replay of a policy through a
    real :class:`~bandit_router.BanditRouterRunnable` is exact.

    Attributes:
        table: The outcome table.
        model: The model (column) this arm replays.
        rows: ``{prompt_id: row}``; built from the table when not given (share one between
            the arms of a table, as :func:`replay_arms` does).

    Raises:
        ValueError: If ``model`` is not in the table; when called, if the prompt id is unknown.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    table: OutcomeTable
    model: str
    rows: Mapping[str, int] | None = None

    _column: int = PrivateAttr(default=0)
    _index: Mapping[str, int] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        """Find the model's column and index the prompts."""
        if self.model not in self.table.models:
            raise ValueError(f"no model {self.model!r} in table {self.table.name!r}")
        self._column = self.table.models.index(self.model)
        self._index = (
            self.rows
            if self.rows is not None
            else {pid: i for i, pid in enumerate(self.table.prompt_ids)}
        )

    @property
    def _llm_type(self) -> str:
        return "bandit-router-replay-arm"

    def _answer(self, messages: list[BaseMessage]) -> ChatResult:
        content = messages[-1].content if messages else ""
        pid = content.strip() if isinstance(content, str) else ""
        row = self._index.get(pid)
        if row is None:
            raise ValueError(f"unknown prompt id {pid!r} in table {self.table.name!r}")
        j = self._column
        score = self.table.scores[row][j]
        cost = self.table.costs[row][j]
        msg = AIMessage(
            content=f"{score:g}",
            response_metadata={
                "model_name": self.model,
                "prompt_id": pid,
                "row": row,
                "score": score,
                "cost": cost,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=msg)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._answer(messages)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._answer(messages)


def replay_arms(table: OutcomeTable) -> dict[str, ReplayArm]:
    """Return ``{model: ReplayArm}`` for every model of ``table``, sharing one prompt index."""
    rows = {pid: i for i, pid in enumerate(table.prompt_ids)}
    return {m: ReplayArm(table=table, model=m, rows=rows) for m in table.models}
