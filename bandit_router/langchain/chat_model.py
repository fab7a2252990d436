"""ChatBanditRouter: the learning router as a drop-in LangChain chat model."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar, cast

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    BaseCallbackManager,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, patch_config
from langchain_core.runnables.utils import ConfigurableFieldSpec
from langchain_core.tools import BaseTool
from langchain_core.tracers import context as _tracer_context
from langchain_core.tracers.base import BaseTracer
from pydantic import PrivateAttr

from bandit_router._errors import ConfigurationError, UnknownArmError
from bandit_router._stats import ArmStatistics
from bandit_router.core.routing import Request
from bandit_router.langchain.arms import ArmInvoker
from bandit_router.langchain.options import DEFAULT_NAME, RouterOptions
from bandit_router.langchain.runnable import BanditRouterRunnable, arm_method, require_asyncio

try:  # time-ordered run ids, as LangChain's own runs have
    from langchain_core.utils.uuid import uuid7 as _lc_uuid7

    def _uuid7() -> uuid.UUID:
        return _lc_uuid7()

except ImportError:  # pragma: no cover (an older langchain-core: random ids)
    _uuid7 = uuid.uuid4

__all__ = ["ChatBanditRouter"]

_M = TypeVar("_M", bound=AIMessage)

#: The private keyword argument that carries a call's config from the public faces to
#: ``_agenerate``/``_astream`` (LangChain does not hand them the config, and its ``astream``
#: does not hand ``_astream`` the run manager). It never reaches an arm or a trace.
_CALL_KEY = "__bandit_router_call"
#: Keyword arguments that belong to the router, never passed on to an arm.
_TOOLS_KWARGS_KEY = "bind_tools_kwargs"


@dataclass(slots=True)
class _ChatCall:
    """What the public faces learn about a call before LangChain opens the model's run."""

    run_id: uuid.UUID
    config: RunnableConfig
    callbacks: BaseCallbackManager


@dataclass(slots=True)
class _Parent:
    """The router's own chat-model run, as the parent of the arms' runs."""

    run_id: uuid.UUID
    handlers: list[BaseCallbackHandler]
    tags: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)

    def child_callbacks(self, arm: str, attempt: int) -> AsyncCallbackManager:
        """Callbacks for one attempt on ``arm``: a child run of the router's run.

        Only tracers follow the router into its arms (LangSmith and run collectors show the
        arm's run inside the router's). Streaming handlers (``astream_events``, LangGraph's
        message stream) and plain handlers (usage counters, ``on_chat_model_start`` hooks)
        see one chat model call, the router's: otherwise every token would be streamed twice
        and every token counted twice.
        """
        manager = AsyncCallbackManager(handlers=[], parent_run_id=self.run_id)
        manager.set_handlers([h for h in self.handlers if _follows_into_arms(h)])
        manager.add_tags(self.tags)
        manager.add_metadata(self.metadata)
        # nostream: LangGraph's own marker for a model run whose tokens must not be streamed.
        manager.add_tags(
            [f"bandit_router:arm:{arm}", f"retry:attempt:{attempt}", "nostream"], inherit=False
        )
        return manager


def _streams(handler: BaseCallbackHandler) -> bool:
    """Whether ``handler`` streams tokens out.

    ``astream_events``, ``astream_log`` and LangGraph's message stream tap outputs, or take the
    v2 stream events.
    """
    if hasattr(handler, "tap_output_aiter") or hasattr(handler, "tap_output_iter"):
        return True
    # LangChain marks v2 stream consumers with a private base class: recognised by its name
    # (importing it would break on a version that moves it).
    return any(c.__name__ == "_V2StreamingCallbackHandler" for c in type(handler).__mro__)


def _follows_into_arms(handler: BaseCallbackHandler) -> bool:
    return isinstance(handler, BaseTracer) and not _streams(handler)


