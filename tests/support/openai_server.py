"""A local OpenAI-compatible chat-completions server for tests, scripted per model name.

The server speaks just enough of OpenAI's ``POST /v1/chat/completions`` for
``langchain_openai.ChatOpenAI`` (and the ``openai`` SDK under it) to be used unmodified over a
real socket: JSON answers, SSE streams (with the final usage chunk only when the request carries
``stream_options: {"include_usage": true}``), tool calls (whole and streamed as argument deltas),
structured output (``response_format`` ``json_schema`` / ``json_object``, or a forced
``tool_choice``), and OpenAI's error bodies and headers (429 with ``Retry-After``, 5xx).

It runs on 127.0.0.1 on a free port, in a background thread with its own event loop (aiohttp), so
sync tests, anyio tests and ``asyncio.run`` in a test all reach the same server. Every wait
inside is bounded; a request the script leaves hanging is released (its connection closed, with
no answer) by :meth:`OpenAIServer.reset` and by :meth:`OpenAIServer.stop`, so it never blocks
shutdown.

Scripting
---------
Behaviour is chosen by the request's ``model`` field, so one server serves several arms::

    server.script("good", Answer(text="Paris.", usage=(10, 5)))
    server.script("limited", RateLimited(retry_after=2.0))   # 429 + Retry-After + error JSON
    server.script("broken", ServerError(500))
    server.script("stuck", Hang())                           # accepted, never answered
    server.script("gone", Drop())                            # connection closed, no answer
    server.script("stalls", StallAfter(chunks=2))            # streams 2 SSE events, then stalls
    server.script("slow", Slow(0.5))                         # Answer() after 0.5 s
    server.script("flaky", [ServerError(500), Answer()])     # fails once, then answers
    server.script("quiet", Answer(usage=None))               # no usage anywhere
    server.script_default(Answer(text="hi"))                 # models without a script

A list is played one step per request; its last step then repeats. Models without a script get
the default (``Answer()``, whose text names the model: ``"Answer from good."``).

:class:`Answer` decides the shape from the request, as OpenAI does:

- ``response_format`` ``json_schema`` or ``json_object``: the content is ``json.dumps(data)``;
  with ``data=None`` a minimal instance of the request's JSON schema (every property, the
  first enum value, ``"text"``, ``1``, ``True`` ...), or ``{}`` for ``json_object``.
- ``tools`` with ``tool_calls`` scripted: a ``tool_calls`` message (``finish_reason
  "tool_calls"``); a :class:`ToolCall` without a name calls the request's first tool. Scripted
  tool calls on a request without tools are a 400 (a test bug, said loudly).
- ``tools`` with ``tool_choice`` forcing one function (``with_structured_output(...,
  method="function_calling")``): a call of that function whose arguments are ``data`` (or an
  instance of its parameter schema).
- otherwise plain text. ``usage=(prompt_tokens, completion_tokens)`` or ``None``;
  ``stream_usage`` says when a stream carries it (``"when_asked"``, as OpenAI; ``"never"``, as
  many compatible servers; ``"always"``).

A stream is: one event with ``{"role": "assistant"}``, one event per word of the text (or per
slice of the tool-call arguments), one event with ``finish_reason``, the usage event (empty
``choices``) when it applies, then ``data: [DONE]``. ``StallAfter(chunks=n)`` counts these
events; on a non-streaming request it sends the status line and headers, then stalls.

Recording
---------
Every request is recorded (thread-safe) as a :class:`RecordedRequest`: model, path, monotonic
arrival time, whether it streams, whether it asked for stream usage, the openai SDK's
``x-stainless-retry-count`` header, all headers, the JSON body and the client's port (one port,
one pooled connection). ``server.requests("limited")`` lists them; after a call that failed on
the client's side, ``server.wait_for_requests("stuck", 1, timeout=5)`` waits (bounded) until the
server has seen them. A client that gives up (timeout, closed stream) closes its connection,
which cancels the request's handler, as in a production server.

What langchain-openai does that a router must handle
----------------------------------------------------
Read in the installed ``langchain-openai`` 1.8.1, ``openai`` 3.60.0 (on ``httpx2``) and
``langchain-core`` 1.8.3, and each checked over real sockets by ``tests/http/test_server.py``:

- **Usage.** ``invoke``/``ainvoke``: ``AIMessage.usage_metadata`` from the JSON ``usage``
  (``None`` when the server sends none). Streams carry usage only when the request has
  ``stream_options.include_usage``, which ``ChatOpenAI`` sends when ``stream_usage=True`` (field
  or call kwarg; ``BaseChatOpenAI._should_stream_usage``). ``validate_environment`` turns the
  field on by default *only* without ``base_url``/``OPENAI_BASE_URL``/proxy/custom clients: an
  arm with a ``base_url`` streams **without usage** unless its user opted in. The usage is on
  the chunk made from the usage event (``choices: []``), which is *not* the last chunk:
  langchain-core 1.x (``BaseChatModel.stream``/``astream``) appends an empty chunk with
  ``chunk_position="last"``; sum the chunks (``AIMessageChunk.__add__`` merges usage). A server
  that ignores ``stream_options`` sends none even when asked.
  ``with_structured_output`` returns the parsed object only; with ``include_raw=True`` the
  ``"raw"`` ``AIMessage`` has ``usage_metadata`` (``json_schema``, ``function_calling`` and
  ``json_mode`` alike).
- **Clients and retries.** ``BaseChatOpenAI.validate_environment`` (a pydantic
  ``model_validator(mode="after")``) builds ``root_client = openai.OpenAI(max_retries=...)``,
  ``client = root_client.chat.completions`` and the async pair ``root_async_client`` /
  ``async_client`` once, at construction; ``max_retries=None`` (the field's default) leaves
  the SDK's ``DEFAULT_MAX_RETRIES = 2``. Chat calls go through ``client``/``async_client``;
  ``response_format`` calls through ``root_client.chat.completions.parse`` /
  ``root_client.beta.chat.completions.stream`` (the Responses API through
  ``root_client.responses``), so a retry-free copy must replace all four fields. There is no
  public LangChain way; ``openai.OpenAI.copy`` (alias ``with_options``,
  ``lib/_client_auth.synccopy``/``asynccopy``) keeps ``http_client or self._client``, the
  **same httpx pool**, so ``chat.model_copy(update={"root_client": r, "client":
  r.chat.completions, "root_async_client": a, "async_client": a.chat.completions,
  "max_retries": 0})`` with ``r = chat.root_client.with_options(max_retries=0)`` (``a``
  likewise) turns retries off for the router's calls without touching the user's object or
  opening sockets (tested: one request, and the original still makes three over the same
  connection). The SDK (``SyncAPIClient.request``/``AsyncAPIClient.request``,
  ``BaseClient._should_retry``) retries 408, 409, 429, >= 500, connection errors **and
  timeouts**, numbering them in ``x-stainless-retry-count`` (0 for a fresh call: the server
  tells client retries from router attempts). ``_calculate_retry_timeout`` sleeps
  ``retry-after-ms``/``Retry-After`` when ``0 < value <= 120`` s, else 0.5 s * 2**n (jitter
  -25 %, cap 8 s); a ``Retry-After`` above 120 s is not retried at all.
- **Errors.** ``_handle_openai_api_error`` re-raises the SDK's errors as subclasses of both
  the SDK's class and ``langchain_core.exceptions``' (``OpenAIRateLimitError(
  openai.RateLimitError, ModelRateLimitError)``, ``OpenAIAPIError(openai.InternalServerError,
  ModelAPIError)``, ``OpenAITimeoutError(openai.APITimeoutError, ModelTimeoutError)``,
  ``OpenAIConnectionError(openai.APIConnectionError, ModelConnectionError)``;
  ``ModelError.is_retryable``; these exist in langchain-core 1.x, not 0.3). Status errors
  carry ``status_code``, ``response`` (``exc.response.headers["retry-after"]``), ``body``
  (the ``error`` object) and ``request_id``; timeouts and connection errors carry only
  ``request``. A connection closed mid-stream is an ``APIConnectionError``.
- **Timeouts.** ``timeout`` becomes httpx's per-operation timeout: it bounds each read, so a
  stall (also mid-stream, sync or async) ends in ``APITimeoutError`` (retried like any
  timeout: a hung arm costs ``max_retries + 1`` requests), but a stream that keeps trickling
  outlives it. Without ``timeout`` the SDK's ``DEFAULT_TIMEOUT`` is 600 s. Async streams
  also have ``stream_chunk_timeout`` (default 120 s): ``StreamChunkTimeoutError``, a plain
  ``TimeoutError`` subclass, not an openai error.
- **Shared pools and event loops.** Without ``http_client``/``http_async_client``,
  ``_client_utils._get_default_httpx_client``/``_get_default_async_httpx_client`` return an
  ``lru_cache``-d client per ``(base_url, timeout, socket options)``: all ``ChatOpenAI``
  objects with the same base URL and timeout in the process share one sync and one async pool
  (limits: 1,000 connections, 100 kept alive for 5 s). The async client is not bound to a loop,
  but each pooled connection belongs to the loop that opened it. ``invoke``, then
  ``asyncio.run(ainvoke)``, then ``invoke`` works (the sync pool is separate). A *second*
  ``asyncio.run(ainvoke)``, even through a new ``ChatOpenAI`` with the same base URL, sends its
  request over the dead loop's connection and fails with ``RuntimeError("Event loop is
  closed")`` (not an openai error), dropping the connection unclosed (one failure per stale
  connection). If the first loop is still running (a background "portal" loop), the other
  loop fails with ``RuntimeError("... is bound to a different event loop")``, or succeeds by
  luck when the answer was read before the wait: a race.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias

from aiohttp import web

__all__ = [
    "Answer",
    "Drop",
    "Hang",
    "OpenAIServer",
    "RateLimited",
    "RecordedRequest",
    "ServerError",
    "Slow",
    "StallAfter",
    "Step",
    "ToolCall",
]

# How long shutdown waits for a handler before cancelling it: handlers that stall are released
# first, so this only bounds a bug.
_SHUTDOWN_GRACE = 2.0


@dataclass(frozen=True)
class ToolCall:
    """A tool call the server answers with.

    Attributes:
        name: The function to call; ``None`` calls the request's first tool.
        arguments: The call's arguments (sent JSON-encoded, as OpenAI does).
        id: The call's id; ``None`` numbers it (``call_1``, ...).
    """

    name: str | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Answer:
    """A successful answer, shaped by the request (text, tool calls or structured output).

    Attributes:
        text: The content; ``None`` means ``"Answer from <model>."``.
        usage: ``(prompt_tokens, completion_tokens)``, or ``None`` for no usage anywhere.
        latency: Seconds before the response starts.
        chunk_delay: Seconds between stream events.
        tool_calls: Tool calls to answer with when the request offers tools.
        data: The JSON value for structured output (``None``: an instance of the schema).
        stream_usage: When a stream carries the usage event: ``"when_asked"`` (OpenAI's
            behaviour), ``"never"`` or ``"always"``.
    """

    text: str | None = None
    usage: tuple[int, int] | None = (10, 5)
    latency: float = 0.0
    chunk_delay: float = 0.0
    tool_calls: Sequence[ToolCall] = ()
    data: Any = None
    stream_usage: Literal["when_asked", "never", "always"] = "when_asked"


@dataclass(frozen=True)
class RateLimited:
    """HTTP 429 with OpenAI's ``rate_limit_exceeded`` error body.

    Attributes:
        retry_after: The ``Retry-After`` header in seconds (``None``: no header).
        retry_after_ms: The ``retry-after-ms`` header (``None``: no header).
    """

    retry_after: float | None = 1.0
    retry_after_ms: float | None = None


@dataclass(frozen=True)
class ServerError:
    """An HTTP error with OpenAI's error body (any status; 500 by default).

    Attributes:
        status: The HTTP status.
        message: The error message.
        retry_after: The ``Retry-After`` header in seconds (``None``: no header, so the openai
            SDK backs off 0.5 s, 1 s, ... with jitter).
    """

    status: int = 500
    message: str = "The server had an error while processing your request."
    retry_after: float | None = None


@dataclass(frozen=True)
class Hang:
    """Accept the request and never answer (until the server is reset or stopped)."""


@dataclass(frozen=True)
class Drop:
    """Accept the request, then close the connection without answering."""


@dataclass(frozen=True)
class StallAfter:
    """Stream ``chunks`` SSE events of ``answer``, then stall (until reset or stop).

    A non-streaming request gets the status line and headers, then nothing.

    Attributes:
        chunks: How many stream events are sent before the stall.
        answer: The answer whose events are sent.
    """

    chunks: int = 2
    answer: Answer = Answer(text="one two three four five six")


@dataclass(frozen=True)
class Slow:
    """Wait ``delay`` seconds, then behave as ``then``.

    Attributes:
        delay: Seconds before ``then`` starts.
        then: What follows the delay.
    """

    delay: float
    then: Step = Answer()


Step: TypeAlias = Answer | RateLimited | ServerError | Hang | Drop | StallAfter | Slow


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request the server received.

    Attributes:
        model: The body's ``model`` (``None`` when absent or the body is not JSON).
        path: The URL path.
        time: ``time.monotonic()`` when the request arrived.
        stream: Whether the body asked for a stream.
        include_usage: Whether it asked for ``stream_options.include_usage``.
        retry_count: The openai SDK's ``x-stainless-retry-count`` header, if sent.
        headers: The headers, names in lower case.
        body: The JSON body (``None`` when it is not JSON).
        client_port: The client's TCP port: requests with the same port came over the same
            connection (pool reuse).
    """

    model: str | None
    path: str
    time: float
    stream: bool
    include_usage: bool
    retry_count: int | None
    headers: Mapping[str, str]
    body: Mapping[str, Any] | None
    client_port: int | None


