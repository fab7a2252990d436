"""The routing core: decide, attempt (retries, timeouts), fall back, finish. LangChain-free.

One routed call, in order (each step in one place):

1. **Decide** (:meth:`Router._plan`): the bandit chooses an arm and counts the call in flight
   (``Bandit.choose``); arms on a rate-limit cooldown are skipped while another arm is free.
2. **Attempt** (:meth:`Router._attempts`): call the arm; :mod:`tenacity` decides whether a
   failed attempt is retried and how long to wait (honouring ``Retry-After``); each attempt
   is timed by an :class:`~bandit_router.core.timeouts.AttemptTimer` (anyio cancel scopes on
   the async faces). A failed attempt that is retried is counted as a failure of its arm.
3. **Fall back** (:meth:`Router._plan`): when an arm's attempts are exhausted (or its error is
   not worth retrying, or it is rate-limited), the decision moves to the next-best arm
   (``Bandit.reroute``, which counts the failure); when no arm is left, the call fails with
   :class:`~bandit_router.AllArmsFailedError`.
4. **Finish** (:meth:`Router._finish`): the answer goes back to the caller; the evaluator, if
   any, scores it afterwards (:mod:`bandit_router.core.scoring`) and the score settles the
   decision. Without an evaluator the decision waits for delayed feedback.

Everything observable is reported to a :class:`~bandit_router.core.observer.RouteObserver`
(OpenTelemetry spans, in :mod:`bandit_router.telemetry`).

Steps 1 to 3 are written once, as a generator of *steps* (:meth:`Router._plan`): it yields what
must be done (choose, call an arm, sleep, record a failure ...) and receives the result. Two
small drivers carry the steps out: :meth:`Router._drive` with blocking calls for the sync faces
(the arms' own sync methods, the stores' sync paths), and :meth:`Router._adrive` with awaits
for the async faces (asyncio or trio). The call's logic therefore cannot differ between sync
and async.

**Whose error is it.** Only an exception raised by the arm itself (or the router's timeout of
an attempt) counts against the arm. An error of the router or of its store propagates to the
caller as it is, without any arm being charged, and the call's decision is released.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import anyio
from tenacity import (
    DoAttempt,
    DoSleep,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from bandit_router._bandit import Bandit, Decision
from bandit_router._errors import (
    AllArmsFailedError,
    BanditRouterError,
    StoreError,
    UnknownDecisionError,
)
from bandit_router._stats import Outcome
from bandit_router.core.failures import is_rate_limit, is_transient, retry_after
from bandit_router.core.observer import AttemptObserver, RouteObserver
from bandit_router.core.scoring import ScoreJob, Scorer
from bandit_router.core.timeouts import AttemptTimer

__all__ = ["DEGRADED_STORE", "ArmCalls", "Cooldowns", "Request", "RouteSettings", "Router"]

logger = logging.getLogger("bandit_router")

#: The ``bandit_router.degraded`` reason of a call routed while its store is degraded.
DEGRADED_STORE: Final = "store unavailable: routed on the last known statistics, updates buffered"
#: The reason of a call routed without the store at all (it refused the decision).
DEGRADED_NO_DECISION: Final = "store failed: routed at random, nothing learned from this call"


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """How calls are attempted, retried and moved; validated by the faces.

    Attributes:
        max_attempts: Requests per arm per routed call, >= 1.
        timeout: Seconds of waiting for the arm per attempt (``None``: no limit).
        stall_timeout: Seconds of any single wait (first chunk, or between chunks).
        retry_if: Which errors are retried on the same arm.
        retry_initial_wait: First back-off, seconds (exponential with full jitter).
        retry_max_wait: Longest back-off, seconds; a ``Retry-After`` beyond it is not waited
            for (the call falls back instead).
        fallback: Move to the next-best arm when an arm fails.
        rate_limit_cooldown: Seconds an arm is skipped after a rate limit that gave no
            ``Retry-After``.
        attempts: Per-arm caps below ``max_attempts``: arms whose client retries by itself
            (and cannot be told not to) get one router attempt per call.
    """

    max_attempts: int = 3
    timeout: float | None = 30.0
    stall_timeout: float | None = None
    retry_if: Callable[[BaseException], bool] = is_transient
    retry_initial_wait: float = 0.5
    retry_max_wait: float = 8.0
    fallback: bool = True
    rate_limit_cooldown: float = 5.0
    attempts: Mapping[str, int] = field(default_factory=dict)

    def attempts_for(self, arm: str) -> int:
        """Attempts allowed on ``arm`` per routed call."""
        return min(self.attempts.get(arm, self.max_attempts), self.max_attempts)


class ArmCalls(Protocol):
    """How one routed call reaches its arms (built by the face, which knows LangChain)."""

    def invoke(self, arm: str, attempt: int) -> Any:
        """Call ``arm``'s sync method; return its output."""

    def ainvoke(self, arm: str, attempt: int) -> Awaitable[Any]:
        """Call ``arm``'s async method."""

    def stream(self, arm: str, attempt: int) -> Iterator[Any]:
        """Open ``arm``'s sync stream."""

    def astream(self, arm: str, attempt: int) -> AsyncIterator[Any]:
        """Open ``arm``'s async stream."""

    def score_arguments(self, output: Any, arm: str, latency_s: float) -> Mapping[str, Any]:
        """What the evaluator may ask for about this answer."""


