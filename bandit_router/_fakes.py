"""Fake chat models of known quality, for tests, examples and benchmarks (no API needed)."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr

from bandit_router.rewards import inline

__all__ = ["FakeArm", "FakeArmError", "is_right"]

RIGHT = "right"
WRONG = "wrong"


class FakeArmError(RuntimeError):
    """The error a :class:`FakeArm` raises for a scripted failure (not transient by default)."""


class FakeArm(BaseChatModel):
    """A scripted chat model whose answers are right with a known probability.

    Every call draws, from its own seeded generator: a failure with probability
    ``failure_rate`` (raising ``error``), else the answer ``"right"`` with probability
    ``quality`` and ``"wrong"`` otherwise. It can also sleep ``latency`` seconds (plus up to
    ``jitter``), hang forever, and report token usage. Native async (``_agenerate``,
    ``_astream``); streams split the answer into ``chunks`` pieces.

    Attributes:
        quality: Probability of a right answer, in [0, 1].
        failure_rate: Probability that a call raises, in [0, 1].
        fail_first: The first this many calls raise, whatever ``failure_rate`` says.
        error: The exception class raised on failure (``FakeArmError``, not transient;
            use ``ConnectionError`` or ``TimeoutError`` for transient ones).
        fail_mid_stream: Raise after the first chunk instead of before it.
        latency: Seconds each call takes.
        jitter: Extra random seconds, up to this much.
        hang: Never answer (for timeout tests).
        seed: Seed of the arm's generator.
        input_tokens: Reported ``usage_metadata`` input tokens.
        output_tokens: Reported ``usage_metadata`` output tokens.
        chunks: Pieces a streamed answer is split into.
        model: Reported ``response_metadata["model_name"]``.
    """

    quality: float = 1.0
    failure_rate: float = 0.0
    fail_first: int = 0
    error: type[BaseException] = FakeArmError
    fail_mid_stream: bool = False
    latency: float = 0.0
    jitter: float = 0.0
    hang: bool = False
    seed: int | None = None
    input_tokens: int = 10
    output_tokens: int = 2
    chunks: int = 2
    model: str = Field(default="fake-arm")

    _rng: random.Random = PrivateAttr()
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: int = PrivateAttr(default=0)
    _failures: int = PrivateAttr(default=0)

    def model_post_init(self, context: Any, /) -> None:
        """Seed the generator."""
        for name in ("quality", "failure_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {v!r}")
        self._rng = random.Random(self.seed)

    @property
    def _llm_type(self) -> str:
        return "bandit-router-fake-arm"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools in the OpenAI format, as real chat models do (the fake ignores them)."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    @property
    def calls(self) -> int:
        """How many calls reached this arm."""
        return self._calls

    @property
    def failures(self) -> int:
        """How many of those raised."""
        return self._failures

    def _draw(self) -> tuple[bool, str, float]:
        with self._lock:
            self._calls += 1
            fail = self._rng.random() < self.failure_rate or self._calls <= self.fail_first
            if fail:
                self._failures += 1
            answer = RIGHT if self._rng.random() < self.quality else WRONG
            delay = self.latency + (self._rng.random() * self.jitter if self.jitter else 0.0)
        return fail, answer, delay

    def _message(self, answer: str) -> AIMessage:
        return AIMessage(
            content=answer,
            response_metadata={"model_name": self.model},
            usage_metadata={
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "total_tokens": self.input_tokens + self.output_tokens,
            },
        )

    def _pieces(self, answer: str) -> list[str]:
        k = max(1, min(self.chunks, len(answer)))
        step = -(-len(answer) // k)
        return [answer[i : i + step] for i in range(0, len(answer), step)]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        fail, answer, delay = self._draw()
        if self.hang:
            threading.Event().wait()  # pragma: no cover (sync hangs are not tested)
        if delay:
            time.sleep(delay)
        if fail:
            raise self.error(f"{self.model}: scripted failure")
        return ChatResult(generations=[ChatGeneration(message=self._message(answer))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        fail, answer, delay = self._draw()
        if self.hang:
            await asyncio.Event().wait()
        if delay:
            await asyncio.sleep(delay)
        if fail:
            raise self.error(f"{self.model}: scripted failure")
        return ChatResult(generations=[ChatGeneration(message=self._message(answer))])

    def _chunk(self, i: int, pieces: list[str]) -> ChatGenerationChunk:
        last = i == len(pieces) - 1
        msg = AIMessageChunk(
            content=pieces[i],
            response_metadata={"model_name": self.model} if last else {},
            usage_metadata=(
                {
                    "input_tokens": self.input_tokens,
                    "output_tokens": self.output_tokens,
                    "total_tokens": self.input_tokens + self.output_tokens,
                }
                if last
                else None
            ),
        )
        return ChatGenerationChunk(message=msg)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        fail, answer, delay = self._draw()
        if delay:
            time.sleep(delay)
        pieces = self._pieces(answer)
        for i in range(len(pieces)):
            if fail and i == (1 if self.fail_mid_stream and len(pieces) > 1 else 0):
                raise self.error(f"{self.model}: scripted failure")
            chunk = self._chunk(i, pieces)
            if run_manager is not None:
                run_manager.on_llm_new_token(pieces[i], chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        fail, answer, delay = self._draw()
        if self.hang:
            await asyncio.Event().wait()
        if delay:
            await asyncio.sleep(delay)
        pieces = self._pieces(answer)
        for i in range(len(pieces)):
            if fail and i == (1 if self.fail_mid_stream and len(pieces) > 1 else 0):
                raise self.error(f"{self.model}: scripted failure")
            chunk = self._chunk(i, pieces)
            if run_manager is not None:
                await run_manager.on_llm_new_token(pieces[i], chunk=chunk)
            yield chunk


@inline  # a comparison: cheaper than the hop to a worker thread
def is_right(outputs: Any) -> bool:
    """The evaluator for :class:`FakeArm`: 1 when the answer is ``"right"``."""
    content = outputs.content if isinstance(outputs, BaseMessage) else outputs
    return content == RIGHT
