"""The local OpenAI-compatible server is faithful: plain ``ChatOpenAI`` (no router) over HTTP.

These pin what langchain-openai and the openai SDK do against it (usage, tool calls, structured
output, retries, Retry-After, timeouts, stalls, event loops): the baseline the router's tests
compare with. Timing assertions are lower bounds (a sleep lasts at least its delay) or generous
upper bounds, so a busy machine cannot fail them.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import operator
import threading
import time
from collections.abc import Iterator
from functools import reduce
from typing import Any, Literal

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("langchain_openai")

import anyio
import openai
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.support.fixtures import chat_openai
from tests.support.openai_server import (
    Answer,
    Drop,
    Hang,
    OpenAIServer,
    RateLimited,
    ServerError,
    Slow,
    StallAfter,
    ToolCall,
)

# Bounds for things that should take milliseconds: only a hang reaches them.
BOUND = 10.0


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class Capital(BaseModel):
    """A country's capital."""

    country: str
    capital: str
    population_millions: float


def total(chunks: list[Any]) -> AIMessageChunk:
    message = reduce(operator.add, chunks)
    assert isinstance(message, AIMessageChunk)
    return message


def usage_chunks(chunks: list[Any]) -> list[int]:
    return [i for i, c in enumerate(chunks) if isinstance(c, AIMessageChunk) and c.usage_metadata]


# -- plain answers -----------------------------------------------------------------------------


def test_invoke_answers_with_usage_and_is_recorded(openai_server: OpenAIServer) -> None:
    openai_server.script("good", Answer(text="Paris.", usage=(12, 3)))
    message = chat_openai(openai_server, "good").invoke("Capital of France?")
    assert isinstance(message, AIMessage)
    assert message.content == "Paris."
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == 12
    assert message.usage_metadata["output_tokens"] == 3
    assert message.usage_metadata["total_tokens"] == 15
    [request] = openai_server.requests("good")
    assert request.path.endswith("/v1/chat/completions")
    assert not request.stream
    assert request.retry_count == 0
    assert request.headers["authorization"] == "Bearer test"
    assert request.body is not None
    assert request.body["messages"] == [{"role": "user", "content": "Capital of France?"}]


@pytest.mark.anyio
async def test_ainvoke_answers_with_usage(openai_server: OpenAIServer) -> None:
    openai_server.script("good", Answer(text="Paris.", usage=(12, 3)))
    message = await chat_openai(openai_server, "good").ainvoke("Capital of France?")
    assert message.content == "Paris."
    assert isinstance(message, AIMessage)
    assert message.usage_metadata is not None
    assert message.usage_metadata["total_tokens"] == 15
    assert len(openai_server.requests("good")) == 1


def test_models_get_their_own_scripts_and_the_default(openai_server: OpenAIServer) -> None:
    openai_server.script("a", Answer(text="from a"))
    assert chat_openai(openai_server, "a").invoke("x").content == "from a"
    assert chat_openai(openai_server, "b").invoke("x").content == "Answer from b."
    openai_server.script_default(Answer(text="default"))
    assert chat_openai(openai_server, "c").invoke("x").content == "default"
    assert [r.model for r in openai_server.requests()] == ["a", "b", "c"]


def test_no_usage_answer_has_no_usage_metadata(openai_server: OpenAIServer) -> None:
    openai_server.script("quiet", Answer(usage=None))
    message = chat_openai(openai_server, "quiet").invoke("x")
    assert isinstance(message, AIMessage)
    assert message.usage_metadata is None