@dataclass(slots=True)
class Request:
    """One routed call, as the face hands it to the core.

    Attributes:
        decision_id: The call's id (its LangChain run id); feedback settles it.
        context: The bandit context whose statistics the call uses.
        calls: How to reach the arms.
        observer: Where the call is reported.
        pinned: An arm this call must use (no choice, no fallback).
        decision: Set by the core: the decision, as soon as it is made (again after a fallback).
        output: Set by the core: the answer (a stream's chunks added up).
    """

    decision_id: str
    context: str
    calls: ArmCalls
    observer: RouteObserver
    pinned: str | None = None
    decision: Decision | None = None
    output: Any = None
    # Internal: settled (rewarded, failed or released): nothing to release on the way out.
    settled: bool = False
    arm: str | None = None
    latency: float = 0.0
    started: float = 0.0


class Cooldowns:
    """Arms on a rate-limit cooldown in this process: ``arm -> until`` (wall clock)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._until: dict[str, float] = {}
        self._clock = clock

    def cool(self, arm: str, seconds: float) -> None:
        """Skip ``arm`` for ``seconds`` from now (a later end wins over an earlier one)."""
        until = self._clock() + seconds
        if until > self._until.get(arm, -math.inf):
            self._until[arm] = until

    def active(self) -> tuple[str, ...]:
        """The arms cooling now."""
        if not self._until:
            return ()
        now = self._clock()
        for arm in [a for a, t in self._until.items() if t <= now]:
            del self._until[arm]
        return tuple(self._until)


# --- steps: what the plan asks its driver to do --------------------------------------------


@dataclass(slots=True)
class _Choose:
    context: str
    decision_id: str
    exclude: tuple[str, ...]


@dataclass(slots=True)
class _Reroute:
    decision: Decision
    exclude: tuple[str, ...]
    outcome: Outcome


@dataclass(slots=True)
class _Observe:
    arm: str
    context: str
    outcome: Outcome


@dataclass(slots=True)
class _Fail:
    decision: Decision
    outcome: Outcome


@dataclass(slots=True)
class _Attempt:
    arm: str
    n: int


@dataclass(slots=True)
class _Sleep:
    seconds: float


@dataclass(slots=True)
class _Opened:
    """A stream that gave its first chunk (``first`` is :data:`_EMPTY` for an empty stream)."""

    first: Any
    rest: Any  # the arm's iterator (sync or async)
    span: AttemptObserver
    timer: AttemptTimer


_Step = _Choose | _Reroute | _Observe | _Fail | _Attempt | _Sleep
_EMPTY: Final[Any] = object()


class Router:
    """The routing core of one router (shared by the routers derived from it).

    Args:
        bandit: The learning: decisions, rewards and statistics in a store.
        settings: How calls are attempted, retried and moved.
        scorer: Scores answers after they are returned (``None``: feedback only).
        cooldowns: The arms on a rate-limit cooldown.
        seed: Seed of the generator used when the store cannot decide.
    """

    def __init__(
        self,
        bandit: Bandit,
        settings: RouteSettings,
        scorer: Scorer | None,
        *,
        cooldowns: Cooldowns | None = None,
        seed: int | None = None,
    ) -> None:
        self.bandit = bandit
        self.settings = settings
        self.scorer = scorer
        self.cooldowns = Cooldowns() if cooldowns is None else cooldowns
        self.arms = bandit.arms
        self._rng = random.Random(seed)
        self._failure = bandit.engine.failure_outcome()
        self._rate_limited = bandit.engine.rate_limit_outcome()
        retry_if = settings.retry_if

        def retryable(exc: BaseException) -> bool:
            # A server asking for a longer wait than retry_max_wait is not waited for.
            ra = retry_after(exc)
            return retry_if(exc) and (ra is None or ra <= settings.retry_max_wait)

        self._retryable = retryable
        self._jitter = wait_random_exponential(
            multiplier=settings.retry_initial_wait, max=settings.retry_max_wait
        )

    # --- the plan: one implementation for every face -------------------------------------

    def _outcome(self, exc: BaseException) -> Outcome:
        return self._rate_limited if is_rate_limit(exc) else self._failure

    def _excluding(self, base: tuple[str, ...]) -> tuple[str, ...]:
        """``base`` plus the arms cooling now, unless that would leave no arm."""
        cooling = self.cooldowns.active()
        if not cooling:
            return base
        wider = tuple(dict.fromkeys((*base, *cooling)))
        return wider if len(wider) < len(self.arms) else base

    def _plan(self, r: Request) -> Generator[_Step, Any, Any]:
        """Decide, attempt, fall back: the output of the arm that answered."""
        pinned = r.pinned
        base: tuple[str, ...] = ()
        if pinned is not None:
            base = tuple(a for a in self.arms if a != pinned)
        decision: Decision | None
        try:
            decision = yield _Choose(r.context, r.decision_id, self._excluding(base))
        except StoreError as exc:
            # The store refused the decision: answer anyway, without learning from this call.
            decision = None
            r.observer.degraded(DEGRADED_NO_DECISION, exc)
            logger.warning(
                "bandit_router: the store failed to record a decision (%s); routing at random "
                "without learning",
                type(exc).__name__,
            )
            arm = pinned or self._rng.choice([a for a in self.arms if a not in base])
        else:
            r.decision = decision
            arm = decision.arm
            r.observer.decision(decision.selection, decision.decision_id, decision.context)
            if getattr(self.bandit.store, "degraded", False):  # e.g. RedisStore in an outage
                r.observer.degraded(DEGRADED_STORE)
        errors: dict[str, BaseException] = {}
        while True:
            r.arm = arm
            r.started = time.perf_counter()
            try:
                out = yield from self._attempts(arm, r)
            except Exception as exc:
                errors[arm] = exc
                logger.warning("bandit_router: arm %r failed: %s", arm, self._describe(exc))
                outcome = self._outcome(exc)
                left = len(errors) < len(self.arms)
                if self.settings.fallback and pinned is None and left:
                    exclude = self._excluding(tuple(errors))
                    if decision is not None:
                        decision = yield from self._reroute(decision, exclude, outcome, r)
                    if decision is None:  # routing without the store
                        nxt = self._rng.choice([a for a in self.arms if a not in exclude])
                    else:
                        nxt = decision.arm
                    r.observer.fallback(arm, nxt, exc)
                    arm = nxt
                    continue
                if decision is not None:
                    yield from self._fail(decision, outcome, r)
                r.settled = True
                if pinned is not None or not self.settings.fallback:
                    raise  # one arm was allowed: its own error
                raise AllArmsFailedError(errors) from exc
            r.latency = time.perf_counter() - r.started
            return out

    def _reroute(
        self, decision: Decision, exclude: tuple[str, ...], outcome: Outcome, r: Request
    ) -> Generator[_Step, Any, Decision | None]:
        """Move the decision to the next-best arm; ``None`` if the store failed.

        Without the store the call goes on without learning; the old decision expires there.
        """
        new: Decision | None
        try:
            try:
                new = yield _Reroute(decision, exclude, outcome)
            except UnknownDecisionError:
                # Expired while the failed arm was tried: count its failure and start a new
                # decision (a new id: the old one is spent), so the call still falls back.
                yield from self._observe(decision.arm, decision.context, outcome)
                logger.warning(
                    "bandit_router: decision %r expired before its fallback; the call goes on "
                    "under a new decision",
                    decision.decision_id,
                )
                new = yield _Choose(decision.context, _fresh_id(decision.decision_id), exclude)
        except StoreError as exc:
            self._store_failed("move the call to another arm", exc, r)
            new = None
        r.decision = new
        return new

    def _fail(
        self, decision: Decision, outcome: Outcome, r: Request
    ) -> Generator[_Step, Any, None]:
        try:
            try:
                yield _Fail(decision, outcome)
            except UnknownDecisionError:  # expired meanwhile: still count the failure
                yield _Observe(decision.arm, decision.context, outcome)
        except StoreError as exc:
            self._store_failed("record a failed call", exc, r)

    def _observe(
        self, arm: str, context: str, outcome: Outcome, r: Request | None = None
    ) -> Generator[_Step, Any, None]:
        """Count a failed attempt; a store that refuses it costs the call nothing."""
        try:
            yield _Observe(arm, context, outcome)
        except StoreError as exc:
            self._store_failed("count a failed attempt", exc, r)

    def _store_failed(self, what: str, exc: StoreError, r: Request | None) -> None:
        if r is not None:
            r.observer.degraded(DEGRADED_NO_DECISION, exc)
        logger.warning(
            "bandit_router: the store failed to %s (%s); the call goes on", what, type(exc).__name__
        )

    def _attempts(self, arm: str, r: Request) -> Generator[_Step, Any, Any]:
        """Call ``arm`` with retries: its output (for a stream: an :class:`_Opened`).

        Raises the arm's last error once its attempts are exhausted, or at once for an error
        not worth retrying, or for a rate limit when another arm can take the call.
        """
        settings = self.settings
        try:
            return (yield _Attempt(arm, 1))  # the common case: no retry machinery at all
        except Exception as exc:
            first = exc
        cap = settings.attempts_for(arm)
        self._cool_if_limited(first, arm, r)
        if cap == 1 or not self._retryable(first) or self._should_move(first, arm, r):
            raise first
        # Tenacity decides from here, replaying the first attempt's failure into its state.
        retrying = Retrying(
            stop=stop_after_attempt(cap),
            retry=retry_if_exception(self._retryable),
            wait=self._wait,
            reraise=True,
        )
        retrying.begin()
        state = RetryCallState(retrying, fn=None, args=(), kwargs={})
        retrying.iter(state)  # DoAttempt: attempt 1, which already ran
        state.set_exception((type(first), first, first.__traceback__))
        context = r.decision.context if r.decision is not None else r.context
        while True:
            do = retrying.iter(state)  # raises the last error when tenacity stops
            if isinstance(do, DoSleep):
                failed = state.outcome.exception() if state.outcome is not None else None
                if failed is not None and r.decision is not None:
                    # The failed attempt is retried: count it against the arm now.
                    yield from self._observe(arm, context, self._outcome(failed), r)
                state.prepare_for_next_attempt()
                yield _Sleep(float(do))
            elif isinstance(do, DoAttempt):
                try:
                    return (yield _Attempt(arm, state.attempt_number))
                except Exception as exc:
                    state.set_exception((type(exc), exc, exc.__traceback__))
                    self._cool_if_limited(exc, arm, r)
                    if self._should_move(exc, arm, r):
                        raise
            else:  # pragma: no cover (tenacity returns a result only for a success)
                return do

    def _cool_if_limited(self, exc: BaseException, arm: str, r: Request) -> None:
        if not is_rate_limit(exc):
            return
        wait = retry_after(exc)
        seconds = self.settings.rate_limit_cooldown if wait is None else wait
        if seconds > 0:
            self.cooldowns.cool(arm, seconds)
            r.observer.cooldown(arm, seconds)

    def _should_move(self, exc: BaseException, arm: str, r: Request) -> bool:
        """A rate-limited arm is left at once when another arm can take the call."""
        return (
            is_rate_limit(exc)
            and self.settings.fallback
            and r.pinned is None
            and len(self.arms) > 1
        )

    def _wait(self, state: RetryCallState) -> float:
        """Seconds before the next attempt: the server's ``Retry-After``, else jittered back-off."""
        exc = state.outcome.exception() if state.outcome is not None else None
        ra = None if exc is None else retry_after(exc)
        return ra if ra is not None else float(self._jitter(state))

    def _describe(self, exc: BaseException) -> str:
        return type(exc).__name__

    # --- drivers ---------------------------------------------------------------------------

    def _drive(self, plan: Generator[_Step, Any, Any], r: Request, stream: bool) -> Any:
        """Carry out ``plan`` with blocking calls (the sync faces)."""
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = plan.send(value) if error is None else plan.throw(error)
            except StopIteration as stop:
                return stop.value
            value = error = None
            try:
                value = self._do(step, r, stream)
            except Exception as exc:
                error = exc

    async def _adrive(self, plan: Generator[_Step, Any, Any], r: Request, stream: bool) -> Any:
        """Carry out ``plan`` with awaits (the async faces)."""
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                step = plan.send(value) if error is None else plan.throw(error)
            except StopIteration as stop:
                return stop.value
            value = error = None
            try:
                value = await self._ado(step, r, stream)
            except Exception as exc:
                error = exc

    def _do(self, step: _Step, r: Request, stream: bool) -> Any:
        bandit = self.bandit
        if type(step) is _Attempt:
            return self._call(step.arm, step.n, r, stream)
        if type(step) is _Choose:
            return bandit.choose_sync(
                context=step.context, decision_id=step.decision_id, exclude=step.exclude
            )
        if type(step) is _Reroute:
            return bandit.reroute_sync(step.decision, exclude=step.exclude, outcome=step.outcome)
        if type(step) is _Observe:
            return bandit.record_failure_sync(step.arm, context=step.context, outcome=step.outcome)
        if type(step) is _Fail:
            return bandit.fail_sync(step.decision.decision_id, outcome=step.outcome)
        assert type(step) is _Sleep
        time.sleep(step.seconds)
        return None

    async def _ado(self, step: _Step, r: Request, stream: bool) -> Any:
        bandit = self.bandit
        if type(step) is _Attempt:
            return await self._acall(step.arm, step.n, r, stream)
        if type(step) is _Choose:
            return await bandit.choose(
                context=step.context, decision_id=step.decision_id, exclude=step.exclude
            )
        if type(step) is _Reroute:
            return await bandit.reroute(step.decision, exclude=step.exclude, outcome=step.outcome)
        if type(step) is _Observe:
            return await bandit.record_failure(step.arm, context=step.context, outcome=step.outcome)
        if type(step) is _Fail:
            return await bandit.fail(step.decision.decision_id, outcome=step.outcome)
        assert type(step) is _Sleep
        await anyio.sleep(step.seconds)
        return None

    # --- one attempt --------------------------------------------------------------------------

    def _timer(self, arm: str, n: int) -> AttemptTimer:
        s = self.settings
        return AttemptTimer(arm, n, s.timeout, s.stall_timeout)

    def _call(self, arm: str, n: int, r: Request, stream: bool) -> Any:
        span = r.observer.attempt(arm, n)
        timer = self._timer(arm, n)
        t0 = time.perf_counter()
        try:
            if not stream:
                with span.activate():
                    out = r.calls.invoke(arm, n)
                span.ok(out)
                return out
            it = iter(r.calls.stream(arm, n))
            try:
                with span.activate():
                    first = next(it, _EMPTY)
                timer.spent(time.perf_counter() - t0, "first chunk")
            except BaseException:
                _close(it)
                raise
            return _Opened(first, it, span, timer)
        except BaseException as exc:
            span.failed(exc)
            raise

    async def _acall(self, arm: str, n: int, r: Request, stream: bool) -> Any:
        span = r.observer.attempt(arm, n)
        timer = self._timer(arm, n)
        try:
            if not stream:
                with span.activate():
                    async with timer.wait():
                        out = await r.calls.ainvoke(arm, n)
                span.ok(out)
                return out
            it = r.calls.astream(arm, n).__aiter__()
            try:
                with span.activate():
                    async with timer.wait("first chunk"):
                        try:
                            first = await it.__anext__()
                        except StopAsyncIteration:
                            first = _EMPTY
            except BaseException:
                await _aclose(it)
                raise
            return _Opened(first, it, span, timer)
        except BaseException as exc:
            span.failed(exc)
            raise

    # --- faces of the core -------------------------------------------------------------------

    async def ainvoke(self, r: Request) -> Any:
        """Route one call; return the answering arm's output."""
        try:
            out = await self._adrive(self._plan(r), r, False)
        except BaseException as exc:
            await self._aabort(r, exc)
            raise
        r.output = out
        await self._afinish(r, out)
        return out

    def invoke(self, r: Request) -> Any:
        """Route one call from a thread (the arms' sync methods); return the output."""
        try:
            out = self._drive(self._plan(r), r, False)
        except BaseException as exc:
            self._abort(r, exc)
            raise
        r.output = out
        self._finish(r, out)
        return out

    async def astream(self, r: Request) -> AsyncIterator[Any]:
        """Route one call; yield the answering arm's chunks unchanged.

        It falls back only before the first chunk; a failure after it is the arm's, raised.
        """
        try:
            opened: _Opened = await self._adrive(self._plan(r), r, True)
        except BaseException as exc:
            await self._aabort(r, exc)
            raise
        it, span, timer = opened.rest, opened.span, opened.timer
        final: Any = None
        try:
            if opened.first is not _EMPTY:
                span.chunk(opened.first)
                final = opened.first
                yield opened.first
            while True:
                try:
                    async with timer.wait("next chunk"):
                        chunk = await it.__anext__()
                except StopAsyncIteration:
                    break
                except Exception as exc:  # the arm's stream broke (or stalled)
                    await self._stream_failed(r, span, exc)
                    raise
                span.chunk(chunk)
                final = chunk if final is None else _add(final, chunk)
                yield chunk
        except BaseException as exc:  # the consumer stopped early, or was cancelled
            if not r.settled:
                span.failed(exc)
                await self._aabort(r, exc)
            raise
        finally:
            await _aclose(it)
        span.ok()
        r.output = final
        await self._afinish(r, final)

    def stream(self, r: Request) -> Iterator[Any]:
        """Sync face of :meth:`astream` (the arms' sync streams)."""
        try:
            opened: _Opened = self._drive(self._plan(r), r, True)
        except BaseException as exc:
            self._abort(r, exc)
            raise
        it, span, timer = opened.rest, opened.span, opened.timer
        final: Any = None
        try:
            if opened.first is not _EMPTY:
                span.chunk(opened.first)
                final = opened.first
                yield opened.first
            while True:
                t0 = time.perf_counter()
                try:
                    chunk = next(it, _EMPTY)
                    timer.spent(time.perf_counter() - t0, "next chunk")
                except Exception as exc:
                    self._stream_failed_sync(r, span, exc)
                    raise
                if chunk is _EMPTY:
                    break
                span.chunk(chunk)
                final = chunk if final is None else _add(final, chunk)
                yield chunk
        except BaseException as exc:
            if not r.settled:
                span.failed(exc)
                self._abort(r, exc)
            raise
        finally:
            _close(it)
        span.ok()
        r.output = final
        self._finish(r, final)

    # --- the end of a call ----------------------------------------------------------------

    async def _stream_failed(self, r: Request, span: AttemptObserver, exc: Exception) -> None:
        span.failed(exc)
        logger.warning("bandit_router: arm %r failed mid-stream: %s", r.arm, self._describe(exc))
        r.observer.end(exc)
        if r.decision is not None:
            with anyio.CancelScope(shield=True), contextlib.suppress(BanditRouterError):
                await self.bandit.fail(r.decision.decision_id, outcome=self._outcome(exc))
        r.settled = True

    def _stream_failed_sync(self, r: Request, span: AttemptObserver, exc: Exception) -> None:
        span.failed(exc)
        logger.warning("bandit_router: arm %r failed mid-stream: %s", r.arm, self._describe(exc))
        r.observer.end(exc)
        if r.decision is not None:
            with contextlib.suppress(BanditRouterError):
                self.bandit.fail_sync(r.decision.decision_id, outcome=self._outcome(exc))
        r.settled = True

    async def _aabort(self, r: Request, exc: BaseException) -> None:
        """End a call that raised or was cancelled: its span, and its decision's slot."""
        r.observer.end(exc)
        if r.decision is not None and not r.settled:
            r.settled = True
            with anyio.CancelScope(shield=True), contextlib.suppress(BanditRouterError):
                await self.bandit.release(r.decision.decision_id)

    def _abort(self, r: Request, exc: BaseException) -> None:
        r.observer.end(exc)
        if r.decision is not None and not r.settled:
            r.settled = True
            with contextlib.suppress(BanditRouterError):
                self.bandit.release_sync(r.decision.decision_id)

    def _job(self, r: Request, output: Any) -> ScoreJob | None:
        if self.scorer is None or r.decision is None:
            return None
        decision = r.decision
        r.settled = True
        return ScoreJob(
            decision.decision_id,
            decision.arm,
            r.calls.score_arguments(output, decision.arm, r.latency),
            r.observer,
        )

    async def _afinish(self, r: Request, output: Any) -> None:
        """End the call's span and hand the answer to the scorer.

        A quick evaluator (microseconds, called directly) scores before the span ends, so its
        reward shows on the call's own span; any other scores after, on a linked span.
        """
        job = self._job(r, output)
        if job is None:
            r.observer.end(output=output)
            return
        scorer = self.scorer
        assert scorer is not None
        if scorer.direct:
            await scorer.submit(job)
            r.observer.end(output=output)
        else:
            r.observer.end(output=output)
            await scorer.submit(job)

    def _finish(self, r: Request, output: Any) -> None:
        job = self._job(r, output)
        if job is None:
            r.observer.end(output=output)
            return
        scorer = self.scorer
        assert scorer is not None
        if scorer.direct:
            scorer.submit_sync(job)
            r.observer.end(output=output)
        else:
            r.observer.end(output=output)
            scorer.submit_sync(job)


def _fresh_id(old: str) -> str:
    import uuid

    return f"{old}:{uuid.uuid4().hex[:8]}"


def _add(acc: Any, chunk: Any) -> Any:
    try:
        return acc + chunk
    except TypeError:
        return chunk


def _close(it: Any) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


async def _aclose(it: Any) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            await aclose()
