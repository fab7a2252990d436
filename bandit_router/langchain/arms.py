"""How the LangChain faces call an arm: configs, client retries, usage.

* **Child runs.** Each attempt runs as a child of the router's run (tagged
  ``bandit_router:arm:<name>`` and ``retry:attempt:<n>``), so LangSmith and other tracers
  show which arm answered. When nobody listens (no callbacks, no tracing, no hooks) an arm
  that reports to no handler of its own gets the caller's config as it is: nothing to report,
  nothing to build.
* **Client retries.** A client that retries by itself behind the router's retries multiplies
  the requests an arm receives. For clients whose retries can be switched off per copy
  without touching the user's object (OpenAI's: ``with_options(max_retries=0)`` shares the
  connection pool), the router calls such a copy and does the retrying itself: it then also
  sees every rate limit at once (cooldown, fallback). Any other arm that declares
  ``max_retries > 0`` gets one router attempt per call, and its client's retries count as the
  rest. Either way a persistently failing arm receives at most ``max_attempts`` requests per
  routed call (when its own ``max_retries`` is below ``max_attempts``).
* **Usage.** Token usage is read where LangChain puts it: ``usage_metadata`` on the message,
  on the ``raw`` message of ``include_raw=True`` structured output, on the last chunk of a
  stream; streaming arms that support ``stream_usage`` are asked for it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, cast

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, BaseCallbackManager
from langchain_core.globals import get_debug
from langchain_core.language_models import BaseLanguageModel
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.base import RunnableBinding
from langchain_core.runnables.config import get_async_callback_manager_for_config, patch_config
from langchain_core.utils.env import env_var_is_set
from pydantic import BaseModel

try:  # private names of langchain-core: a faster answer to "does anybody listen?"
    from langchain_core.tracers.context import _configure_hooks, _tracing_v2_is_enabled

    _PRIVATE_LISTENER_CHECK = True
except ImportError:  # pragma: no cover (exercised by a test that hides them)
    _PRIVATE_LISTENER_CHECK = False

__all__ = [
    "ArmInvoker",
    "QuietRun",
    "client_attempts",
    "nobody_listens",
    "unobserved",
    "usage_of",
    "without_client_retries",
]


# --- does anybody listen? -----------------------------------------------------------------


def nobody_listens(config: RunnableConfig) -> bool:
    """Whether LangChain's callback configuration for ``config`` would have no handler.

    The same questions ``langchain_core.callbacks.manager._configure`` asks before it adds a
    handler, without building the manager: callbacks in the config, LangSmith tracing, the
    debug flag and the registered configure hooks (``collect_runs``, instrumentations). It
    needs two private names of langchain-core; without them (a version that moved them) the
    answer is always False and the router configures its run as LangChain does. Any doubt
    answers False. A test pins this answer to the real configuration's.
    """
    if not _PRIVATE_LISTENER_CHECK:
        return False
    callbacks = config.get("callbacks")
    if callbacks and (
        not isinstance(callbacks, BaseCallbackManager)
        or callbacks.handlers
        or callbacks.inheritable_handlers
    ):
        return False
    if _tracing_v2_is_enabled() or get_debug():
        return False
    for var, _inheritable, handler_class, env_var in _configure_hooks:
        if var.get() is not None or (
            env_var is not None and handler_class is not None and env_var_is_set(env_var)
        ):
            return False
    return True


def _bound_model(
    arm: Runnable[Any, Any],
) -> tuple[Runnable[Any, Any], list[RunnableBinding[Any, Any]]]:
    """The runnable behind plain bindings (``bind``, ``bind_tools``, ``with_config``)."""
    chain: list[RunnableBinding[Any, Any]] = []
    while (
        isinstance(arm, RunnableBinding)
        and type(arm).ainvoke is RunnableBinding.ainvoke
        and type(arm).astream is RunnableBinding.astream
    ):
        chain.append(arm)
        arm = arm.bound
    return arm, chain


def unobserved(arm: Runnable[Any, Any]) -> bool:
    """Whether nothing but the caller's callbacks can observe ``arm``'s run.

    A language model without callbacks of its own, bare or behind plain bindings that add
    none. A chain, a retry or fallback wrapper, a listener or a model with its own handlers
    may report to handlers the caller does not see.
    """
    model, chain = _bound_model(arm)
    if any(b.config.get("callbacks") or b.config_factories for b in chain):
        return False
    return (
        isinstance(model, BaseLanguageModel)
        and model.callbacks is None
        # A deprecated field some models still declare; read from the instance's fields.
        and model.__dict__.get("callback_manager") is None
    )


class QuietRun:
    """The child configs of a call nobody listens to.

    An unobserved arm (in ``quiet``, see :func:`unobserved`) gets the caller's config (less the
    router's run name); any other arm runs as the router's child, as it would with a listener.
    """

    __slots__ = ("_config", "_manager", "_quiet", "_run_id", "_shared")

    def __init__(self, quiet: frozenset[str], config: RunnableConfig, run_id: str) -> None:
        self._quiet = quiet
        self._config = config
        self._run_id = run_id
        self._manager: AsyncCallbackManagerForChainRun | None = None
        self._shared: RunnableConfig | None = None

    def __call__(self, arm: str, attempt: int) -> RunnableConfig:
        """The config of one attempt on ``arm``."""
        if arm in self._quiet:
            if self._shared is None:
                config = self._config
                self._shared = (
                    config
                    if "run_name" not in config
                    else cast(RunnableConfig, {k: v for k, v in config.items() if k != "run_name"})
                )
            return self._shared
        if self._manager is None:
            cm = get_async_callback_manager_for_config(self._config)
            self._manager = AsyncCallbackManagerForChainRun(
                run_id=uuid.UUID(self._run_id),
                handlers=[],
                inheritable_handlers=[],
                parent_run_id=cm.parent_run_id,
                tags=cm.tags,
                inheritable_tags=cm.inheritable_tags,
                metadata=cm.metadata,
                inheritable_metadata=cm.inheritable_metadata,
            )
        return child_config(self._config, self._manager, arm, attempt)


def child_config(config: RunnableConfig, manager: Any, arm: str, attempt: int) -> RunnableConfig:
    """``config`` for one attempt: a child run of ``manager``'s, tagged with arm and attempt."""
    child = manager.get_child()
    child.add_tags([f"bandit_router:arm:{arm}", f"retry:attempt:{attempt}"], inherit=False)
    return patch_config(config, callbacks=child)


