"""BanditRouterRunnable: the learning router as a LangChain Runnable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, cast

import anyio
from langchain_core.callbacks import AsyncCallbackManagerForChainRun, BaseCallbackManager
from langchain_core.globals import get_debug
from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.base import RunnableBinding, coerce_to_runnable
from langchain_core.runnables.config import (
    ensure_config,
    get_async_callback_manager_for_config,
    patch_config,
)
from langchain_core.tracers.context import _configure_hooks, _tracing_v2_is_enabled
from langchain_core.utils.env import env_var_is_set
from langchain_core.utils.uuid import uuid7
from pydantic import ConfigDict, Field, PrivateAttr, field_validator
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from bandit_router._bandit import Bandit, Decision
from bandit_router._deadline import Deadlines
from bandit_router._engine import DEFAULT_MAX_PENDING, DEFAULT_PENDING_TTL
from bandit_router._errors import (
    AllArmsFailedError,
    BanditRouterError,
    ConfigurationError,
    UnknownArmError,
    UnknownDecisionError,
)
from bandit_router._stats import ArmStatistics, Prior
from bandit_router._sync import iterate_sync, run_sync
from bandit_router.policies import Policy
from bandit_router.rewards import Evaluator, coerce_score
from bandit_router.telemetry import AttemptSpan, RouteSpan, Telemetry, evaluator_name

try:
    # langchain-core's own UUIDv7 source (it depends on uuid-utils): its UUID's str() is native,
    # several microseconds cheaper per call than langchain_core.utils.uuid.uuid7's stdlib UUID.
    from uuid_utils import uuid7 as _native_uuid7

    _uuid7: Callable[[], object] = _native_uuid7
except ImportError:  # pragma: no cover (a langchain-core that no longer depends on it)
    _uuid7 = uuid7

__all__ = ["BanditRouterRunnable", "is_transient"]

logger = logging.getLogger("bandit_router")

#: The ``bandit_router.degraded`` reason on the span of a call routed while its store is degraded.
DEGRADED_STORE = "store unavailable: routed on the last known statistics, updates buffered"

#: HTTP statuses worth retrying: timeouts, conflicts, rate limits and server errors.
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
_TRANSIENT_NAMES = (
    "ratelimit",
    "timeout",
    "connection",
    "unavailable",
    "overloaded",
    "internalserver",
)


def is_transient(exc: BaseException) -> bool:
    """Return whether ``exc`` looks transient (worth retrying on the same arm).

    Timeouts, connection errors, and provider errors whose class name or HTTP status says
    rate limit, overload or server error (OpenAI's ``RateLimitError``, Anthropic's
    ``OverloadedError``, status 429/5xx ...) are transient. Everything else (bad requests,
    authentication, validation errors) is not: the router falls back to another arm at once.
    """
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    name = type(exc).__name__.lower()
    if any(part in name for part in _TRANSIENT_NAMES):
        return True
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return isinstance(status, int) and status in _TRANSIENT_STATUS


def _usage(output: object) -> dict[str, Any] | None:
    usage = getattr(output, "usage_metadata", None)
    return dict(usage) if isinstance(usage, Mapping) else None


class BanditRouterRunnable(RunnableSerializable[Any, Any]):
    """Routes each call to one of several Runnables, chosen by a bandit that learns.

    Every call: pick an arm (policy index over the store's statistics), call it as a child run
    with retries and a timeout per attempt, fall back to the next-best arm when it fails, score
    the answer with ``reward`` (or wait for :meth:`arecord_feedback`), learn.

    Args:
        arms: ``{name: runnable}``: chat models, chains, anything; the names are the arm ids.
        policy: The selection rule; default ``KLUCB()``.
        priors: Optional ``{arm: Prior}`` pseudo-observations.
        decay: Discount per observation of any arm, in (0, 1]; ``None`` is stationary.
        reward: Sync or async evaluator returning a score in [0, 1] (see
            :mod:`bandit_router.rewards`); ``None`` waits for delayed feedback.
        store: Where the learning lives; default a new ``InMemoryStore``.
        name: The router's name: its run name and its namespace in the store.
        context_key: ``callable(input) -> str``: separate statistics per context.
        context_prior_weight: Seed each context from the global statistics as a prior worth
            at most this many observations (``None``: contexts start from zero).
        costs: ``{arm: cost}``: each arm's *known* cost per call, in the reward's units,
            subtracted from its policy index: cost is known, quality is learned. Give a
            quality-only ``reward`` then; for the trade-off ``quality - lam * usd / max_usd``
            the cost is ``lam * usd_per_call / max_usd``. Arms not listed cost 0.
        max_attempts: Attempts per arm (tenacity), >= 1.
        timeout: Seconds per attempt (``None``: no limit).
        retry_if: Which exceptions are retried on the same arm: a predicate or a tuple of
            exception types (default :func:`is_transient`).
        retry_initial_wait: First back-off in seconds (exponential with jitter).
        retry_max_wait: Longest back-off in seconds.
        fallback: Fall back to the next-best arm when an arm's attempts are exhausted.
        failure_reward: What a failed attempt teaches about its arm (``None``: nothing).
        expired_reward: What a decision whose reward never arrives counts as.
        pending_ttl: Seconds a decision waits for its reward.
        max_pending: Most decisions waiting at once.
        seed: Seed of the router's random generator.
        tracer_provider: OpenTelemetry tracer provider for the router's spans (``None``: the
            global one; without an SDK configured, spans cost next to nothing).
        meter_provider: OpenTelemetry meter provider for its metrics (``None``: the global one).
        capture_content: Put the (truncated) input and output text and exception messages in
            spans. Off by default: they may contain personal data.
        telemetry: ``False`` turns spans and metrics off entirely.

    Raises:
        ConfigurationError: On any invalid argument; the message names it.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    arms: Mapping[str, Runnable[Any, Any]]
    policy: Any = None
    priors: dict[str, Prior] | None = None
    decay: float | None = None
    reward: Callable[..., Any] | None = None
    store: Any = None
    name: str | None = "bandit_router"
    context_key: Callable[[Any], str] | None = None
    context_prior_weight: float | None = None
    costs: dict[str, float] | None = None
    max_attempts: int = 3
    timeout: float | None = 30.0
    retry_if: Callable[[BaseException], bool] | tuple[type[BaseException], ...] = Field(
        default=is_transient
    )
    retry_initial_wait: float = 0.5
    retry_max_wait: float = 8.0
    fallback: bool = True
    failure_reward: float | None = 0.0
    expired_reward: float | None = None
    pending_ttl: float = DEFAULT_PENDING_TTL
    max_pending: int = DEFAULT_MAX_PENDING
    seed: int | None = None
    tracer_provider: Any = None
    meter_provider: Any = None
    capture_content: bool = False
    telemetry: bool = True

    # Everything live sits in one plain object: pydantic serves each private attribute through
    # a slow ``__getattr__``, and a call would otherwise pay for that a dozen times.
    _core: _Core = PrivateAttr()

    ARM_CONFIG_KEY: ClassVar[str] = "bandit_arm"

    @field_validator("arms", mode="before")
    @classmethod
    def _coerce_arms(cls, value: object) -> dict[str, Runnable[Any, Any]]:
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"arms must be a mapping of name -> Runnable, got {value!r}")
        out: dict[str, Runnable[Any, Any]] = {}
        for k, v in value.items():
            try:
                out[k] = coerce_to_runnable(v)
            except TypeError as exc:
                raise ConfigurationError(f"arm {k!r} is not a Runnable or callable: {v!r}") from exc
        return out

    def model_post_init(self, context: Any, /) -> None:
        """Validate the configuration and build the bandit."""
        policy: Policy | None = self.policy
        for label, value in (("max_attempts", self.max_attempts),):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{label} must be an integer >= 1, got {value!r}")
        if self.timeout is not None and not (
            isinstance(self.timeout, int | float) and 0 < self.timeout < float("inf")
        ):
            raise ConfigurationError(
                f"timeout must be None or a number of seconds > 0, got {self.timeout!r}"
            )
        for label, w in (
            ("retry_initial_wait", self.retry_initial_wait),
            ("retry_max_wait", self.retry_max_wait),
        ):
            if not (isinstance(w, int | float) and 0 <= w < float("inf")):
                raise ConfigurationError(f"{label} must be a number of seconds >= 0, got {w!r}")
        retry_if = self.retry_if
        if isinstance(retry_if, tuple):
            if not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_if):
                raise ConfigurationError(
                    f"retry_if must be a predicate or a tuple of exception types, got {retry_if!r}"
                )
            predicate: Callable[[BaseException], bool] = _instance_of(retry_if)
        elif callable(retry_if):
            predicate = retry_if
        else:
            raise ConfigurationError(f"retry_if must be a callable, got {retry_if!r}")
        if self.context_key is not None and not callable(self.context_key):
            raise ConfigurationError(f"context_key must be a callable, got {self.context_key!r}")
        bandit = Bandit(
            list(self.arms),
            name=self.name or "bandit_router",
            policy=policy,
            priors=self.priors,
            decay=self.decay,
            store=self.store,
            failure_reward=self.failure_reward,
            expired_reward=self.expired_reward,
            pending_ttl=self.pending_ttl,
            max_pending=self.max_pending,
            seed=self.seed,
            context_prior_weight=self.context_prior_weight,
            costs=self.costs,
        )
        reward = self.reward
        evaluator = (
            None
            if reward is None
            else reward
            if isinstance(reward, Evaluator)
            else Evaluator(reward)
        )
        self._core = _Core(
            bandit=bandit,
            telemetry=Telemetry(
                tracer_provider=self.tracer_provider,
                meter_provider=self.meter_provider,
                capture_content=self.capture_content,
                enabled=self.telemetry,
                arms=self.arms,
            ),
            evaluator=evaluator,
            evaluator_name="reward" if evaluator is None else evaluator_name(evaluator.fn),
            evaluator_errors={},
            retry_predicate=predicate,
        )

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """False: a router holds live learning state."""
        return False

    # --- schemas ----------------------------------------------------------------------------

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

    # --- the one implementation -------------------------------------------------------------

    def _context(self, input: Any) -> str:
        if self.context_key is None:
            return ""
        ctx = self.context_key(input)
        if not isinstance(ctx, str):
            raise ConfigurationError(f"context_key must return a str, got {ctx!r}")
        return ctx

    def _child_config(
        self, config: RunnableConfig, run_manager: AsyncCallbackManagerForChainRun, arm: str, n: int
    ) -> RunnableConfig:
        child = run_manager.get_child()
        child.add_tags([f"bandit_router:arm:{arm}", f"retry:attempt:{n}"], inherit=False)
        return patch_config(config, callbacks=child)

    async def _attempts(
        self, arm: str, input: Any, r: _Routing
    ) -> tuple[Any, AsyncIterator[Any] | None, AttemptSpan]:
        """Call one arm with retries: its output, or a stream's first chunk and the rest.

        Raises the arm's last error once its attempts are exhausted (or on an error not worth
        retrying).
        """
        call = r.call
        core = r.core
        stream = r.stream
        kwargs = r.kwargs
        route = r.route
        runnable = self.arms[arm] if call.prepare is None else call.prepare(arm, self.arms[arm])
        timeout = self.timeout
        deadlines = core.deadlines
        loop = asyncio.get_running_loop()
        if deadlines is None or deadlines.loop is not loop or deadlines.limit != timeout:
            deadlines = core.deadlines = Deadlines(loop, timeout)

        async def attempt(n: int) -> tuple[Any, AsyncIterator[Any] | None, AttemptSpan]:
            """One attempt: the output (a stream's first chunk and the rest of the stream)."""
            child = call.child_config(arm, n)
            span = route.attempt(arm, n)
            it: AsyncIterator[Any] | None = None
            try:
                # activate(): the attempt's span is current around ONE await, never a yield
                deadline = deadlines.start()
                if not stream:
                    with span.activate(), deadline:
                        out = await runnable.ainvoke(input, child, **kwargs)
                    span.ok(out)
                    return out, None, span
                it = runnable.astream(input, child, **kwargs).__aiter__()
                try:
                    with span.activate(), deadline:
                        out = await it.__anext__()
                except StopAsyncIteration:
                    out = _EMPTY
                except BaseException:
                    await _aclose(it)
                    raise
                return out, it, span
            except TimeoutError as exc:
                if not deadline.expired():
                    span.failed(exc)
                    raise  # the arm's own timeout
                # Ours: say which arm and which limit (asyncio's TimeoutError says nothing).
                ours = TimeoutError(
                    f"arm {arm!r} gave no answer within timeout={timeout} s (attempt {n})"
                )
                span.failed(ours)
                raise ours from exc
            except BaseException as exc:
                span.failed(exc)
                raise

        try:
            # The first attempt runs without tenacity: the common case (it succeeds) should not
            # pay for building and driving a retry loop.
            return await attempt(1)
        except Exception as first:
            predicate = core.retry_predicate
            if self.max_attempts == 1 or not predicate(first):
                raise
            # Built per call, never shared: tenacity keeps its state per instance and thread,
            # so concurrent tasks sharing one would corrupt each other's attempt counts.
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.max_attempts),
                retry=retry_if_exception(predicate),
                # Full jitter (AWS's advice for rate limits): uniform in [0, min(max, m * 2**n)].
                wait=wait_random_exponential(
                    multiplier=self.retry_initial_wait, max=self.retry_max_wait
                ),
                reraise=True,
            )
            async for retry in retrying:
                with retry:
                    n = retry.retry_state.attempt_number
                    if n == 1:
                        raise first  # replay the first attempt's failure: tenacity decides
                    # the previous attempt failed and is being retried: count it
                    assert r.decision is not None
                    await core.bandit.record_failure(arm, context=r.decision.context)
                    return await attempt(n)
            raise AssertionError("unreachable: tenacity re-raises the last error")  # noqa: B904

    async def _route(
        self, input: Any, config: RunnableConfig | None
    ) -> tuple[RunnableConfig, RouteCall, AsyncCallbackManagerForChainRun | None]:
        """Open the Runnable faces' call: its config, its RouteCall and its chain run.

        Returns the run manager to close (``None`` when nobody listens: nothing to report).
        """
        config = ensure_config(config)
        given_run_id = config.pop("run_id", None)
        if _nobody_listens(config):
            # No handler anywhere (no tracer, no callbacks): no chain run to report, so no
            # callback manager to configure (a third of the router's own time). An arm that
            # nobody observes either gets the caller's config as is; any other arm still runs
            # as this run's child, with its tags (see _QuietRun).
            run_id = str(given_run_id or _uuid7())
            return config, RouteCall(run_id, _QuietRun(self, config, run_id).child_config), None
        cm = get_async_callback_manager_for_config(config)
        run_manager = await cm.on_chain_start(
            None, input, name=config.get("run_name") or self.get_name(), run_id=given_run_id
        )
        call = RouteCall(str(run_manager.run_id), partial(self._child_config, config, run_manager))
        return config, call, run_manager

    def _begin(
        self,
        input: Any,
        config: RunnableConfig,
        call: RouteCall,
        stream: bool,
        kwargs: dict[str, Any],
    ) -> _Routing:
        # Straight from pydantic's private dict: ``self._core`` goes through a failed attribute
        # lookup and ``BaseModel.__getattr__``, a few microseconds per call.
        core: _Core = self.__pydantic_private__["_core"]  # type: ignore[index]
        route = core.telemetry.start_route(
            self.name or "bandit_router", run_id=call.run_id, input=input
        )
        return _Routing(core, call, config, stream, kwargs, route)

    async def _answer(
        self, input: Any, r: _Routing
    ) -> tuple[Any, AsyncIterator[Any] | None, AttemptSpan]:
        """Decide, then call arms (retries, fallbacks) until one answers: its first output."""
        call = r.call
        route = r.route
        bandit = r.core.bandit
        context = self._context(input)
        pinned = call.pinned
        how = "model"
        if pinned is None:
            pinned = (r.config.get("configurable") or {}).get(self.ARM_CONFIG_KEY)
            how = f"configurable {self.ARM_CONFIG_KEY}"
        exclude: tuple[str, ...] = ()
        if pinned is not None:
            if pinned not in self.arms:
                raise UnknownArmError(
                    f"{how}={pinned!r} is not an arm; the arms are {list(self.arms)}"
                )
            exclude = tuple(a for a in self.arms if a != pinned)
        decision = r.decision = call.decision = await bandit.choose(
            context=context, decision_id=call.run_id, exclude=exclude
        )
        route.decision(decision.selection, decision.decision_id, decision.context)
        if getattr(bandit.store, "degraded", False):  # e.g. RedisStore during an outage
            route.degraded(DEGRADED_STORE)
        errors: dict[str, BaseException] = {}
        r.t0 = time.perf_counter()
        while True:
            arm = decision.arm
            try:
                first = await self._attempts(arm, input, r)
                r.latency = time.perf_counter() - r.t0
                return first
            except (anyio.get_cancelled_exc_class(), GeneratorExit):
                raise
            except Exception as exc:
                errors[arm] = exc
                logger.warning("bandit_router: arm %r failed: %s", arm, self._describe(exc))
                if not (self.fallback and pinned is None and len(errors) < len(self.arms)):
                    await self._fail(bandit, decision)
                    r.settled = True
                    if pinned is not None or not self.fallback:
                        raise  # pinned or no fallback: the arm's own error
                    raise AllArmsFailedError(errors) from exc
                decision = r.decision = call.decision = await self._reroute(
                    bandit, decision, errors
                )
                route.fallback(arm, decision.arm, exc)
                r.t0 = time.perf_counter()  # latency is the answering arm's own

    async def _finish(self, input: Any, r: _Routing, final: Any) -> Any:
        """Stamp and score the answer (``final``: a stream's chunks added up); return it."""
        decision = r.decision
        assert decision is not None
        output = final if r.stream else self._stamp(final, decision)
        evaluator = r.core.evaluator
        if evaluator is not None:
            await self._score(
                r.core,
                evaluator,
                input,
                output,
                decision,
                r.call.run_id,
                r.config,
                r.latency,
                r.route,
            )
            r.settled = True
        r.call.final = output
        r.route.end(output=output)
        return output

    async def _abort(self, r: _Routing, exc: BaseException) -> None:
        """End a call that raised (or was cancelled): its span, and its decision's slot."""
        r.route.end(exc)
        if r.decision is not None and not r.settled:
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(BanditRouterError):
                    await r.core.bandit.release(r.decision.decision_id)

    async def _invoke(
        self, input: Any, config: RunnableConfig, call: RouteCall, kwargs: dict[str, Any]
    ) -> Any:
        """The routing core, for one output (no async generator: ``ainvoke`` is the hot path).

        Whoever owns the call's run (the Runnable faces' chain run, or LangChain's chat model
        run for ``ChatBanditRouter``) opens and closes it; ``call`` says how to reach the arms.
        """
        r = self._begin(input, config, call, False, kwargs)
        try:
            out, _, _ = await self._answer(input, r)
            return await self._finish(input, r, out)
        except BaseException as exc:
            await self._abort(r, exc)
            raise

    async def _stream(
        self, input: Any, config: RunnableConfig, call: RouteCall, kwargs: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        """The routing core, for a stream: yields the chosen arm's chunks unchanged.

        It falls back only before the first chunk; a failure after it is a failure of the
        arm, re-raised.
        """
        r = self._begin(input, config, call, True, kwargs)
        it: AsyncIterator[Any] | None = None
        try:
            out, it, span = await self._answer(input, r)
            final: Any = None
            try:
                if out is not _EMPTY:
                    span.chunk(out)
                    final = out
                    yield out
                if it is not None:
                    async for chunk in it:
                        span.chunk(chunk)
                        final = chunk if final is None else _add(final, chunk)
                        yield chunk
            except BaseException as exc:  # an error mid-stream, or the consumer stopped
                span.failed(exc)
                if isinstance(exc, Exception):
                    assert r.decision is not None
                    logger.warning(
                        "bandit_router: arm %r failed: %s", r.decision.arm, self._describe(exc)
                    )
                    await self._fail(r.core.bandit, r.decision)
                    r.settled = True
                raise
            span.ok()  # the stream's end
            await self._finish(input, r, final)
        except BaseException as exc:
            await self._abort(r, exc)
            raise
        finally:
            if it is not None:  # the arm's stream, stopped early: closed after the slot is free
                await _aclose(it)

    async def _score(
        self,
        core: _Core,
        evaluator: Evaluator,
        input: Any,
        output: Any,
        decision: Decision,
        run_id: str,
        config: RunnableConfig,
        latency: float,
        route: RouteSpan,
    ) -> float | None:
        t0 = time.perf_counter()
        try:
            score = await evaluator(
                inputs=input,
                outputs=output,
                arm=decision.arm,
                run_id=run_id,
                metadata=dict(config.get("metadata") or {}),
                latency_s=latency,
                usage=_usage(output),
            )
        except Exception as exc:
            route.evaluator_error(exc, core.evaluator_name, elapsed_s=time.perf_counter() - t0)
            errors = core.evaluator_errors
            errors[decision.arm] = errors.get(decision.arm, 0) + 1
            logger.warning(
                "bandit_router: evaluator failed for arm %r (no reward counted): %s",
                decision.arm,
                self._describe(exc),
            )
            with contextlib.suppress(UnknownDecisionError):  # expired meanwhile: released
                await core.bandit.release(decision.decision_id)
            return None
        elapsed = time.perf_counter() - t0
        try:
            await core.bandit.reward(decision.decision_id, score)
        except UnknownDecisionError:
            # The decision expired while the arm answered (older than pending_ttl, or evicted
            # by max_pending newer ones): the answer is good, only its reward is lost.
            logger.warning(
                "bandit_router: decision %r of arm %r expired before its reward; not counted "
                "(raise pending_ttl or max_pending)",
                decision.decision_id,
                decision.arm,
            )
            return None
        route.reward(score, core.evaluator_name, elapsed_s=elapsed)
        return score

    def _describe(self, exc: BaseException) -> str:
        """An exception for the logs: its type, and its message only with ``capture_content``.

        Messages often quote the prompt or the answer (a provider's validation error, a
        judge's complaint); like spans, logs carry no content unless it was asked for.
        """
        if self.capture_content:
            return f"{type(exc).__name__}: {exc}"
        return type(exc).__name__

    async def _fail(self, bandit: Bandit, decision: Decision) -> None:
        """Settle a failed call; if its decision expired meanwhile, still count the failure."""
        try:
            await bandit.fail(decision.decision_id)
        except UnknownDecisionError:
            await bandit.record_failure(decision.arm, context=decision.context)

    async def _reroute(
        self, bandit: Bandit, decision: Decision, errors: Mapping[str, BaseException]
    ) -> Decision:
        """Fall back to the next-best arm, keeping the decision (and its id) when it can."""
        try:
            return await bandit.reroute(decision, exclude=tuple(errors))
        except UnknownDecisionError:
            # Expired while the failed arm was tried: count its failure and start a new
            # decision (a new id: the old one is spent), so the call still falls back.
            await bandit.record_failure(decision.arm, context=decision.context)
            logger.warning(
                "bandit_router: decision %r expired before its fallback; the call goes on "
                "under a new decision",
                decision.decision_id,
            )
            return await bandit.choose(context=decision.context, exclude=tuple(errors))

    def _stamp(self, output: Any, decision: Decision) -> Any:
        if isinstance(output, BaseMessage):
            base = output.response_metadata
            # Not a mapping only in a message built without validation; the answer still goes out.
            meta = dict(base) if isinstance(base, Mapping) else {}
            meta["bandit_router"] = {"arm": decision.arm, "decision_id": decision.decision_id}
            return output.model_copy(update={"response_metadata": meta})
        return output

    # --- Runnable faces (thin adapters) -----------------------------------------------------

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Route one call and return the chosen arm's output."""
        config, call, run_manager = await self._route(input, config)
        try:
            out = await self._invoke(input, config, call, kwargs)
        except BaseException as exc:
            if run_manager is not None:
                await _shielded_error(run_manager, exc)
            raise
        if run_manager is not None:
            await run_manager.on_chain_end(out)
        return out

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Sync face of :meth:`ainvoke`."""
        return run_sync(self.ainvoke(input, ensure_config(config), **kwargs))

    async def astream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> AsyncIterator[Any]:
        """Route one call and yield the chosen arm's chunks unchanged."""
        config, call, run_manager = await self._route(input, config)
        try:
            # aclosing: a consumer that stops early must close the route (releasing its slot)
            # now, not whenever the garbage collector gets to it.
            async with aclosing(self._stream(input, config, call, dict(kwargs))) as chunks:
                async for chunk in chunks:
                    yield chunk
        except BaseException as exc:
            if run_manager is not None:
                await _shielded_error(run_manager, exc)
            raise
        if run_manager is not None:
            await run_manager.on_chain_end(call.final)

    def stream(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any | None
    ) -> Iterator[Any]:
        """Sync face of :meth:`astream`."""
        yield from iterate_sync(self.astream(input, ensure_config(config), **kwargs))

    # --- feedback and statistics ------------------------------------------------------------

    async def arecord_feedback(self, run_id: uuid.UUID | str, score: object) -> None:
        """Record a delayed reward for the call whose LangChain run id is ``run_id``.

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
        with self._core.telemetry.feedback(decision_id, self.name or "bandit_router") as span:
            value = coerce_score(score)
            done = await self._core.bandit.reward(decision_id, value)
            span.settled(value, arm=done.arm, context=done.context)

    def record_feedback(self, run_id: uuid.UUID | str, score: object) -> None:
        """Sync face of :meth:`arecord_feedback`."""
        run_sync(self.arecord_feedback(run_id, score))

    async def astatistics(self, context: str = "") -> dict[str, ArmStatistics]:
        """Return a frozen report per arm, read from the store."""
        return await self._core.bandit.statistics(context)

    def statistics(self, context: str = "") -> dict[str, ArmStatistics]:
        """Sync face of :meth:`astatistics`."""
        return run_sync(self.astatistics(context))

    @property
    def evaluator_errors(self) -> dict[str, int]:
        """How many times the evaluator failed per arm, in this process."""
        return dict(self._core.evaluator_errors)

    # --- derived routers that share the learning --------------------------------------------

    def _derive(self, arms: dict[str, Runnable[Any, Any]]) -> BanditRouterRunnable:
        clone = self.model_copy(update={"arms": arms})
        # The same learning state, evaluator, error counts, spans, metrics and pending links:
        # shared, not copied.
        clone._core = self._core
        return clone

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> BanditRouterRunnable:
        """Return a router over each arm's ``bind_tools(tools, **kwargs)``, sharing learning."""
        return self._derive(
            {n: _call(a, "bind_tools", n, tools, **kwargs) for n, a in self.arms.items()}
        )

    def with_structured_output(self, schema: Any, **kwargs: Any) -> BanditRouterRunnable:
        """Return a router over each arm's ``with_structured_output``, sharing learning."""
        return self._derive(
            {
                n: _call(a, "with_structured_output", n, schema, **kwargs)
                for n, a in self.arms.items()
            }
        )


def _instance_of(types: tuple[type[BaseException], ...]) -> Callable[[BaseException], bool]:
    def predicate(exc: BaseException) -> bool:
        return isinstance(exc, types)

    return predicate


def _nobody_listens(config: RunnableConfig) -> bool:
    """Whether LangChain's callback configuration for ``config`` would have no handler.

    The same questions ``langchain_core.callbacks.manager._configure`` asks before it adds a
    handler, without building the manager: callbacks in the config, LangSmith tracing (its
    environment variables, ``tracing_v2_enabled`` and ``tracing_context``), ``set_debug`` and
    the registered configure hooks (``collect_runs``, instrumentations). Any doubt answers
    False: the router then configures its run as LangChain does. A test pins this answer to
    the real configuration's in each of those cases.
    """
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


def _unobserved(arm: Runnable[Any, Any]) -> bool:
    """Whether nothing but the caller's callbacks can observe ``arm``'s run.

    A language model without callbacks of its own is such an arm, also behind plain bindings
    (``bind``, ``bind_tools``, ``with_config``) that add none: a binding makes no run of its
    own. A chain, a retry or fallback wrapper, a listener (``with_listeners``) or a model with
    its own handlers may report runs to handlers the caller does not see.
    """
    # A binding that calls its bound runnable as RunnableBinding does (``_ChatModelBinding``
    # only narrows types); RunnableRetry and other subclasses that make a run do not qualify.
    while (
        isinstance(arm, RunnableBinding)
        and type(arm).ainvoke is RunnableBinding.ainvoke
        and type(arm).astream is RunnableBinding.astream
    ):
        if arm.config.get("callbacks") or arm.config_factories:
            return False
        arm = arm.bound
    return (
        isinstance(arm, BaseLanguageModel)
        and arm.callbacks is None
        # A deprecated field some models still declare; read from the instance's fields, as
        # getattr on a model that lacks it raises and catches an AttributeError.
        and arm.__dict__.get("callback_manager") is None
    )


class _QuietRun:
    """The child configs of a call nobody listens to (see ``_route``)."""

    __slots__ = ("_config", "_manager", "_router", "_run_id", "_shared")

    def __init__(self, router: BanditRouterRunnable, config: RunnableConfig, run_id: str) -> None:
        self._router = router
        self._config = config
        self._run_id = run_id
        self._manager: AsyncCallbackManagerForChainRun | None = None
        # What an unobserved arm gets: the caller's config less the router's own run name.
        self._shared: RunnableConfig | None = None

    def child_config(self, arm: str, attempt: int) -> RunnableConfig:
        router = self._router
        if _unobserved(router.arms[arm]):
            if self._shared is None:
                config = self._config
                self._shared = (
                    config
                    if "run_name" not in config
                    else cast(RunnableConfig, {k: v for k, v in config.items() if k != "run_name"})
                )
            return self._shared
        if self._manager is None:
            # The run manager LangChain would build, without its no-op event round trips.
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
        return router._child_config(self._config, self._manager, arm, attempt)


@dataclass(slots=True)
class RouteCall:
    """One call as its face sets it up for the routing core (``_invoke`` / ``_stream``).

    The Runnable faces open a chain run of their own; ``ChatBanditRouter``'s calls are
    LangChain chat model runs. Either way the core decides, calls, retries, falls back and
    learns the same; this says the rest.
    """

    #: The call's run id, which is also its decision id.
    run_id: str
    #: ``(arm, attempt) -> config`` for one attempt's child run.
    child_config: Callable[[str, int], RunnableConfig]
    #: ``(arm name, arm) -> runnable`` to call instead (e.g. the arm with tools bound).
    prepare: Callable[[str, Runnable[Any, Any]], Runnable[Any, Any]] | None = None
    #: An arm this call must use (a chat model's ``model=``), before ``configurable``.
    pinned: str | None = None
    #: Set by the core: the decision, as soon as it is made (and again after a fallback).
    decision: Decision | None = None
    #: Set by the core: the output (for a stream, its chunks added up).
    final: Any = None


@dataclass(slots=True)
class _Routing:
    """The state of one call in the routing core (``_invoke`` / ``_stream``)."""

    core: _Core
    call: RouteCall
    config: RunnableConfig
    stream: bool
    kwargs: dict[str, Any]
    route: RouteSpan
    decision: Decision | None = None
    #: The decision was settled (rewarded or failed): nothing to release on the way out.
    settled: bool = False
    t0: float = 0.0
    #: Seconds to the answer (a stream's first chunk) from the answering arm's first attempt.
    latency: float = 0.0


@dataclass(slots=True)
class _Core:
    """A router's live parts, shared by the routers derived from it (bind_tools, ...)."""

    bandit: Bandit
    telemetry: Telemetry
    evaluator: Evaluator | None
    evaluator_name: str
    evaluator_errors: dict[str, int]
    retry_predicate: Callable[[BaseException], bool]
    #: The per-attempt time limits on the loop last used (see ``_deadline``).
    deadlines: Deadlines | None = None


def _call(
    arm: Runnable[Any, Any], method: str, name: str, /, *args: Any, **kwargs: Any
) -> Runnable[Any, Any]:
    # Positional-only: the arm's own method may take ``method=`` or ``name=`` keywords.
    fn = getattr(arm, method, None)
    if fn is None:
        raise ConfigurationError(f"arm {name!r} ({type(arm).__name__}) has no {method}()")
    result: Runnable[Any, Any] = fn(*args, **kwargs)
    return result


def _add(acc: Any, chunk: Any) -> Any:
    try:
        return acc + chunk
    except TypeError:
        return chunk


_EMPTY: Any = object()


async def _aclose(it: AsyncIterator[Any]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()


async def _shielded_error(run_manager: AsyncCallbackManagerForChainRun, exc: BaseException) -> None:
    with anyio.CancelScope(shield=True):
        await run_manager.on_chain_error(exc)
