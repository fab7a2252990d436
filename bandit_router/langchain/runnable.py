"""BanditRouterRunnable: the learning router as a LangChain Runnable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from functools import partial
from types import TracebackType
from typing import Any, cast

import anyio
from langchain_core.callbacks import (
    AsyncCallbackManagerForChainRun,
    CallbackManagerForChainRun,
)
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)
from langchain_core.runnables.utils import ConfigurableFieldSpec

from bandit_router._bandit import Decision
from bandit_router._errors import ConfigurationError, UnknownArmError, UnsupportedEventLoopError
from bandit_router._stats import ArmStatistics
from bandit_router.core._loops import asyncio_loop
from bandit_router.core.routing import Request
from bandit_router.langchain.arms import ArmInvoker, QuietRun, child_config, nobody_listens
from bandit_router.langchain.options import DEFAULT_NAME, Live, RouterOptions
from bandit_router.rewards import coerce_score

try:  # langchain-core's UUIDv7 source, with a native str(); the stdlib's uuid4 otherwise
    from uuid_utils import uuid7 as _uuid7
except ImportError:  # pragma: no cover
    _uuid7 = uuid.uuid4  # type: ignore[assignment]

__all__ = ["BanditRouterRunnable"]


class BanditRouterRunnable(RouterOptions, RunnableSerializable[Any, Any]):
    """Routes each call to one of several Runnables, chosen by a bandit that learns.

    Every call: pick an arm (policy index over the store's statistics), call it as a child run
    with retries and a time limit per attempt, fall back to the next-best arm when it fails,
    return the answer, then score it with ``reward`` in the background (or wait for
    :meth:`arecord_feedback`) and learn. The arguments are :class:`RouterOptions`'.

    The sync faces (``invoke``, ``stream``, ``batch``) call the arms' sync methods; the async
    faces their async ones: the same router serves both, in any order.

    An arm can be pinned per call with ``config={"configurable": {router.arm_key: "<arm>"}}``
    (the key is ``"<name>_arm"``, listed in :attr:`config_specs`).

    Use ``await router.aclose()`` (or ``async with router``) before reading statistics that
    must include the inline rewards of calls just made: rewards are computed after the answer.

    Raises:
        ConfigurationError: On any invalid or unknown argument; the message names it.
    """

    def model_post_init(self, context: Any, /) -> None:
        """Build the routing core from the validated arguments."""
        self._build_core()

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """False: a router holds live learning state."""
        return False

    # --- schemas and configuration -----------------------------------------------------------

    @property
    def _first_arm(self) -> Runnable[Any, Any]:
        return next(iter(self.arms.values()))

    @property
    def InputType(self) -> Any:  # noqa: N802 (LangChain's name)
        """The first arm's input type."""
        return self._first_arm.InputType

    @property
    def OutputType(self) -> Any:  # noqa: N802 (LangChain's name)
        """The first arm's output type."""
        return self._first_arm.OutputType

    def get_input_schema(self, config: RunnableConfig | None = None) -> Any:
        """The first arm's input schema (arms are expected to share one)."""
        return self._first_arm.get_input_schema(config)

    def get_output_schema(self, config: RunnableConfig | None = None) -> Any:
        """The first arm's output schema."""
        return self._first_arm.get_output_schema(config)

    @property
    def arm_key(self) -> str:
        """The ``configurable`` key that pins an arm of this router: ``"<name>_arm"``."""
        return f"{self.name or DEFAULT_NAME}_arm"

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        """The router's configurable field (the pinned arm), then its arms' own."""
        own = ConfigurableFieldSpec(
            id=self.arm_key,
            annotation=str | None,
            name="Pinned arm",
            description=f"Route every call to this arm of router {self.name!r} "
            f"(one of {list(self.arms)}); no choice, no fallback.",
            default=None,
        )
        specs = [own]
        seen = {own.id}
        for arm in self.arms.values():
            for spec in arm.config_specs:
                if spec.id not in seen:
                    seen.add(spec.id)
                    specs.append(spec)
        return specs

    # --- one call ------------------------------------------------------------------------

    def _context(self, input: Any) -> str:
        if self.context_key is None:
            return ""
        ctx = self.context_key(input)
        if not isinstance(ctx, str):
            raise ConfigurationError(f"context_key must return a str, got {ctx!r}")
        return ctx

    def _pinned(self, config: RunnableConfig) -> str | None:
        pinned = (config.get("configurable") or {}).get(self.arm_key)
        if pinned is not None and pinned not in self.arms:
            raise UnknownArmError(
                f"configurable {self.arm_key}={pinned!r} is not an arm; the arms are "
                f"{list(self.arms)}"
            )
        return cast("str | None", pinned)

    def _request(
        self,
        live: Live,
        input: Any,
        config: RunnableConfig,
        run_id: str,
        child: Any,
        kwargs: Mapping[str, Any],
    ) -> Request:
        calls = ArmInvoker(
            live.arms,
            input,
            child,
            kwargs,
            post=live.post,
            score_extra={"run_id": run_id, "metadata": config.get("metadata") or {}},
            usage_streams=live.usage_streams,
        )
        observer = live.telemetry.start_route(live.name, run_id=run_id, input=input)
        return Request(
            decision_id=run_id,
            context=self._context(input),
            calls=calls,
            observer=observer,
            pinned=self._pinned(config),
        )

    async def _astart(
        self, input: Any, config: RunnableConfig | None, kwargs: Mapping[str, Any]
    ) -> tuple[Live, Request, AsyncCallbackManagerForChainRun | None]:
        require_asyncio(self)
        live: Live = self.__pydantic_private__["_live"]  # type: ignore[index]
        config = ensure_config(config)
        given = config.pop("run_id", None)
        if nobody_listens(config):
            run_id = str(given or _uuid7())
            quiet = QuietRun(live.quiet, config, run_id)
            return live, self._request(live, input, config, run_id, quiet, kwargs), None
        cm = get_async_callback_manager_for_config(config)
        rm = await cm.on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=given
        )
        run_id = str(rm.run_id)
        try:
            child = partial(child_config, config, rm)
            return live, self._request(live, input, config, run_id, child, kwargs), rm
        except BaseException as exc:
            await _shielded_error(rm, exc)
            raise

    def _start(
        self, input: Any, config: RunnableConfig | None, kwargs: Mapping[str, Any]
    ) -> tuple[Live, Request, CallbackManagerForChainRun | None]:
        live: Live = self.__pydantic_private__["_live"]  # type: ignore[index]
        config = ensure_config(config)
        given = config.pop("run_id", None)
        if nobody_listens(config):
            run_id = str(given or _uuid7())
            quiet = QuietRun(live.quiet, config, run_id)
            return live, self._request(live, input, config, run_id, quiet, kwargs), None
        cm = get_callback_manager_for_config(config)
        rm = cm.on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=given
        )
        run_id = str(rm.run_id)
        try:
            child = partial(child_config, config, rm)
            return live, self._request(live, input, config, run_id, child, kwargs), rm
        except BaseException as exc:
            rm.on_chain_error(exc)
            raise

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Route one call and return the chosen arm's output."""
        live, req, rm = await self._astart(input, config, kwargs)
        try:
            out = _stamp(await live.core.ainvoke(req), req.decision)
        except BaseException as exc:
            if rm is not None:
                await _shielded_error(rm, exc)
            raise
        if rm is not None:
            await rm.on_chain_end(out)
        return out

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Route one call from sync code (the arms' sync ``invoke``)."""
        live, req, rm = self._start(input, config, kwargs)
        try:
            out = _stamp(live.core.invoke(req), req.decision)
        except BaseException as exc:
            if rm is not None:
                rm.on_chain_error(exc)
            raise
        if rm is not None:
            rm.on_chain_end(out)
        return out

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> AsyncIterator[Any]:
        """Route one call and yield the chosen arm's chunks unchanged."""
        live, req, rm = await self._astart(input, config, kwargs)
        try:
            # aclosing: a consumer that stops early must release the call's slot now.
            async with aclosing(cast(Any, live.core.astream(req))) as chunks:
                async for chunk in chunks:
                    yield chunk
        except BaseException as exc:
            if rm is not None:
                await _shielded_error(rm, exc)
            raise
        if rm is not None:
            await rm.on_chain_end(req.output)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> Iterator[Any]:
        """Route one call from sync code and yield the chosen arm's chunks unchanged."""
        live, req, rm = self._start(input, config, kwargs)
        chunks = live.core.stream(req)
        try:
            yield from chunks
        except BaseException as exc:
            if rm is not None:
                rm.on_chain_error(exc)
            raise
        finally:
            cast(Any, chunks).close()
        if rm is not None:
            rm.on_chain_end(req.output)

    # --- feedback, statistics, closing ---------------------------------------------------

    async def arecord_feedback(self, run_id: uuid.UUID | str, score: object) -> None:
        """Record a delayed reward for the call whose run id is ``run_id``.

        Args:
            run_id: The router call's run id (given in its config, or read from the output's
                ``response_metadata["bandit_router"]["decision_id"]``).
            score: A score in [0, 1]: float, bool, ``{"score": ...}`` or an object with
                ``.score``.

        Raises:
            InvalidRewardError: If the score is invalid; nothing changes.
            UnknownDecisionError: If the run id is unknown, already scored or expired.
        """
        decision_id = str(run_id)
        with self._telemetry.feedback(decision_id, self.name or DEFAULT_NAME) as span:
            value = coerce_score(score)
            done = await self._core.bandit.reward(decision_id, value)
            span.settled(value, arm=done.arm, context=done.context)

    def record_feedback(self, run_id: uuid.UUID | str, score: object) -> None:
        """Sync face of :meth:`arecord_feedback`."""
        decision_id = str(run_id)
        with self._telemetry.feedback(decision_id, self.name or DEFAULT_NAME) as span:
            value = coerce_score(score)
            done = self._core.bandit.reward_sync(decision_id, value)
            span.settled(value, arm=done.arm, context=done.context)

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

    async def __aenter__(self) -> BanditRouterRunnable:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> BanditRouterRunnable:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- derived routers that share the learning -----------------------------------------

    def _derive(
        self, arms: dict[str, Runnable[Any, Any]], post: Callable[[Any], Any] | None = None
    ) -> BanditRouterRunnable:
        clone = self.model_copy(update={"arms": arms})
        # The same learning, evaluator, cooldowns and telemetry: shared, not copied.
        live = self._live
        clone._live = Live.build(live.core, live.telemetry, live.name, arms, self.timeout, post)
        return clone

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> BanditRouterRunnable:
        """Return a router over each arm's ``bind_tools(tools, **kwargs)``, sharing learning."""
        return self._derive(
            {n: arm_method(a, "bind_tools", n, tools, **kwargs) for n, a in self.arms.items()}
        )

    def with_structured_output(self, schema: Any, **kwargs: Any) -> BanditRouterRunnable:
        """Return a router over each arm's ``with_structured_output``, sharing learning."""
        return self._derive(
            {
                n: arm_method(a, "with_structured_output", n, schema, **kwargs)
                for n, a in self.arms.items()
            }
        )


def require_asyncio(router: object) -> None:
    """Refuse an async call outside asyncio before anything is routed or counted."""
    if asyncio_loop() is None:
        raise UnsupportedEventLoopError(
            f"{type(router).__name__}'s async faces need asyncio: LangChain's async runnables "
            "run on asyncio only. Under trio, call the sync face in a worker thread "
            "(await trio.to_thread.run_sync(router.invoke, x))."
        )


def arm_method(
    arm: Runnable[Any, Any], method: str, name: str, /, *args: Any, **kwargs: Any
) -> Runnable[Any, Any]:
    """``arm.<method>(*args, **kwargs)``, or a ConfigurationError naming the arm."""
    # Positional-only: the arm's own method may take ``method=`` or ``name=`` keywords.
    fn = getattr(arm, method, None)
    if fn is None:
        raise ConfigurationError(f"arm {name!r} ({type(arm).__name__}) has no {method}()")
    result: Runnable[Any, Any] = fn(*args, **kwargs)
    return result


def _stamp(output: Any, decision: Decision | None) -> Any:
    """Say which arm answered under which decision, in the message's ``response_metadata``."""
    if decision is None or not isinstance(output, BaseMessage):
        return output
    base = output.response_metadata
    # Not a mapping only in a message built without validation; the answer still goes out.
    meta = dict(base) if isinstance(base, Mapping) else {}
    meta["bandit_router"] = {"arm": decision.arm, "decision_id": decision.decision_id}
    return output.model_copy(update={"response_metadata": meta})


async def _shielded_error(run_manager: AsyncCallbackManagerForChainRun, exc: BaseException) -> None:
    with anyio.CancelScope(shield=True):
        await run_manager.on_chain_error(exc)