class _Script:
    """The steps scripted for one model, played one per request; the last one repeats."""

    def __init__(self, steps: Sequence[Step]) -> None:
        if not steps:
            raise ValueError("a script needs at least one step")
        self._steps = tuple(steps)
        self._next = 0

    def take(self) -> Step:
        step = self._steps[min(self._next, len(self._steps) - 1)]
        self._next += 1
        return step


class OpenAIServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1, scripted per model.

    Use as a context manager (or :meth:`start`/:meth:`stop`); see the module docstring.

    Args:
        default: What models without a script get.
    """

    def __init__(self, default: Step | Sequence[Step] = Answer()) -> None:
        self._lock = threading.Lock()
        self._seen = threading.Condition(self._lock)
        self._initial_default = _as_steps(default)
        self._default = _Script(self._initial_default)
        self._scripts: dict[str, _Script] = {}
        self._records: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        # Set (and replaced) on reset and stop: every stalled handler waits on the one current
        # when its request arrived.
        self._release: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._port = 0
        self._generation = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server's root URL (``http://127.0.0.1:<port>``)."""
        if not self._port:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client as ``base_url``: ``<url>/r<n>/v1``, new on each reset.

        Every path ending in ``/v1/chat/completions`` is served; the ``r<n>`` segment only makes
        the URL differ after each :meth:`reset`, because ``langchain-openai`` shares one cached
        connection pool per base URL in the process, and an async pool's connections belong to
        the event loop that opened them (a later test's loop cannot reuse them).
        """
        return f"{self.url}/r{self._generation}/v1"

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving in a background thread; returns once the port accepts connections."""
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        self._started.clear()
        self._error = None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            self._port = sock.getsockname()[1]
        except BaseException:
            sock.close()
            raise
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"openai-server-{self._port}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"the test server did not start within {timeout} s")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError("the test server failed to start") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Release stalled requests, close every connection and end the thread (bounded)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"the test server did not stop within {timeout} s")
        self._thread = None
        self._port = 0
        if self._error is not None:
            raise RuntimeError("the test server crashed") from self._error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting and records ---------------------------------------------------------------

    def script(self, model: str, behaviour: Step | Sequence[Step]) -> None:
        """Script what requests for ``model`` get (a list: one step per request, last repeats)."""
        with self._lock:
            self._scripts[model] = _Script(_as_steps(behaviour))

    def script_default(self, behaviour: Step | Sequence[Step]) -> None:
        """Script what requests for models without their own script get."""
        with self._lock:
            self._default = _Script(_as_steps(behaviour))

    def reset(self, timeout: float = 10.0) -> None:
        """Forget scripts and records, restore the first default, release stalled requests.

        Released requests have their connections closed without an answer. :attr:`base_url`
        changes (clients built before keep working).
        """
        with self._lock:
            self._generation += 1
            self._scripts.clear()
            self._records.clear()
            self._default = _Script(self._initial_default)
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._new_release(), loop).result(timeout)

    def requests(self, model: str | None = None) -> list[RecordedRequest]:
        """The requests received so far (for ``model``, or all), oldest first."""
        with self._lock:
            return [r for r in self._records if model is None or r.model == model]

    def wait_for_requests(
        self, model: str | None, count: int, timeout: float = 10.0
    ) -> list[RecordedRequest]:
        """Wait until at least ``count`` requests (for ``model``, or all) arrived; return them.

        Raises:
            TimeoutError: Fewer arrived within ``timeout`` seconds.
        """

        def enough() -> bool:
            return sum(model is None or r.model == model for r in self._records) >= count

        with self._seen:
            if not self._seen.wait_for(enough, timeout):
                seen = sum(model is None or r.model == model for r in self._records)
                raise TimeoutError(
                    f"{seen} of {count} requests for {model!r} arrived within {timeout} s"
                )
        return self.requests(model)

    # -- the server thread -------------------------------------------------------------------

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:
            self._error = exc
        finally:
            sock.close()  # already closed by the server unless it failed to start
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                self._loop = None
                loop.close()
                self._started.set()

    async def _serve(self, sock: socket.socket) -> None:
        self._stopping = asyncio.Event()
        self._release = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation: a client that gives up (timeout, cancelled stream) closes its
        # connection, and that cancels the handler, as in a production server.
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_GRACE,
            handler_cancellation=True,
        )
        await runner.setup()
        try:
            # A deep backlog: burst tests open thousands of connections at once.
            await web.SockSite(runner, sock, backlog=4096).start()
            self._started.set()
            await self._stopping.wait()
            self._release.set()
        finally:
            await runner.cleanup()

    async def _new_release(self) -> None:
        assert self._release is not None
        self._release.set()
        self._release = asyncio.Event()

    async def _stall(self, request: web.Request) -> web.StreamResponse:
        """Wait for reset/stop, then close the connection without an answer."""
        assert self._release is not None
        await self._release.wait()
        return _drop(request)

    # -- handlers ----------------------------------------------------------------------------

    def _record(self, request: web.Request, body: Mapping[str, Any] | None) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        retry = headers.get("x-stainless-retry-count")
        body = body if isinstance(body, Mapping) else None
        options = body.get("stream_options") if body else None
        peer = request.transport.get_extra_info("peername") if request.transport else None
        record = RecordedRequest(
            model=body.get("model") if body else None,
            path=request.path,
            time=time.monotonic(),
            stream=bool(body.get("stream")) if body else False,
            include_usage=bool(isinstance(options, Mapping) and options.get("include_usage")),
            retry_count=int(retry) if retry is not None and retry.isdigit() else None,
            headers=headers,
            body=body,
            client_port=peer[1] if isinstance(peer, tuple) else None,
        )
        with self._seen:
            self._records.append(record)
            self._seen.notify_all()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and request.path.endswith("/v1/chat/completions"):
            return await self._chat_completions(request)
        self._record(request, None)
        return _error(
            404, f"Unknown path {request.method} {request.path}.", "invalid_request_error"
        )

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            self._record(request, None)
            return _error(400, "The body is not JSON.", "invalid_request_error")
        self._record(request, body)
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _error(400, "The body needs a string 'model'.", "invalid_request_error")
        model: str = body["model"]
        with self._lock:
            step = self._scripts.get(model, self._default).take()
        return await self._play(step, request, body, model)

    async def _play(
        self, step: Step, request: web.Request, body: dict[str, Any], model: str
    ) -> web.StreamResponse:
        if isinstance(step, Slow):
            await asyncio.sleep(step.delay)
            return await self._play(step.then, request, body, model)
        if isinstance(step, RateLimited):
            headers = {}
            if step.retry_after is not None:
                headers["Retry-After"] = f"{step.retry_after:g}"
            if step.retry_after_ms is not None:
                headers["retry-after-ms"] = f"{step.retry_after_ms:g}"
            return _error(
                429,
                f"Rate limit reached for {model}. Please try again later.",
                "requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if isinstance(step, ServerError):
            retry = {} if step.retry_after is None else {"Retry-After": f"{step.retry_after:g}"}
            return _error(step.status, step.message, "server_error", headers=retry)
        if isinstance(step, Hang):
            return await self._stall(request)
        if isinstance(step, Drop):
            return _drop(request)
        answer = step.answer if isinstance(step, StallAfter) else step
        stall_after = step.chunks if isinstance(step, StallAfter) else None
        try:
            message = _message(answer, body, model)
        except _ScriptError as exc:
            return _error(400, str(exc), "invalid_request_error")
        if answer.latency:
            await asyncio.sleep(answer.latency)
        rid = next(self._ids)
        if body.get("stream"):
            return await self._stream(request, body, model, rid, answer, message, stall_after)
        if stall_after is not None:
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            return await self._stall(request)
        completion: dict[str, Any] = {
            "id": f"chatcmpl-{rid}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "refusal": None, **message.whole()},
                    "logprobs": None,
                    "finish_reason": message.finish_reason,
                }
            ],
            "system_fingerprint": None,
        }
        if answer.usage is not None:
            completion["usage"] = _usage(answer.usage)
        return web.json_response(completion, headers={"x-request-id": f"req_{rid}"})

    async def _stream(
        self,
        request: web.Request,
        body: Mapping[str, Any],
        model: str,
        rid: int,
        answer: Answer,
        message: _Message,
        stall_after: int | None,
    ) -> web.StreamResponse:
        options = body.get("stream_options")
        asked = isinstance(options, Mapping) and bool(options.get("include_usage"))
        with_usage = answer.usage is not None and (
            answer.stream_usage == "always" or (answer.stream_usage == "when_asked" and asked)
        )
        head = {
            "id": f"chatcmpl-{rid}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            event: dict[str, Any] = {
                **head,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if asked:  # OpenAI sends "usage": null on every event once usage is asked for
                event["usage"] = None
            return event

        events = [chunk({"role": "assistant", **message.first_delta()})]
        events += [chunk(delta) for delta in message.deltas()]
        events.append(chunk({}, message.finish_reason))
        if with_usage:
            assert answer.usage is not None
            events.append({**head, "choices": [], "usage": _usage(answer.usage)})

        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "x-request-id": f"req_{rid}",
            }
        )
        await response.prepare(request)
        for sent, event in enumerate(events):
            if stall_after is not None and sent >= stall_after:
                return await self._stall(request)
            if sent and answer.chunk_delay:
                await asyncio.sleep(answer.chunk_delay)
            await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        if stall_after is not None and stall_after >= len(events):
            return await self._stall(request)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


