"""Rewards forwarded to LangSmith as feedback on the router's run, in the background."""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from types import TracebackType
from typing import Any, Final, Protocol, runtime_checkable

import anyio.to_thread
import langsmith
from langsmith import utils as ls_utils

from bandit_router import ConfigurationError
from bandit_router.rewards import coerce_score

__all__ = ["FeedbackTarget", "LangSmithFeedback"]

_LOG: Final = logging.getLogger("bandit_router_langsmith")
_UNRESOLVED: Final = object()


@runtime_checkable
class FeedbackTarget(Protocol):
    """What :meth:`LangSmithFeedback.arecord` records a delayed reward into: a router."""

    async def arecord_feedback(self, run_id: uuid.UUID | str, score: object) -> None:
        """Record a delayed reward for the call ``run_id``."""
        ...

    def record_feedback(self, run_id: uuid.UUID | str, score: object) -> None:
        """Sync face of :meth:`arecord_feedback`."""
        ...


class LangSmithFeedback:
    """Sends rewards to LangSmith as feedback on the router's run id, off the request path.

    The router's run id is the LangChain run id of its call, which is also its run id in
    LangSmith when LangChain tracing is on: feedback lands on the trace of the call it scores.
    Sends happen in one background thread, in order; a failure (LangSmith down, a bad key) is
    logged and counted in :attr:`failed`, never raised into the router's call. At most
    ``max_pending`` sends wait; beyond that they are dropped and counted in :attr:`dropped`.

    Use it in two places:

    - ``langsmith_reward(evaluator, feedback=fb)`` forwards every inline evaluator result
      (its key, score, value and comment; source type ``model``);
    - ``await fb.arecord(router, run_id, score, key="user_score")`` records a delayed reward
      in the router and forwards it (source type ``api``).

    Args:
        client: The ``langsmith.Client`` to send with; default: one made on first use from
            the environment (``LANGSMITH_API_KEY``, ``LANGSMITH_ENDPOINT``).
        project_id: The id of the LangSmith project (tracing session) the router's runs are
            traced to. LangSmith wants it with run feedback.
        project_name: The project's name, resolved to its id once, on the first send. When
            neither is given: the project LangChain traces to (``LANGSMITH_PROJECT``, else
            ``"default"``).
        stop_after_attempt: Attempts per send (the client retries with back-off).
        max_pending: The most sends waiting at once.

    Raises:
        ConfigurationError: On an invalid argument.
    """

    def __init__(
        self,
        client: langsmith.Client | None = None,
        *,
        project_id: uuid.UUID | str | None = None,
        project_name: str | None = None,
        stop_after_attempt: int = 3,
        max_pending: int = 10_000,
    ) -> None:
        if client is not None and not isinstance(client, langsmith.Client):
            raise ConfigurationError(f"client must be a langsmith.Client, got {client!r}")
        for name, count in (
            ("stop_after_attempt", stop_after_attempt),
            ("max_pending", max_pending),
        ):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigurationError(f"{name} must be an integer >= 1, got {count!r}")
        self._client = client
        self._project_id: object = _UNRESOLVED if project_id is None else uuid.UUID(str(project_id))
        self._project_name = project_name
        self._attempts = stop_after_attempt
        self._max_pending = max_pending
        self._lock = threading.Lock()
        self._futures: set[Future[None]] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        #: Feedback records LangSmith accepted.
        self.sent = 0
        #: Feedback records that failed to send (logged).
        self.failed = 0
        #: Feedback records dropped because ``max_pending`` were already waiting.
        self.dropped = 0

    @property
    def client(self) -> langsmith.Client:
        """The LangSmith client (made from the environment on first use if none was given)."""
        with self._lock:
            if self._client is None:
                self._client = langsmith.Client()
            return self._client

    # --- sending ------------------------------------------------------------------------------

    def send(
        self,
        run_id: uuid.UUID | str,
        key: str,
        *,
        score: float | bool | None = None,
        value: Any = None,
        comment: str | None = None,
        correction: dict[str, Any] | None = None,
        source_type: str = "api",
        source_run_id: uuid.UUID | str | None = None,
        source_info: dict[str, Any] | None = None,
    ) -> None:
        """Queue one feedback record for the run ``run_id``; returns at once.

        Args:
            run_id: The router call's run id.
            key: The feedback key (the metric's name in LangSmith).
            score: The numeric score.
            value: A non-numeric value (a label).
            comment: An explanation (an LLM judge's reasoning).
            correction: What the right answer would have been.
            source_type: ``"api"`` (a person or an application) or ``"model"`` (an evaluator).
            source_run_id: The evaluator's own run, when it was traced.
            source_info: Extra information about the source.

        Raises:
            ConfigurationError: If ``key`` is empty, or the forwarder is closed.
        """
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"feedback key must be a non-empty string, got {key!r}")
        with self._lock:
            if self._closed:
                raise ConfigurationError("this LangSmithFeedback is closed")
            if len(self._futures) >= self._max_pending:
                self.dropped += 1
                _LOG.warning(
                    "LangSmith feedback %r for run %s dropped: %d sends already waiting",
                    key,
                    run_id,
                    self._max_pending,
                )
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="bandit-router-langsmith"
                )
            fut = self._executor.submit(
                self._post,
                run_id,
                key,
                score,
                value,
                comment,
                correction,
                source_type,
                source_run_id,
                source_info,
            )
            self._futures.add(fut)
        fut.add_done_callback(self._done)

    def _done(self, fut: Future[None]) -> None:
        with self._lock:
            self._futures.discard(fut)

    def _session(self, client: langsmith.Client) -> uuid.UUID | None:
        """The project id to send with, resolved from its name once (``None`` if unknown)."""
        if self._project_id is _UNRESOLVED:
            name = self._project_name or ls_utils.get_tracer_project()
            try:
                self._project_id = client.read_project(project_name=name).id
            except Exception as exc:
                _LOG.warning(
                    "LangSmith project %r not found (%s: %s): feedback is sent without its "
                    "project id; pass project_id= to LangSmithFeedback",
                    name,
                    type(exc).__name__,
                    exc,
                )
                self._project_id = None
        pid = self._project_id
        return pid if isinstance(pid, uuid.UUID) else None

    def _post(
        self,
        run_id: uuid.UUID | str,
        key: str,
        score: float | bool | None,
        value: Any,
        comment: str | None,
        correction: dict[str, Any] | None,
        source_type: str,
        source_run_id: uuid.UUID | str | None,
        source_info: dict[str, Any] | None,
    ) -> None:
        try:
            client = self.client
            client.create_feedback(
                run_id,
                key,
                score=score,
                value=value,
                comment=comment,
                correction=correction,
                feedback_source_type=source_type,
                source_run_id=source_run_id,
                source_info=source_info,
                session_id=self._session(client),
                stop_after_attempt=self._attempts,
            )
        except Exception as exc:
            with self._lock:
                self.failed += 1
            _LOG.warning(
                "LangSmith feedback %r for run %s failed: %s: %s",
                key,
                run_id,
                type(exc).__name__,
                exc,
            )
        else:
            with self._lock:
                self.sent += 1

    # --- delayed rewards ------------------------------------------------------------------------

    async def arecord(
        self,
        router: FeedbackTarget,
        run_id: uuid.UUID | str,
        score: object,
        *,
        key: str = "user_feedback",
        comment: str | None = None,
    ) -> None:
        """Record a delayed reward in ``router`` and forward it to LangSmith.

        The reward is recorded first; only a reward the router accepted is forwarded.

        Args:
            router: The router (``BanditRouterRunnable`` or anything with
                ``arecord_feedback``).
            run_id: The router call's run id.
            score: The reward: a number in [0, 1], a bool, ``{"score": ...}`` or ``.score``.
            key: The LangSmith feedback key.
            comment: An optional comment sent with it.

        Raises:
            InvalidRewardError: If the score is invalid (nothing is recorded or sent).
            UnknownDecisionError: If the run id is unknown, already scored or expired.
        """
        value = coerce_score(score)
        await router.arecord_feedback(run_id, value)
        self.send(run_id, key, score=value, comment=comment)

    def record(
        self,
        router: FeedbackTarget,
        run_id: uuid.UUID | str,
        score: object,
        *,
        key: str = "user_feedback",
        comment: str | None = None,
    ) -> None:
        """Sync face of :meth:`arecord`."""
        value = coerce_score(score)
        router.record_feedback(run_id, value)
        self.send(run_id, key, score=value, comment=comment)

    # --- lifecycle ------------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued record is sent (or failed).

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            True if nothing is left waiting.
        """
        with self._lock:
            futures = list(self._futures)
        if not futures:
            return True
        _, not_done = wait_futures(futures, timeout=timeout)
        return not not_done

    async def aflush(self, timeout: float | None = None) -> bool:
        """Async face of :meth:`flush` (waits in a worker thread)."""
        return await anyio.to_thread.run_sync(lambda: self.flush(timeout))

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds), then stop the thread."""
        with self._lock:
            self._closed = True
        self.flush(timeout)
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> LangSmithFeedback:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LangSmithFeedback(sent={self.sent}, failed={self.failed}, dropped={self.dropped})"