def test_a_sequence_plays_one_step_per_request_then_repeats_the_last(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script("seq", [Answer(text="one"), Answer(text="two")])
    chat = chat_openai(openai_server, "seq")
    assert [chat.invoke("x").content for _ in range(3)] == ["one", "two", "two"]


def test_slow_answers_after_its_delay(openai_server: OpenAIServer) -> None:
    openai_server.script("slow", Slow(0.3))
    start = time.monotonic()
    assert chat_openai(openai_server, "slow").invoke("x").content == "Answer from slow."
    assert time.monotonic() - start >= 0.3


def test_reset_forgets_scripts_and_records_and_moves_the_base_url(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script("a", Answer(text="scripted"))
    old = chat_openai(openai_server, "a")
    assert old.invoke("x").content == "scripted"
    url = openai_server.base_url
    openai_server.reset()
    assert openai_server.base_url != url
    assert openai_server.requests() == []
    assert old.invoke("x").content == "Answer from a."  # the old URL is still served


@pytest.mark.anyio
async def test_concurrent_requests_are_all_answered_and_recorded(
    openai_server: OpenAIServer,
) -> None:
    chat = chat_openai(openai_server, "busy")
    with anyio.fail_after(BOUND * 3):
        answers = await asyncio.gather(*(chat.ainvoke(f"q{i}") for i in range(50)))
    assert {a.content for a in answers} == {"Answer from busy."}
    assert len(openai_server.requests("busy")) == 50


# -- streaming and usage -----------------------------------------------------------------------


async def collect(chat: ChatOpenAI, use_async: bool, **kwargs: Any) -> list[BaseMessageChunk]:
    if use_async:
        return [chunk async for chunk in chat.astream("x", **kwargs)]
    return await anyio.to_thread.run_sync(lambda: list(chat.stream("x", **kwargs)))


@pytest.mark.anyio
@pytest.mark.parametrize("use_async", [False, True], ids=["stream", "astream"])
async def test_a_stream_without_stream_usage_has_no_usage(
    openai_server: OpenAIServer, use_async: bool
) -> None:
    openai_server.script("s", Answer(text="one two three"))
    chunks = await collect(chat_openai(openai_server, "s"), use_async)
    assert total(chunks).content == "one two three"
    assert len([c for c in chunks if c.content]) == 3  # one event per word
    assert usage_chunks(chunks) == []
    # With a base_url, ChatOpenAI does not ask for stream usage by default.
    [request] = openai_server.requests("s")
    assert request.stream
    assert not request.include_usage


@pytest.mark.anyio
@pytest.mark.parametrize("use_async", [False, True], ids=["stream", "astream"])
@pytest.mark.parametrize("where", ["call", "field"])
async def test_stream_usage_puts_usage_on_one_final_chunk(
    openai_server: OpenAIServer, use_async: bool, where: str
) -> None:
    openai_server.script("s", Answer(text="one two three", usage=(7, 3)))
    if where == "call":
        chunks = await collect(chat_openai(openai_server, "s"), use_async, stream_usage=True)
    else:
        chunks = await collect(chat_openai(openai_server, "s", stream_usage=True), use_async)
    [at] = usage_chunks(chunks)
    # Only content-free chunks may follow the usage chunk (langchain-core 1.x appends an empty
    # chunk with chunk_position="last"): "usage on the last chunk" means "on one late chunk".
    assert all(not c.content and not getattr(c, "usage_metadata", None) for c in chunks[at + 1 :])
    message = total(chunks)
    assert message.content == "one two three"
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == 7
    assert message.usage_metadata["output_tokens"] == 3
    [request] = openai_server.requests("s")
    assert request.include_usage


@pytest.mark.anyio
async def test_a_server_that_ignores_stream_options_sends_no_usage(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script("s", Answer(stream_usage="never"))
    chunks = await collect(chat_openai(openai_server, "s", stream_usage=True), True)
    assert openai_server.requests("s")[0].include_usage
    assert usage_chunks(chunks) == []
    assert total(chunks).usage_metadata is None


# -- tool calls --------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["invoke", "ainvoke", "stream", "astream"])
async def test_tool_calls_whole_and_streamed(openai_server: OpenAIServer, mode: str) -> None:
    openai_server.script(
        "tools", Answer(tool_calls=[ToolCall(arguments={"city": "Paris"}, id="call_w")])
    )
    chat = chat_openai(openai_server, "tools").bind_tools([get_weather])
    if mode == "invoke":
        message: AIMessage = await anyio.to_thread.run_sync(chat.invoke, "Weather in Paris?")
    elif mode == "ainvoke":
        message = await chat.ainvoke("Weather in Paris?")
    else:
        if mode == "stream":
            chunks = await anyio.to_thread.run_sync(lambda: list(chat.stream("Weather?")))
        else:
            chunks = [c async for c in chat.astream("Weather?")]
        # The arguments arrive in several deltas.
        assert sum(bool(c.tool_call_chunks) for c in chunks if isinstance(c, AIMessageChunk)) > 2
        message = total(chunks)
    assert message.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_w", "type": "tool_call"}
    ]
    [request] = openai_server.requests("tools")
    assert request.body is not None
    assert request.body["tools"][0]["function"]["name"] == "get_weather"


def test_tools_offered_but_not_scripted_give_text(openai_server: OpenAIServer) -> None:
    chat = chat_openai(openai_server, "plain").bind_tools([get_weather])
    message = chat.invoke("Hello")
    assert isinstance(message, AIMessage)
    assert message.tool_calls == []
    assert message.content == "Answer from plain."


def test_scripted_tool_calls_without_tools_are_a_loud_400(openai_server: OpenAIServer) -> None:
    openai_server.script("tools", Answer(tool_calls=[ToolCall("get_weather")]))
    with pytest.raises(openai.BadRequestError, match="no tools"):
        chat_openai(openai_server, "tools", max_retries=0).invoke("x")


# -- structured output -------------------------------------------------------------------------

PARIS = {"country": "France", "capital": "Paris", "population_millions": 2.1}


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["json_schema", "function_calling", "json_mode"])
async def test_structured_output_parses_and_hides_usage(
    openai_server: OpenAIServer, method: Literal["json_schema", "function_calling", "json_mode"]
) -> None:
    openai_server.script("so", Answer(data=PARIS, usage=(20, 8)))
    chat = chat_openai(openai_server, "so")
    parsed = await chat.with_structured_output(Capital, method=method).ainvoke("France?")
    assert parsed == Capital.model_validate(PARIS)

    raw = await chat.with_structured_output(Capital, method=method, include_raw=True).ainvoke("?")
    assert raw["parsed"] == Capital.model_validate(PARIS)
    assert raw["parsing_error"] is None
    assert isinstance(raw["raw"], AIMessage)
    assert raw["raw"].usage_metadata is not None
    assert raw["raw"].usage_metadata["total_tokens"] == 28

    body = openai_server.requests("so")[0].body
    assert body is not None
    if method == "function_calling":
        assert body["tool_choice"]["function"]["name"] == "Capital"
    else:
        expected = "json_schema" if method == "json_schema" else "json_object"
        assert body["response_format"]["type"] == expected


def test_structured_output_without_data_follows_the_schema(openai_server: OpenAIServer) -> None:
    chat = chat_openai(openai_server, "any")
    assert isinstance(chat.with_structured_output(Capital).invoke("x"), Capital)
    schema = chat.with_structured_output(Capital, method="function_calling")
    assert isinstance(schema.invoke("x"), Capital)


# -- errors, retries and Retry-After -----------------------------------------------------------


def test_429_is_retried_by_the_default_client_honouring_retry_after(
    openai_server: OpenAIServer,
) -> None:
    # 0.6 s: longer than the SDK's own first back-off (at most 0.5 s), so the gaps show which.
    openai_server.script("limited", RateLimited(retry_after=0.6))
    with pytest.raises(openai.RateLimitError) as caught:
        chat_openai(openai_server, "limited").invoke("x")
    requests = openai_server.requests("limited")
    assert [r.retry_count for r in requests] == [0, 1, 2]  # max_retries=2 by default
    gaps = [b.time - a.time for a, b in itertools.pairwise(requests)]
    assert all(gap >= 0.6 for gap in gaps), gaps
    error = caught.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "0.6"
    assert isinstance(error.body, dict)
    assert error.body["code"] == "rate_limit_exceeded"


@pytest.mark.anyio
async def test_429_async_with_retries_off_is_one_request(openai_server: OpenAIServer) -> None:
    openai_server.script("limited", RateLimited(retry_after=5))
    with pytest.raises(openai.RateLimitError):
        await chat_openai(openai_server, "limited", max_retries=0).ainvoke("x")
    assert len(openai_server.requests("limited")) == 1


def test_rate_limit_error_is_also_langchains_model_rate_limit_error(
    openai_server: OpenAIServer,
) -> None:
    exceptions = pytest.importorskip("langchain_core.exceptions")
    if not hasattr(exceptions, "ModelRateLimitError"):
        pytest.skip("this langchain-core has no ModelRateLimitError")
    openai_server.script("limited", RateLimited())
    with pytest.raises(exceptions.ModelRateLimitError) as caught:
        chat_openai(openai_server, "limited", max_retries=0).invoke("x")
    assert caught.value.is_retryable


def test_500_is_retried_then_raised(openai_server: OpenAIServer) -> None:
    openai_server.script("broken", ServerError(500, retry_after=0.01))
    with pytest.raises(openai.InternalServerError) as caught:
        chat_openai(openai_server, "broken").invoke("x")
    assert caught.value.status_code == 500
    assert len(openai_server.requests("broken")) == 3


def test_a_transient_500_is_hidden_by_the_clients_retry(openai_server: OpenAIServer) -> None:
    openai_server.script("flaky", [ServerError(503, retry_after=0.01), Answer(text="ok")])
    assert chat_openai(openai_server, "flaky").invoke("x").content == "ok"
    assert [r.retry_count for r in openai_server.requests("flaky")] == [0, 1]


def test_a_copy_with_retries_off_shares_the_pool_and_leaves_the_original(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script("limited", RateLimited(retry_after=0.01))
    chat = chat_openai(openai_server, "limited")
    root, aroot = chat.root_client, chat.root_async_client
    no_retry_root = root.with_options(max_retries=0)
    no_retry_aroot = aroot.with_options(max_retries=0)
    quiet = chat.model_copy(
        update={
            "max_retries": 0,
            "root_client": no_retry_root,
            "client": no_retry_root.chat.completions,
            "root_async_client": no_retry_aroot,
            "async_client": no_retry_aroot.chat.completions,
        }
    )
    with pytest.raises(openai.RateLimitError):
        quiet.invoke("x")
    assert len(openai_server.requests("limited")) == 1
    with pytest.raises(openai.RateLimitError):
        chat.invoke("x")  # the user's object still retries
    requests = openai_server.requests("limited")
    assert len(requests) == 4
    assert chat.max_retries is None
    assert chat.root_client is root
    # One connection served all four: the copy's client uses the same httpx pool.
    assert len({r.client_port for r in requests}) == 1


def test_drop_is_a_connection_error(openai_server: OpenAIServer) -> None:
    openai_server.script("gone", Drop())
    with pytest.raises(openai.APIConnectionError) as caught:
        chat_openai(openai_server, "gone", max_retries=0).invoke("x")
    assert not isinstance(caught.value, openai.APITimeoutError)
    assert len(openai_server.requests("gone")) == 1


# -- hangs and stalls --------------------------------------------------------------------------


def test_a_hang_times_out_on_the_client(openai_server: OpenAIServer) -> None:
    openai_server.script("stuck", Hang())
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError) as caught:
        chat_openai(openai_server, "stuck", timeout=0.5, max_retries=0).invoke("x")
    assert 0.5 <= time.monotonic() - start < BOUND
    assert not hasattr(caught.value, "response")
    assert caught.value.request is not None
    assert len(openai_server.wait_for_requests("stuck", 1, timeout=BOUND)) == 1


def test_the_default_client_retries_timeouts_too(openai_server: OpenAIServer) -> None:
    openai_server.script("stuck", Hang())
    with pytest.raises(openai.APITimeoutError):
        chat_openai(openai_server, "stuck", timeout=0.2).invoke("x")
    requests = openai_server.wait_for_requests("stuck", 3, timeout=BOUND)
    assert [r.retry_count for r in requests] == [0, 1, 2]


@pytest.mark.anyio
async def test_a_hang_times_out_on_the_async_client(openai_server: OpenAIServer) -> None:
    openai_server.script("stuck", Hang())
    with anyio.fail_after(BOUND), pytest.raises(openai.APITimeoutError):
        await chat_openai(openai_server, "stuck", timeout=0.5, max_retries=0).ainvoke("x")


def test_reset_releases_a_hanging_request(openai_server: OpenAIServer) -> None:
    openai_server.script("stuck", Hang())
    chat = chat_openai(openai_server, "stuck", timeout=60, max_retries=0)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            chat.invoke("x")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    openai_server.wait_for_requests("stuck", 1, timeout=BOUND)
    openai_server.reset()
    thread.join(BOUND)
    assert not thread.is_alive()
    [error] = errors
    assert isinstance(error, openai.APIConnectionError)


@pytest.fixture
def own_server() -> Iterator[OpenAIServer]:
    """A server of the test's own, to show that it stops while a request is stalled."""
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.anyio
async def test_a_stream_stalling_after_two_chunks_holds_the_consumer(
    own_server: OpenAIServer,
) -> None:
    own_server.script("stalls", StallAfter(chunks=2, answer=Answer(text="one two three")))
    chat = chat_openai(own_server, "stalls")  # default client: no timeout shorter than minutes
    stream = aiter(chat.astream("x"))
    with anyio.fail_after(BOUND):
        first = [await anext(stream), await anext(stream)]
    assert [c.content for c in first] == ["", "one"]
    outcome: list[BaseException] = []

    async def third() -> None:
        try:
            await anext(stream)
        except Exception as exc:
            outcome.append(exc)

    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(third)
            await anyio.sleep(0.5)
            assert outcome == []  # still waiting for the third chunk
            # Stopping the server ends the stall: the stream breaks off, the server stops.
            await anyio.to_thread.run_sync(own_server.stop)
    [error] = outcome
    # A connection closed mid-stream is a connection error (and not a timeout).
    assert isinstance(error, openai.APIConnectionError), repr(error)
    assert not isinstance(error, openai.APITimeoutError)


@pytest.mark.anyio
async def test_stream_chunk_timeout_ends_an_async_stall(openai_server: OpenAIServer) -> None:
    openai_server.script("stalls", StallAfter(chunks=2))
    chat = chat_openai(openai_server, "stalls", stream_chunk_timeout=0.5)
    chunks: list[BaseMessageChunk] = []

    async def consume() -> None:
        async for chunk in chat.astream("x"):
            chunks.append(chunk)  # noqa: PERF401 - what arrived before the error is the point

    with anyio.fail_after(BOUND), pytest.raises(TimeoutError) as caught:
        await consume()
    assert len(chunks) == 2
    assert type(caught.value).__name__ == "StreamChunkTimeoutError"
    assert len(openai_server.requests("stalls")) == 1


def test_the_client_timeout_bounds_each_read_not_the_stream(openai_server: OpenAIServer) -> None:
    # A stall ends with the client's read timeout...
    openai_server.script("stalls", StallAfter(chunks=2))
    chat = chat_openai(openai_server, "stalls", timeout=0.5, max_retries=0)
    chunks: list[BaseMessageChunk] = []
    with pytest.raises(openai.APITimeoutError):
        chunks.extend(chat.stream("x"))
    assert len(chunks) == 2
    # ...but a stream that keeps trickling outlives the same timeout.
    openai_server.script("trickle", Answer(text="a b c d e f", chunk_delay=0.15))
    chat = chat_openai(openai_server, "trickle", timeout=0.5, max_retries=0)
    start = time.monotonic()
    assert total(list(chat.stream("x"))).content == "a b c d e f"
    assert time.monotonic() - start > 0.5


# -- event loops -------------------------------------------------------------------------------


def test_invoke_then_asyncio_run_then_invoke_works(openai_server: OpenAIServer) -> None:
    chat = chat_openai(openai_server, "mixed")
    assert chat.invoke("1").content == "Answer from mixed."
    assert asyncio.run(chat.ainvoke("2")).content == "Answer from mixed."
    assert chat.invoke("3").content == "Answer from mixed."
    assert len(openai_server.requests("mixed")) == 3


# The connections dropped unclosed warn when collected; ignored (then closed) in this test only.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_second_event_loop_breaks_the_shared_async_pool(openai_server: OpenAIServer) -> None:
    """langchain-openai's default async pool (one per base URL and timeout in the process)
    keeps a connection of the loop that opened it; the next call on another loop, even through
    a new ``ChatOpenAI``, fails on it (and drops it, unclosed). The router must not run arms'
    async methods on a loop of its own."""
    chat = chat_openai(openai_server, "mixed")
    assert asyncio.run(chat.ainvoke("1")).content == "Answer from mixed."
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        asyncio.run(chat_openai(openai_server, "other").ainvoke("2"))
    # The failed call's request was sent (the client failed on reading the answer).
    assert len(openai_server.wait_for_requests(None, 2, timeout=BOUND)) == 2
    # The failure dropped the stale connection: the next loop opens one and works...
    assert asyncio.run(chat.ainvoke("3")).content == "Answer from mixed."
    # ...and leaves it stale for the loop after.
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        asyncio.run(chat.ainvoke("4"))
    # The sync pool is not tied to a loop; another timeout means another async pool.
    assert chat.invoke("5").content == "Answer from mixed."
    fresh = chat_openai(openai_server, "mixed", timeout=30)
    assert asyncio.run(fresh.ainvoke("6")).content == "Answer from mixed."
    gc.collect()  # the dropped connections are closed here, not in a later test


def test_an_async_pool_in_use_on_a_live_loop_fails_on_another(
    openai_server: OpenAIServer,
) -> None:
    """What a sync face that runs arms' async methods on a background loop does to a user who
    also calls ``asyncio.run(arm.ainvoke(...))``: the other loop reuses the pooled connection
    of the live background loop, whose reads are served by that loop's thread. It fails with
    "is bound to a different event loop" (issue 14, item 1) unless the answer happened to be
    read before the wait: a race, so only the reuse is asserted."""
    chat = chat_openai(openai_server, "portal")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        answer = asyncio.run_coroutine_threadsafe(chat.ainvoke("1"), loop).result(BOUND)
        assert answer.content == "Answer from portal."
        try:
            asyncio.run(asyncio.wait_for(chat.ainvoke("2"), BOUND))
        except RuntimeError as exc:
            assert "is bound to a different event loop" in str(exc)  # noqa: PT017
        first, second = openai_server.wait_for_requests("portal", 2, timeout=BOUND)
        assert first.client_port == second.client_port  # one connection, two loops
        answer = asyncio.run_coroutine_threadsafe(chat.ainvoke("3"), loop).result(BOUND)
        assert answer.content == "Answer from portal."  # the background loop still works
        # Close the pool on the loop that owns its connections.
        asyncio.run_coroutine_threadsafe(chat.root_async_client.close(), loop).result(BOUND)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(BOUND)
        loop.close()


# -- the server itself -------------------------------------------------------------------------


def test_waiting_for_requests_that_never_come_is_bounded(openai_server: OpenAIServer) -> None:
    with pytest.raises(TimeoutError, match="0 of 1 requests for 'nobody'"):
        openai_server.wait_for_requests("nobody", 1, timeout=0.05)


def test_the_server_restarts_and_stops_twice() -> None:
    server = OpenAIServer(default=Answer(text="mine"))
    with server:
        assert chat_openai(server, "m", max_retries=0).invoke("x").content == "mine"
    server.stop()  # stopping a stopped server does nothing
    with server:
        assert chat_openai(server, "m", max_retries=0).invoke("x").content == "mine"
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