# -- answers ---------------------------------------------------------------------------------


class _ScriptError(Exception):
    """The script asks for something the request does not allow."""


@dataclass(frozen=True)
class _Message:
    """The assistant message an answer makes for one request."""

    content: str | None
    tool_calls: tuple[dict[str, Any], ...]

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    def whole(self) -> dict[str, Any]:
        message: dict[str, Any] = {"content": self.content}
        if self.tool_calls:
            message["tool_calls"] = list(self.tool_calls)
        return message

    def first_delta(self) -> dict[str, Any]:
        return {"content": None} if self.tool_calls else {"content": ""}

    def deltas(self) -> list[dict[str, Any]]:
        if not self.tool_calls:
            return [{"content": piece} for piece in re.findall(r"\s*\S+", self.content or "")]
        deltas: list[dict[str, Any]] = []
        for index, call in enumerate(self.tool_calls):
            arguments: str = call["function"]["arguments"]
            # The name and id come first with empty arguments, then the arguments in slices.
            deltas.append(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                }
            )
            step = max(1, math.ceil(len(arguments) / 3))
            deltas.extend(
                {
                    "tool_calls": [
                        {"index": index, "function": {"arguments": arguments[i : i + step]}}
                    ]
                }
                for i in range(0, len(arguments), step)
            )
        return deltas


