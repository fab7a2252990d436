"""Scoring answers after they were returned: evaluators off the caller's path.

The caller gets the arm's answer at once; the evaluator runs afterwards, with its own timeout
and concurrency limit, and its score settles the decision in the store. A decision stays in
flight (counted as a pending pull by the policy) until then.

How an evaluator runs:

* **async** evaluators run as a background task on the caller's event loop (on the portal loop
  for the sync faces), under ``evaluator_timeout``;
* **sync** evaluators run in a worker thread of the router's own limiter (never the default
  thread pool that stores such as SQLite use), under ``evaluator_timeout``. A thread hop costs
  far more than a function that compares two strings, so the router times a sync evaluator's
  first calls in the thread: once :data:`QUICK_PROBES` calls in a row each used under
  :data:`QUICK_SECONDS` of CPU and returned within :data:`WAIT_SECONDS` (a judge waiting on
  the network uses little CPU but much time), it is called directly right after the answer,
  without a thread; if a direct call ever takes longer than :data:`SLOW_SECONDS`, it goes back
  to the thread for good. ``@rewards.inline`` (always direct) and ``Evaluator(fn,
  run_sync_in_thread=True)`` (always a thread) pin either.

A sync evaluator stuck in its thread cannot be stopped (Python cannot cancel a thread): at the
timeout its decision is released and the thread's eventual result ignored; it keeps one slot of
the limiter until it returns.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import anyio
import anyio.to_thread

from bandit_router._errors import StoreError, UnknownDecisionError
from bandit_router.core._loops import Background
from bandit_router.rewards import Evaluator

__all__ = [
    "DEFAULT_EVALUATOR_CONCURRENCY",
    "DEFAULT_EVALUATOR_TIMEOUT",
    "QUICK_PROBES",
    "QUICK_SECONDS",
    "SLOW_SECONDS",
    "WAIT_SECONDS",
    "ScoreJob",
    "ScoreObserver",
    "Scorer",
]

logger = logging.getLogger("bandit_router")

#: Seconds an evaluator may take per answer before its decision is released unscored.
DEFAULT_EVALUATOR_TIMEOUT: Final = 60.0
#: Evaluations running at once per router (and threads for sync evaluators).
DEFAULT_EVALUATOR_CONCURRENCY: Final = 16
#: Calls in a row under :data:`QUICK_SECONDS` after which a sync evaluator runs without a thread.
QUICK_PROBES: Final = 3
#: A sync evaluator call using under this many seconds of CPU counts as quick ...
QUICK_SECONDS: Final = 0.0005
#: ... if it also returned within this many seconds (in a thread, its wall time includes
#: waiting for the interpreter lock while the loop runs, so the bound is looser).
WAIT_SECONDS: Final = 0.02
#: A direct (threadless) call slower than this sends the evaluator back to its thread for good.
SLOW_SECONDS: Final = 0.005


class ScoreObserver(Protocol):
    """Where the outcome of a scoring is reported (the route's telemetry)."""

    def reward(
        self, score: float, evaluator_name: str = "reward", *, elapsed_s: float | None = None
    ) -> None:
        """The evaluator scored the answer and the reward was recorded."""

    def evaluator_error(
        self,
        exc: BaseException,
        evaluator_name: str = "reward",
        *,
        elapsed_s: float | None = None,
    ) -> None:
        """The evaluator failed (or timed out): no reward was recorded."""


class Settler(Protocol):
    """The bandit operations scoring needs (``Bandit`` has them)."""

    async def reward(self, decision_id: str, reward: object) -> Any:
        """Settle a decision with a reward."""

    async def release(self, decision_id: str) -> Any:
        """Settle a decision without counting anything."""


@dataclass(slots=True)
class ScoreJob:
    """One answer to score.

    Attributes:
        decision_id: The decision the score settles.
        arm: The arm that answered.
        arguments: What the evaluator may ask for (``inputs``, ``outputs``, ``arm``, ``run_id``,
            ``metadata``, ``latency_s``, ``usage``).
        observer: Where the outcome is reported.
    """

    decision_id: str
    arm: str
    arguments: Mapping[str, Any]
    observer: ScoreObserver


class Scorer:
    """Runs one router's evaluator off the answer's path and settles the decisions it scores.

    Args:
        evaluator: The router's evaluator.
        settler: Settles decisions (the router's ``Bandit``); async.
        settle_sync: Settles from a thread without an event loop: ``(decision_id, score or
            None) -> None``; ``None`` = release. Used by the sync faces for quick evaluators.
        timeout: Seconds per evaluation (``None``: no limit).
        concurrency: Evaluations at once, and threads for sync evaluators.
        name: The evaluator's name in spans.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        settler: Settler,
        settle_sync: Callable[[str, float | None], None],
        *,
        timeout: float | None = DEFAULT_EVALUATOR_TIMEOUT,
        concurrency: int = DEFAULT_EVALUATOR_CONCURRENCY,
        name: str = "reward",
    ) -> None:
        self.evaluator = evaluator
        self.name = name
        self._settler = settler
        self._settle_sync = settle_sync
        self._timeout = timeout
        self._concurrency = concurrency
        self.background = Background()
        self._lock = threading.Lock()
        #: Failures per arm (evaluator errors and timeouts), in this process.
        self.errors: dict[str, int] = {}
        mode = evaluator.mode
        # "direct" once a sync evaluator proved quick (or was marked inline); "thread" for good
        # once it was slow (or was asked to); "probe" while it is being timed.
        self._sync_mode = (
            "direct" if mode == "inline" else "thread" if mode == "thread" else "probe"
        )
        self._quick_streak = 0
        self._limiters: dict[int, anyio.CapacityLimiter] = {}
        self._semaphores: dict[int, anyio.Semaphore] = {}

    @property
    def direct(self) -> bool:
        """Whether the evaluator is called right after the answer, without a thread or task."""
        return self._sync_mode == "direct"

    # --- entry points ------------------------------------------------------------------------

    async def submit(self, job: ScoreJob) -> None:
        """Score ``job`` after the answer.

        At once if the evaluator is quick, else in the background of the current event loop.
        Never raises for the evaluator's sake.
        """
        if self._sync_mode == "direct":
            score = self._call_direct(job)
            if score is not None:
                await self._settle(job, score, 0.0)
            return
        self.background.spawn(lambda: self._run(job))

    def submit_sync(self, job: ScoreJob) -> None:
        """Score ``job`` from a sync caller: at once if quick, else on the portal loop."""
        if self._sync_mode == "direct":
            score = self._call_direct(job)
            if score is None:
                return
            try:
                self._settle_sync(job.decision_id, score)
            except UnknownDecisionError:
                _lost(job)
                return
            except StoreError as exc:
                _store_failed(job, exc)
                return
            job.observer.reward(score, self.name)
            return
        self.background.spawn_on_portal(self._run(job))

    async def aclose(self) -> None:
        """Wait until every answer submitted so far is scored (or its evaluation timed out)."""
        await self.background.wait()

    def close(self) -> None:
        """Sync face of :meth:`aclose` (from a thread without a running event loop)."""
        self.background.wait_sync()

    # --- the work ------------------------------------------------------------------------------

    def _call_direct(self, job: ScoreJob) -> float | None:
        """Call a quick sync evaluator here; ``None`` if it failed (its decision released)."""
        t0 = time.perf_counter()
        try:
            score = self.evaluator.call_sync(job.arguments)
        except Exception as exc:
            self._failed(job, exc, time.perf_counter() - t0)
            self._release_sync(job)
            return None
        elapsed = time.perf_counter() - t0
        if elapsed > SLOW_SECONDS and self.evaluator.mode != "inline":
            with self._lock:
                if self._sync_mode == "direct":
                    self._sync_mode = "thread"
                    logger.info(
                        "bandit_router: evaluator %s took %.1f ms; it runs in a worker thread "
                        "from now on",
                        self.name,
                        elapsed * 1e3,
                    )
        return score

    async def _run(self, job: ScoreJob) -> None:
        """Evaluate in the background (bounded, timed), then settle."""
        key = _backend_key()
        semaphore = self._semaphores.get(key)
        if semaphore is None:
            semaphore = self._semaphores[key] = anyio.Semaphore(self._concurrency)
        async with semaphore:
            t0 = time.perf_counter()
            try:
                with anyio.fail_after(self._timeout if self._timeout is not None else math.inf):
                    score = await self._evaluate(job, key)
            except TimeoutError:
                exc = TimeoutError(
                    f"evaluator {self.name} gave no score within evaluator_timeout="
                    f"{self._timeout} s"
                )
                self._failed(job, exc, time.perf_counter() - t0)
                await self._release(job)
                return
            except anyio.get_cancelled_exc_class():
                # The loop is shutting down (or the router closed): the reward is lost, the
                # decision must not stay in flight for its whole pending_ttl.
                with anyio.CancelScope(shield=True):
                    await self._release(job)
                raise
            except Exception as exc:
                self._failed(job, exc, time.perf_counter() - t0)
                await self._release(job)
                return
            await self._settle(job, score, time.perf_counter() - t0)

    async def _evaluate(self, job: ScoreJob, key: int) -> float:
        evaluator = self.evaluator
        if evaluator.mode == "async":
            return await evaluator(**job.arguments)
        if self._sync_mode == "direct":
            return evaluator.call_sync(job.arguments)
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = anyio.CapacityLimiter(self._concurrency)
        spent: list[float] = []
        score = await anyio.to_thread.run_sync(
            _timed, evaluator, job.arguments, spent, abandon_on_cancel=True, limiter=limiter
        )
        if self._sync_mode == "probe" and spent:
            self._probed(*spent)
        return score

    def _probed(self, cpu: float, wall: float) -> None:
        with self._lock:
            if self._sync_mode != "probe":
                return
            if cpu >= QUICK_SECONDS or wall >= WAIT_SECONDS:
                self._quick_streak = 0
                return
            self._quick_streak += 1
            if self._quick_streak >= QUICK_PROBES:
                self._sync_mode = "direct"

    async def _settle(self, job: ScoreJob, score: float, elapsed: float) -> None:
        try:
            await self._settler.reward(job.decision_id, score)
        except UnknownDecisionError:
            _lost(job)
            return
        except StoreError as exc:
            _store_failed(job, exc)
            return
        job.observer.reward(score, self.name, elapsed_s=elapsed)

    async def _release(self, job: ScoreJob) -> None:
        # Expired meanwhile, or the store is down: nothing left to free here.
        with contextlib.suppress(UnknownDecisionError, StoreError):
            await self._settler.release(job.decision_id)

    def _release_sync(self, job: ScoreJob) -> None:
        with contextlib.suppress(UnknownDecisionError, StoreError):
            self._settle_sync(job.decision_id, None)

    def _failed(self, job: ScoreJob, exc: BaseException, elapsed: float) -> None:
        with self._lock:
            self.errors[job.arm] = self.errors.get(job.arm, 0) + 1
        job.observer.evaluator_error(exc, self.name, elapsed_s=elapsed)
        logger.warning(
            "bandit_router: evaluator %s failed for arm %r (no reward counted): %s",
            self.name,
            job.arm,
            type(exc).__name__,
        )


def _timed(evaluator: Evaluator, arguments: Mapping[str, Any], spent: list[float]) -> float:
    """Call a sync evaluator in its thread, noting its CPU time and its wall time."""
    c0, t0 = time.thread_time(), time.perf_counter()
    try:
        return evaluator.call_sync(arguments)
    finally:
        spent.extend((time.thread_time() - c0, time.perf_counter() - t0))


def _backend_key() -> int:
    """One limiter per event loop: anyio's primitives belong to the loop that made them."""
    from bandit_router.core._loops import asyncio_loop

    loop = asyncio_loop()
    if loop is not None:
        return id(loop)
    import trio

    return id(trio.lowlevel.current_root_task())


def _lost(job: ScoreJob) -> None:
    # The decision expired while the arm answered or the judge worked (older than
    # pending_ttl, or evicted by max_pending newer ones): the answer was good, its reward is lost.
    logger.warning(
        "bandit_router: decision %r of arm %r expired before its reward; not counted "
        "(raise pending_ttl or max_pending)",
        job.decision_id,
        job.arm,
    )


def _store_failed(job: ScoreJob, exc: StoreError) -> None:
    logger.warning(
        "bandit_router: the store refused the reward of decision %r (arm %r): %s",
        job.decision_id,
        job.arm,
        type(exc).__name__,
    )