# --- client retries -----------------------------------------------------------------------


def _own_retries(model: object) -> int:
    value = getattr(model, "max_retries", None) if isinstance(model, BaseModel) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(value, 0)


def _openai_like(model: object) -> bool:
    """A model whose clients are OpenAI's (``root_client`` with ``with_options``)."""
    if not isinstance(model, BaseModel):
        return False
    fields = type(model).model_fields
    if not all(f in fields for f in ("root_client", "root_async_client", "client", "async_client")):
        return False
    root = getattr(model, "root_client", None)
    aroot = getattr(model, "root_async_client", None)
    return any(hasattr(c, "with_options") for c in (root, aroot))


def _client_copy(client: Any, timeout: float | None) -> Any:
    options: dict[str, Any] = {"max_retries": 0}
    current = getattr(client, "timeout", None)
    if timeout is not None and (
        current is None or (isinstance(current, int | float) and current > timeout)
    ):
        # The router's limit as the request timeout, so that a sync call hung on a socket
        # ends too (the sync faces cannot cancel it); a shorter timeout of the user's stays.
        options["timeout"] = timeout
    return client.with_options(**options)


def without_client_retries(
    arm: Runnable[Any, Any], timeout: float | None
) -> Runnable[Any, Any] | None:
    """A copy of ``arm`` whose client does not retry, or ``None`` if the router cannot make one.

    The copy shares the user's connection pools; the user's object is not changed.
    """
    model, chain = _bound_model(arm)
    if not _openai_like(model):
        return None
    assert isinstance(model, BaseModel)
    update: dict[str, Any] = {"max_retries": 0}
    root = getattr(model, "root_client", None)
    if root is not None and hasattr(root, "with_options"):
        update["root_client"] = root = _client_copy(root, timeout)
        update["client"] = root.chat.completions
    aroot = getattr(model, "root_async_client", None)
    if aroot is not None and hasattr(aroot, "with_options"):
        update["root_async_client"] = aroot = _client_copy(aroot, timeout)
        update["async_client"] = aroot.chat.completions
    twin: Runnable[Any, Any] = model.model_copy(update=update)
    for binding in reversed(chain):
        twin = binding.model_copy(update={"bound": twin})
    return twin