def _message(answer: Answer, body: Mapping[str, Any], model: str) -> _Message:
    response_format = body.get("response_format")
    tools = [t for t in body.get("tools") or () if isinstance(t, Mapping)]
    if isinstance(response_format, Mapping) and response_format.get("type") in (
        "json_schema",
        "json_object",
    ):
        data = answer.data
        if data is None:
            schema = (response_format.get("json_schema") or {}).get("schema")
            data = _instance(schema, schema) if isinstance(schema, Mapping) else {}
        return _Message(json.dumps(data), ())
    if answer.tool_calls:
        if not tools:
            raise _ScriptError("the script answers with tool calls but the request has no tools")
        calls = tuple(
            _tool_call(call.name or tools[0]["function"]["name"], call.arguments, call.id, n)
            for n, call in enumerate(answer.tool_calls, start=1)
        )
        return _Message(None, calls)
    forced = _forced_function(body.get("tool_choice"))
    if tools and forced is not None:
        data = answer.data
        if data is None:
            spec: Mapping[str, Any] = next(
                (t["function"] for t in tools if t["function"]["name"] == forced), {}
            )
            schema = spec.get("parameters") or {}
            data = _instance(schema, schema)
        return _Message(None, (_tool_call(forced, data, None, 1),))
    return _Message(answer.text if answer.text is not None else f"Answer from {model}.", ())