def _hidden_hooks() -> list[ContextVar[Any]]:
    """The context variables that would add a handler the arms must not see.

    LangChain adds the handler of a context manager such as ``get_usage_metadata_callback()``
    to every run configured while it is open, parents' callbacks or not: the arm's run too,
    where it would count the tokens a second time.
    """
    hooks = getattr(_tracer_context, "_configure_hooks", ())
    return [
        var
        for var, *_ in hooks
        if isinstance(handler := var.get(), BaseCallbackHandler) and not _follows_into_arms(handler)
    ]


class _WithoutHooks(Runnable[Any, Any]):
    """An arm called with some context-registered handlers switched off (see above)."""

    def __init__(self, bound: Runnable[Any, Any], hidden: list[ContextVar[Any]]) -> None:
        self.bound = bound
        self.hidden = hidden

    @contextmanager
    def _hiding(self) -> Iterator[None]:
        tokens = [var.set(None) for var in self.hidden]
        try:
            yield
        finally:
            for var, token in zip(reversed(self.hidden), reversed(tokens), strict=True):
                var.reset(token)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Call the arm."""
        with self._hiding():
            return self.bound.invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Call the arm."""
        with self._hiding():
            return await self.bound.ainvoke(input, config, **kwargs)

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> AsyncIterator[Any]:
        """Stream from the arm; its run starts (and takes its handlers) at the first chunk."""
        it = self.bound.astream(input, config, **kwargs).__aiter__()
        try:
            with self._hiding():
                try:
                    first = await it.__anext__()
                except StopAsyncIteration:
                    return
            yield first
            async for chunk in it:
                yield chunk
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()


def _as_message(output: Any) -> AIMessage:
    if isinstance(output, AIMessageChunk):
        output = AIMessage(
            **{
                k: v
                for k, v in output.__dict__.items()
                if k not in ("type", "tool_call_chunks", "chunk_position")
            }
        )
    if isinstance(output, AIMessage):
        return output
    if isinstance(output, BaseMessage):
        return AIMessage(content=output.content, response_metadata=output.response_metadata)
    return AIMessage(content=output if isinstance(output, str) else str(output))


def _as_chunk(output: Any) -> AIMessageChunk:
    if isinstance(output, AIMessageChunk):
        return output
    if isinstance(output, AIMessage):
        return AIMessageChunk(
            content=output.content,
            additional_kwargs=output.additional_kwargs,
            response_metadata=output.response_metadata,
            usage_metadata=output.usage_metadata,
            id=output.id,
            tool_call_chunks=[
                tool_call_chunk(
                    name=tc["name"], args=json.dumps(tc["args"]), id=tc.get("id"), index=i
                )
                for i, tc in enumerate(output.tool_calls)
            ],
        )
    return AIMessageChunk(content=_as_message(output).content)


def _own_id(message: _M) -> _M:
    """Drop the id LangChain gave the message in the arm's run: the router's run gives its own.

    Provider ids (``chatcmpl-...``, ``msg_...``) are kept.
    """
    if message.id is not None and message.id.startswith("lc_"):
        return message.model_copy(update={"id": None})
    return message