def client_attempts(arms: Mapping[str, Runnable[Any, Any]], max_attempts: int) -> dict[str, int]:
    """Router attempts per arm, where fewer than ``max_attempts``.

    One for arms whose client retries by itself (and cannot be made not to): the client's
    retries are the rest of the arm's attempts.
    """
    out: dict[str, int] = {}
    for name, arm in arms.items():
        model, _ = _bound_model(arm)
        if _own_retries(model) > 0 and not _openai_like(model):
            out[name] = 1
    return out


def _default_retries(model: object) -> bool:
    """OpenAI's clients retry twice when ``max_retries`` is left at ``None``."""
    return _openai_like(model) and getattr(model, "max_retries", None) is None


def callable_arms(
    arms: Mapping[str, Runnable[Any, Any]], timeout: float | None
) -> dict[str, Runnable[Any, Any]]:
    """The runnables the router calls: each arm, or its copy without client retries."""
    out: dict[str, Runnable[Any, Any]] = {}
    for name, arm in arms.items():
        model, _ = _bound_model(arm)
        twin = (
            without_client_retries(arm, timeout)
            if _own_retries(model) > 0 or _default_retries(model)
            else None
        )
        out[name] = arm if twin is None else twin
    return out


_SKIP: Any = object()
_STRUCTURED_KEYS = frozenset({"raw", "parsed", "parsing_error"})


def _add(acc: Any, chunk: Any) -> Any:
    try:
        return acc + chunk
    except TypeError:
        return chunk


# --- usage --------------------------------------------------------------------------------


def usage_of(output: object) -> dict[str, Any] | None:
    """The token usage of an arm's output, wherever LangChain put it (``None`` if nowhere)."""
    usage = getattr(output, "usage_metadata", None)
    if isinstance(usage, Mapping):
        return dict(usage)
    if isinstance(output, Mapping) and "raw" in output:  # include_raw=True structured output
        return usage_of(output["raw"])
    return None


def streams_usage(arm: Runnable[Any, Any]) -> bool:
    """Whether the arm's model accepts ``stream_usage=True`` per call (OpenAI's do)."""
    model, _ = _bound_model(arm)
    return isinstance(model, BaseModel) and "stream_usage" in type(model).model_fields


# --- calling the arms of one routed call --------------------------------------------------