def _forced_function(tool_choice: Any) -> str | None:
    if isinstance(tool_choice, Mapping) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        return name if isinstance(name, str) else None
    return None


def _tool_call(name: str, arguments: Any, call_id: str | None, n: int) -> dict[str, Any]:
    return {
        "id": call_id or f"call_{n}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def _instance(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """A minimal value valid for a JSON schema (the subset LangChain's schemas use)."""
    if "$ref" in schema:
        ref: str = schema["$ref"]
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return _instance(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return _instance(options[0], root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: _instance(sub, root) for name, sub in properties.items()}
    if kind == "array":
        items = schema.get("items")
        return [_instance(items, root)] if isinstance(items, Mapping) else []
    return {"string": "text", "integer": 1, "number": 1.0, "boolean": True, "null": None}.get(
        kind if isinstance(kind, str) else "string", "text"
    )


def _usage(usage: tuple[int, int]) -> dict[str, Any]:
    prompt, completion = usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def _error(
    status: int,
    message: str,
    kind: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _drop(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer (handler cancellation then ends the handler)."""
    transport = request.transport
    if transport is not None:
        transport.close()
    # aiohttp writes nothing for a response to a closed connection.
    return web.Response(status=499)


def _as_steps(behaviour: Step | Sequence[Step]) -> tuple[Step, ...]:
    if isinstance(behaviour, Sequence):
        return tuple(behaviour)
    return (behaviour,)