class ChatBanditRouter(RouterOptions, BaseChatModel):
    """The learning router as a LangChain chat model: a drop-in ``BaseChatModel``.

    Everything :class:`BanditRouterRunnable` does (the same arguments, declared once in
    :class:`~bandit_router.langchain.options.RouterOptions`, and the same routing core), in
    the shape that ``create_agent``, LangGraph and any code written for one chat model accept:

    * ``bind_tools(tools, tool_choice=...)`` binds the tools to the router; on each call the
      chosen arm converts them with its own ``bind_tools``.
    * ``with_structured_output(schema, method=...)`` routes over each arm's own
      ``with_structured_output`` (function calling, JSON mode or JSON schema, as the arms
      support them); an arm whose output does not parse counts as failed and the call falls
      back to the next-best arm. The arms' raw messages are kept for their token usage.
    * ``model="<arm>"`` (per call) pins an arm, like ``configurable={router.arm_key: ...}``.
    * ``usage_metadata`` and ``response_metadata["model_name"]`` are the chosen arm's, and
      ``response_metadata["bandit_router"]`` says which arm answered under which decision.
    * Each arm's run is a child of the router's run, seen by tracers (LangSmith) only:
      streaming handlers and other callbacks see one chat model call, so tokens are streamed
      once and counted once.
    * The sync faces call the arms' sync methods, the async faces their async ones.

    Results of ``bind_tools`` and ``with_structured_output`` share the router's learning.

    Args:
        temperature: Passed to the chosen arm on every call (``None``: the arm's own).
        max_tokens: Passed to the chosen arm on every call (``None``: the arm's own).
        stop: Default stop sequences, passed to the chosen arm (a call's ``stop`` wins).
        max_retries: LangChain's standard name for the router's retries: ``max_attempts =
            max_retries + 1``.
        streaming: Stream from the chosen arm even on ``invoke`` (LangChain's standard flag).
        **router_arguments: Every argument of :class:`BanditRouterRunnable` (``arms``,
            ``policy``, ``priors``, ``decay``, ``reward``, ``store``, ``name``,
            ``max_attempts``, ``timeout``, ...), with the same meaning and defaults.

    Raises:
        ConfigurationError: On any invalid or unknown argument; the message names it.
    """

    # LangChain's standard chat-model fields (the router's own are RouterOptions').
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    max_retries: int | None = None
    streaming: bool = False

    _router: BanditRouterRunnable | None = PrivateAttr(default=None)

    def __init__(self, **kwargs: Any) -> None:
        retries = kwargs.get("max_retries")
        if retries is not None:
            if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
                raise ConfigurationError(f"max_retries must be an integer >= 0, got {retries!r}")
            attempts = kwargs.get("max_attempts")
            if attempts is not None and attempts != retries + 1:
                raise ConfigurationError(
                    f"max_retries={retries} contradicts max_attempts={attempts}: give one of them"
                )
            kwargs["max_attempts"] = retries + 1
        for label in ("temperature", "max_tokens"):
            v = kwargs.get(label)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v < 0):
                raise ConfigurationError(f"{label} must be None or a number >= 0, got {v!r}")
        super().__init__(**kwargs)

    def model_post_init(self, context: Any, /) -> None:
        """Build the routing core from the validated arguments."""
        super().model_post_init(context)
        self._build_core()

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """False: a router holds live learning state."""
        return False

    @property
    def _llm_type(self) -> str:
        return "bandit-router"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arms": list(self.arms),
            "policy": getattr(self.policy, "name", None),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """LangSmith's standard parameters; ``ls_model_name`` is the pinned arm or the name."""
        model = kwargs.get("model")
        params = LangSmithParams(
            ls_provider="bandit_router",
            ls_model_name=model if isinstance(model, str) else (self.name or "bandit_router"),
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if isinstance(temperature, int | float) and not isinstance(temperature, bool):
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
            params["ls_max_tokens"] = max_tokens
        if stop := stop or self.stop:
            params["ls_stop"] = stop
        return params

    def _get_invocation_params(
        self, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        kwargs.pop(_CALL_KEY, None)  # private: never in a trace's invocation params or options
        return super()._get_invocation_params(stop=stop, **kwargs)

    # --- public faces: note the call's config and run id, then LangChain's own code -----------

    def _begin(
        self, config: RunnableConfig | None, kwargs: dict[str, Any], *, sync: bool
    ) -> RunnableConfig:
        config = ensure_config(config)
        if _CALL_KEY in kwargs:  # astream falling back to ainvoke: already begun
            return config
        run_id = config.get("run_id") or _uuid7()
        config["run_id"] = run_id
        # Configure the callbacks once, here: LangChain's configure() adds environment tracers
        # as new objects, and the arms' runs must reach the same tracer as the router's run.
        manager_class = CallbackManager if sync else AsyncCallbackManager
        callbacks = manager_class.configure(config.get("callbacks"), None, self.verbose)
        config["callbacks"] = callbacks
        kwargs[_CALL_KEY] = _ChatCall(run_id=run_id, config=config, callbacks=callbacks)
        return config

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Route one call and return the chosen arm's message (see ``BaseChatModel.invoke``)."""
        config = self._begin(config, kwargs, sync=True)
        return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """Route one call and return the chosen arm's message (see ``BaseChatModel.ainvoke``)."""
        require_asyncio(self)
        config = self._begin(config, kwargs, sync=False)
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """Route one call and yield the chosen arm's chunks (see ``BaseChatModel.stream``)."""
        config = self._begin(config, kwargs, sync=True)
        # yield from: closing this generator closes LangChain's, which releases the call.
        yield from super().stream(input, config, stop=stop, **kwargs)

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """Route one call and yield the chosen arm's chunks (see ``BaseChatModel.astream``)."""
        require_asyncio(self)
        config = self._begin(config, kwargs, sync=False)
        # aclosing: a consumer that stops early releases the call's in-flight slot now.
        # (LangChain's astream is an async generator; it is typed as an iterator.)
        stream = cast(
            "AsyncGenerator[AIMessageChunk, None]",
            super().astream(input, config, stop=stop, **kwargs),
        )
        async with aclosing(stream) as chunks:
            async for chunk in chunks:
                yield chunk

    # --- BaseChatModel: the routing itself is BanditRouterRunnable's ---------------------------

    def _parent(
        self,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        call: _ChatCall | None,
        stop: list[str] | None,
        kwargs: dict[str, Any],
    ) -> _Parent:
        if run_manager is not None:
            return _Parent(
                run_manager.run_id,
                list(run_manager.inheritable_handlers),
                list(run_manager.inheritable_tags),
                dict(run_manager.inheritable_metadata),
            )
        if call is not None:
            # LangChain's astream() opened the run (with call.run_id) but does not hand us its
            # run manager: rebuild what its get_child() would give, from the same callbacks.
            cm = call.callbacks
            config = call.config
            return _Parent(
                call.run_id,
                list(cm.inheritable_handlers),
                [*cm.inheritable_tags, *(config.get("tags") or [])],
                {
                    **cm.inheritable_metadata,
                    **(config.get("metadata") or {}),
                    **self._get_ls_params_with_defaults(stop=stop, **kwargs),
                },
            )
        return _Parent(_uuid7(), [], [])  # called outside LangChain's faces: a detached call

    def _request(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> Request:
        """Set one call up for the routing core."""
        call: _ChatCall | None = kwargs.pop(_CALL_KEY, None)
        parent = self._parent(run_manager, call, stop, kwargs)
        config: RunnableConfig = call.config if call is not None else {}
        model = kwargs.pop("model", None)
        kwargs.pop("stream", None)  # LangChain's own switch, not the arm's
        tools = kwargs.pop("tools", None)
        tool_choice = kwargs.pop("tool_choice", None)
        tool_kwargs: dict[str, Any] = kwargs.pop(_TOOLS_KWARGS_KEY, None) or {}
        arm_kwargs = dict(kwargs)
        stop = stop if stop is not None else self.stop
        if stop:
            arm_kwargs["stop"] = stop
        if self.temperature is not None:
            arm_kwargs.setdefault("temperature", self.temperature)
        if self.max_tokens is not None:
            arm_kwargs.setdefault("max_tokens", self.max_tokens)

        choice = {} if tool_choice is None else {"tool_choice": tool_choice}
        hidden = _hidden_hooks()
        prepare: Callable[[str, Runnable[Any, Any]], Runnable[Any, Any]] | None = None
        if tools is not None or hidden:

            def prepare(name: str, arm: Runnable[Any, Any]) -> Runnable[Any, Any]:
                if tools is not None:
                    # Per call and per arm: each arm formats the tools its provider's way.
                    arm = arm_method(arm, "bind_tools", name, tools, **choice, **tool_kwargs)
                return _WithoutHooks(arm, hidden) if hidden else arm

        def child_config(arm: str, attempt: int) -> RunnableConfig:
            return patch_config(config, callbacks=parent.child_callbacks(arm, attempt))

        if model is not None and not isinstance(model, str):
            raise ConfigurationError(f"model must be an arm's name, got {model!r}")
        if model is None:
            pinned = (config.get("configurable") or {}).get(self.arm_key)
            how = f"configurable {self.arm_key}"
        else:
            pinned, how = model, "model"
        if pinned is not None and pinned not in self.arms:
            raise UnknownArmError(f"{how}={pinned!r} is not an arm; the arms are {list(self.arms)}")
        run_id = str(parent.run_id)
        live = self._live
        calls = ArmInvoker(
            live.arms,
            messages,
            child_config,
            arm_kwargs,
            prepare=prepare,
            score_extra={"run_id": run_id, "metadata": config.get("metadata") or {}},
            usage_streams=live.usage_streams,
        )
        return Request(
            decision_id=run_id,
            context=self._context(messages),
            calls=calls,
            observer=live.telemetry.start_route(live.name, run_id=run_id, input=messages),
            pinned=pinned,
        )

    def _context(self, input: Any) -> str:
        if self.context_key is None:
            return ""
        ctx = self.context_key(input)
        if not isinstance(ctx, str):
            raise ConfigurationError(f"context_key must return a str, got {ctx!r}")
        return ctx

    @property
    def arm_key(self) -> str:
        """The ``configurable`` key that pins an arm of this router: ``"<name>_arm"``."""
        return f"{self.name or DEFAULT_NAME}_arm"

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        """The router's configurable field (the pinned arm)."""
        return [
            ConfigurableFieldSpec(
                id=self.arm_key,
                annotation=str | None,
                name="Pinned arm",
                description=f"Route every call to this arm of router {self.name!r} "
                f"(one of {list(self.arms)}); no choice, no fallback.",
                default=None,
            ),
            *super().config_specs,
        ]

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        req = self._request(messages, stop, run_manager, kwargs)
        output = await self._core.ainvoke(req)
        return _result(output, req)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        req = self._request(messages, stop, run_manager, kwargs)
        output = self._core.invoke(req)
        return _result(output, req)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        req = self._request(messages, stop, run_manager, kwargs)
        first = True
        async with aclosing(cast(Any, self._core.astream(req))) as chunks:
            async for item in chunks:
                yield _chunk(item, req, first)
                first = False

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        req = self._request(messages, stop, run_manager, kwargs)
        chunks = self._core.stream(req)
        first = True
        try:
            for item in chunks:
                yield _chunk(item, req, first)
                first = False
        finally:
            cast(Any, chunks).close()

    # --- tools and structured output ----------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; on each call the chosen arm converts them with its own ``bind_tools``.

        Args:
            tools: Anything the arms' ``bind_tools`` accept (tools, functions, pydantic or
                TypedDict classes, provider tool dicts); kept as given.
            tool_choice: Passed to the arm's ``bind_tools`` (``"auto"``, ``"any"``, a tool
                name ...); ``None`` passes nothing.
            **kwargs: Passed to the arm's ``bind_tools`` too (``strict``,
                ``parallel_tool_calls`` ...).

        Returns:
            This router bound to the tools: it shares the router's learning.
        """
        bound: dict[str, Any] = {"tools": list(tools)}
        if tool_choice is not None:
            bound["tool_choice"] = tool_choice
        for key in ("ls_structured_output_format", "structured_output_format"):
            if key in kwargs:  # LangChain's tracing-only arguments stay LangChain's
                bound[key] = kwargs.pop(key)
        if kwargs:
            bound[_TOOLS_KWARGS_KEY] = kwargs
        return self.bind(**bound)

    def with_structured_output(
        self, schema: dict[str, Any] | type, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Route over each arm's own ``with_structured_output(schema, **kwargs)``.

        Args:
            schema: A pydantic class, TypedDict class or JSON schema.
            include_raw: Return ``{"raw", "parsed", "parsing_error"}`` (the arms' shape).
            **kwargs: Passed to every arm (``method="json_mode"``, ``strict=True`` ...).

        Returns:
            A :class:`BanditRouterRunnable` over the arms' structured runnables, sharing this
            router's learning. Its evaluator sees the parsed output (its ``usage`` argument
            is the raw message's); an arm whose output fails to parse counts as failed and
            the call falls back to the next-best arm.

        Raises:
            ConfigurationError: If an arm has no ``with_structured_output``.
        """
        defaults = self._arm_defaults()
        arms: dict[str, Runnable[Any, Any]] = {}
        for name, arm in self.arms.items():
            # Always with the raw message: its usage prices the call (cost-aware rewards).
            structured = arm_method(
                arm, "with_structured_output", name, schema, include_raw=True, **kwargs
            )
            arms[name] = structured.bind(**defaults) if defaults else structured
        return self.router._derive(arms, post=None if include_raw else _parsed)

    def _arm_defaults(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.stop:
            out["stop"] = self.stop
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        return out

    # --- feedback and statistics (the router's) -----------------------------------------------

    async def arecord_feedback(self, run_id: uuid.UUID | str, score: object) -> None:
        """Record a delayed reward for the call whose run id is ``run_id``.

        See :meth:`BanditRouterRunnable.arecord_feedback`.
        """
        await self.router.arecord_feedback(run_id, score)

    def record_feedback(self, run_id: uuid.UUID | str, score: object) -> None:
        """Sync face of :meth:`arecord_feedback`."""
        self.router.record_feedback(run_id, score)

    async def astatistics(self, context: str = "") -> dict[str, ArmStatistics]:
        """Return a frozen report per arm, read from the store."""
        return await self._core.bandit.statistics(context)

    def statistics(self, context: str = "") -> dict[str, ArmStatistics]:
        """Sync face of :meth:`astatistics`."""
        return self._core.bandit.statistics_sync(context)

    @property
    def evaluator_errors(self) -> dict[str, int]:
        """How many times the evaluator failed (or timed out) per arm, in this process."""
        scorer = self._core.scorer
        return {} if scorer is None else dict(scorer.errors)

    async def aclose(self) -> None:
        """Wait until every answer returned so far is scored (the router stays usable)."""
        if self._core.scorer is not None:
            await self._core.scorer.aclose()

    def close(self) -> None:
        """Sync face of :meth:`aclose` (call it from a thread without a running loop)."""
        if self._core.scorer is not None:
            self._core.scorer.close()

    async def __aenter__(self) -> ChatBanditRouter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> ChatBanditRouter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def router(self) -> BanditRouterRunnable:
        """A :class:`BanditRouterRunnable` over the same arms, sharing this router's learning."""
        if self._router is None:
            options = {f: getattr(self, f) for f in RouterOptions.model_fields}
            router = BanditRouterRunnable(**options)
            router._live = self._live
            self._router = router
        return self._router


def _parsed(output: Any) -> Any:
    """The parsed part of an ``include_raw=True`` output; a parsing error is the arm's."""
    if isinstance(output, Mapping) and "parsed" in output:
        error = output.get("parsing_error")
        if error is not None:
            raise error if isinstance(error, BaseException) else ValueError(str(error))
        return output["parsed"]
    return output


def _result(output: Any, req: Request) -> ChatResult:
    message = _own_id(_as_message(output))
    return ChatResult(generations=[ChatGeneration(message=_stamped(message, req))])


def _stamped(message: _M, req: Request) -> _M:
    decision = req.decision
    if decision is None:
        return message
    stamp = {"arm": decision.arm, "decision_id": decision.decision_id}
    return message.model_copy(
        update={"response_metadata": {**message.response_metadata, "bandit_router": stamp}}
    )


def _chunk(item: Any, req: Request, first: bool) -> ChatGenerationChunk:
    chunk = _own_id(_as_chunk(item))
    if first:
        # Said once (metadata of chunks is merged when they are added up).
        chunk = _stamped(chunk, req)
    return ChatGenerationChunk(message=chunk)