class ArmInvoker:
    """How one routed call reaches its arms (the core's :class:`ArmCalls`).

    Args:
        arms: The runnables to call, by arm name.
        input: The call's input.
        child_config: ``(arm, attempt) -> config`` for one attempt.
        kwargs: Keyword arguments for every arm.
        prepare: ``(arm name, runnable) -> runnable`` to call instead (tools bound per call).
        post: Applied to an arm's output inside the attempt (its error is the arm's).
        score_extra: The evaluator's other arguments (``inputs``, ``run_id``, ``metadata``).
        usage_streams: Arms that are asked for usage when streaming.
    """

    __slots__ = (
        "_arms",
        "_child_config",
        "_input",
        "_kwargs",
        "_post",
        "_prepare",
        "_raw",
        "_score_extra",
        "_usage_streams",
        "raw_usage",
    )

    def __init__(
        self,
        arms: Mapping[str, Runnable[Any, Any]],
        input: Any,
        child_config: Callable[[str, int], RunnableConfig],
        kwargs: Mapping[str, Any],
        *,
        prepare: Callable[[str, Runnable[Any, Any]], Runnable[Any, Any]] | None = None,
        post: Callable[[Any], Any] | None = None,
        score_extra: Mapping[str, Any] | None = None,
        usage_streams: frozenset[str] = frozenset(),
    ) -> None:
        self._arms = arms
        self._input = input
        self._child_config = child_config
        self._kwargs = kwargs
        self._prepare = prepare
        self._post = post
        self._score_extra = score_extra or {}
        self._usage_streams = usage_streams
        #: Usage of the last raw output, when ``post`` hides it (structured output).
        self.raw_usage: dict[str, Any] | None = None
        self._raw: Any = None

    def _runnable(self, arm: str) -> Runnable[Any, Any]:
        runnable = self._arms[arm]
        return runnable if self._prepare is None else self._prepare(arm, runnable)

    def _done(self, out: Any) -> Any:
        if self._post is None:
            return out
        self.raw_usage = usage_of(out)
        return self._post(out)

    def invoke(self, arm: str, attempt: int) -> Any:
        """Call the arm's sync ``invoke``."""
        out = self._runnable(arm).invoke(
            self._input, self._child_config(arm, attempt), **self._kwargs
        )
        return self._done(out)

    async def ainvoke(self, arm: str, attempt: int) -> Any:
        """Call the arm's ``ainvoke``."""
        out = await self._runnable(arm).ainvoke(
            self._input, self._child_config(arm, attempt), **self._kwargs
        )
        return self._done(out)

    def _stream_kwargs(self, arm: str) -> Mapping[str, Any]:
        if arm in self._usage_streams and "stream_usage" not in self._kwargs:
            return {**self._kwargs, "stream_usage": True}
        return self._kwargs

    def stream(self, arm: str, attempt: int) -> Iterator[Any]:
        """Open the arm's sync stream."""
        chunks = self._runnable(arm).stream(
            self._input, self._child_config(arm, attempt), **self._stream_kwargs(arm)
        )
        return chunks if self._post is None else self._posted(chunks)

    def astream(self, arm: str, attempt: int) -> AsyncIterator[Any]:
        """Open the arm's async stream."""
        chunks = self._runnable(arm).astream(
            self._input, self._child_config(arm, attempt), **self._stream_kwargs(arm)
        )
        return chunks if self._post is None else self._aposted(chunks)

    def _posted(self, chunks: Iterator[Any]) -> Iterator[Any]:
        """A structured stream's parsed results; the raw message's chunks only count usage."""
        try:
            for chunk in chunks:
                item = self._post_chunk(chunk)
                if item is not _SKIP:
                    yield item
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    async def _aposted(self, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            async for chunk in chunks:
                item = self._post_chunk(chunk)
                if item is not _SKIP:
                    yield item
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    def _post_chunk(self, chunk: Any) -> Any:
        assert self._post is not None
        if not isinstance(chunk, Mapping) or not set(chunk) <= _STRUCTURED_KEYS:
            return self._post(chunk)
        # include_raw=True streams the raw message's chunks, then the parsed result, then the
        # parsing error (None) as separate pieces.
        if "raw" in chunk:
            raw = chunk["raw"]
            self._raw = raw if self._raw is None else _add(self._raw, raw)
            self.raw_usage = usage_of(self._raw)
        error = chunk.get("parsing_error")
        if error is not None:
            raise error if isinstance(error, BaseException) else ValueError(str(error))
        return chunk.get("parsed", _SKIP)

    def score_arguments(self, output: Any, arm: str, latency_s: float) -> Mapping[str, Any]:
        """What the evaluator may ask for about this answer."""
        usage = usage_of(output)
        if usage is None:
            usage = self.raw_usage
        return {
            "inputs": self._input,
            "outputs": output,
            "arm": arm,
            "latency_s": latency_s,
            "usage": usage,
            **self._score_extra,
        }
