"""ChatBanditRouter: routing and learning as a chat model, tools, structured output, traces."""

from __future__ import annotations

import uuid
from collections import Counter
from contextlib import nullcontext
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.callbacks.usage import get_usage_metadata_callback
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_core.tracers.context import collect_runs
from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
from langchain_core.tracers.schemas import Run
from pydantic import BaseModel, Field

from bandit_router import (
    AllArmsFailedError,
    BanditRouterRunnable,
    ChatBanditRouter,
    ConfigurationError,
    UnknownArmError,
)
from bandit_router.testing import FakeArm, ScriptedArm, is_right

pytestmark = pytest.mark.anyio


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


class Answer(BaseModel):
    """A number and why."""

    value: int = Field(description="the number")
    reason: str = Field(description="why")


class RecordingArm(ScriptedArm):
    """A scripted arm that remembers the keyword arguments and tools of each call."""

    seen: list[dict[str, Any]] = Field(default_factory=list)
    bound: list[tuple[list[str], Any]] = Field(default_factory=list)

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        self.bound.append(([getattr(t, "name", str(t)) for t in tools], tool_choice))
        return super().bind_tools(tools, tool_choice=tool_choice, **kwargs)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        self.seen.append({"stop": stop, **kw})
        return await super()._agenerate(messages, stop, run_manager, **kw)


def quality_router(**kwargs: Any) -> ChatBanditRouter:
    return ChatBanditRouter(
        arms={
            "good": FakeArm(quality=0.9, seed=1, model="good-1"),
            "bad": FakeArm(quality=0.2, seed=2),
        },
        reward=is_right,
        seed=3,
        **kwargs,
    )


# --- the constructor ---------------------------------------------------------------------------


def test_takes_every_argument_of_the_runnable_with_the_same_default() -> None:
    chat = ChatBanditRouter.model_fields
    for name, info in BanditRouterRunnable.model_fields.items():
        if name in ("arms",):
            continue
        assert name in chat, name
        assert chat[name].default == info.default or (
            chat[name].default_factory == info.default_factory
        ), name


def test_invalid_arguments_are_refused_by_the_same_checks() -> None:
    with pytest.raises(ValueError, match="arms"):  # pydantic wraps it, as for the runnable
        ChatBanditRouter(arms=[FakeArm()])
    with pytest.raises(ConfigurationError, match="max_attempts"):
        ChatBanditRouter(arms={"a": FakeArm()}, max_attempts=0)
    with pytest.raises(ConfigurationError, match="max_retries"):
        ChatBanditRouter(arms={"a": FakeArm()}, max_retries=-1)
    with pytest.raises(ConfigurationError, match="contradicts"):
        ChatBanditRouter(arms={"a": FakeArm()}, max_retries=1, max_attempts=5)
    with pytest.raises(ConfigurationError, match="temperature"):
        ChatBanditRouter(arms={"a": FakeArm()}, temperature=-1)


def test_max_retries_is_the_router_s_retries() -> None:
    assert ChatBanditRouter(arms={"a": FakeArm()}, max_retries=4).router.max_attempts == 5
    assert ChatBanditRouter(arms={"a": FakeArm()}).router.max_attempts == 3


def test_langsmith_params() -> None:
    router = ChatBanditRouter(arms={"a": FakeArm()}, temperature=0.2, max_tokens=50, stop=["x"])
    params = router._get_ls_params()
    assert params == {
        "ls_provider": "bandit_router",
        "ls_model_name": "bandit_router",
        "ls_model_type": "chat",
        "ls_temperature": 0.2,
        "ls_max_tokens": 50,
        "ls_stop": ["x"],
    }
    assert router._get_ls_params(model="a")["ls_model_name"] == "a"


# --- routing and learning ----------------------------------------------------------------------


async def test_learns_the_better_arm_and_says_who_answered() -> None:
    router = quality_router()
    answers = [await router.ainvoke("2 + 2?") for _ in range(300)]
    last = Counter(a.response_metadata["bandit_router"]["arm"] for a in answers[-100:])
    assert last["good"] > 80
    stats = await router.astatistics()
    assert stats["good"].pulls + stats["bad"].pulls == 300
    good = next(a for a in answers if a.response_metadata["bandit_router"]["arm"] == "good")
    assert good.response_metadata["model_name"] == "good-1"  # the arm's, not the router's
    assert good.usage_metadata == {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}


async def test_streams_learn_too_and_say_who_answered() -> None:
    router = quality_router()
    for _ in range(200):
        full: AIMessageChunk | None = None
        async for chunk in router.astream("2 + 2?"):
            full = chunk if full is None else full + chunk
    assert full is not None
    assert full.content in ("right", "wrong")
    assert full.response_metadata["bandit_router"]["arm"] in ("good", "bad")
    assert full.usage_metadata is not None
    assert full.usage_metadata["input_tokens"] == 10
    stats = await router.astatistics()
    assert stats["good"].pulls > stats["bad"].pulls
    assert stats["good"].pulls + stats["bad"].pulls == 200


def test_sync_faces_and_batch() -> None:
    router = quality_router()
    assert router.invoke("hi").content in ("right", "wrong")
    assert "".join(str(c.content) for c in router.stream("hi")) in ("right", "wrong")
    assert len(router.batch(["a", "b", "c"])) == 3
    assert sum(s.pulls for s in router.statistics().values()) == 5


@pytest.mark.parametrize("stream", [False, True])
async def test_the_run_id_is_the_decision_id_for_delayed_feedback(stream: bool) -> None:
    router = ChatBanditRouter(arms={"a": FakeArm(), "b": FakeArm()}, seed=1)
    run_id = uuid.uuid4()
    if stream:
        full: Any = None
        async for chunk in router.astream("hi", config={"run_id": run_id}):
            full = chunk if full is None else full + chunk
    else:
        full = await router.ainvoke("hi", config={"run_id": run_id})
    assert full.response_metadata["bandit_router"]["decision_id"] == str(run_id)
    assert sum(s.in_flight for s in (await router.astatistics()).values()) == 1
    await router.arecord_feedback(run_id, 1.0)
    stats = await router.astatistics()
    assert sum(s.pulls for s in stats.values()) == 1
    assert sum(s.in_flight for s in stats.values()) == 0


async def test_model_names_an_arm_and_pins_it() -> None:
    router = quality_router()
    for _ in range(5):
        out = await router.ainvoke("hi", model="bad")
        assert out.response_metadata["bandit_router"]["arm"] == "bad"
    pinned = await router.ainvoke("hi", config={"configurable": {router.arm_key: "bad"}})
    assert pinned.response_metadata["bandit_router"]["arm"] == "bad"
    with pytest.raises(UnknownArmError, match="gpt-9"):
        await router.ainvoke("hi", model="gpt-9")


async def test_falls_back_and_counts_the_failure() -> None:
    router = ChatBanditRouter(
        arms={"broken": FakeArm(failure_rate=1.0), "fine": FakeArm()},
        priors=None,
        reward=is_right,
        seed=0,
    )
    outs = [await router.ainvoke("hi") for _ in range(10)]
    assert all(o.response_metadata["bandit_router"]["arm"] == "fine" for o in outs)
    stats = await router.astatistics()
    assert stats["broken"].failures >= 1

    dead = ChatBanditRouter(arms={"x": FakeArm(failure_rate=1.0)}, reward=is_right)
    with pytest.raises(AllArmsFailedError):
        await dead.ainvoke("hi")


async def test_standard_fields_reach_the_arm() -> None:
    arm = RecordingArm()
    router = ChatBanditRouter(arms={"a": arm}, temperature=0.5, max_tokens=20, stop=["zz"])
    await router.ainvoke("hi")
    assert arm.seen[-1] == {"stop": ["zz"], "temperature": 0.5, "max_tokens": 20}
    await router.ainvoke("hi", stop=["yy"], temperature=0.1)
    assert arm.seen[-1] == {"stop": ["yy"], "temperature": 0.1, "max_tokens": 20}
    plain = RecordingArm()
    await ChatBanditRouter(arms={"a": plain}).ainvoke("hi")
    assert plain.seen[-1] == {"stop": None}  # nothing set: nothing imposed on the arm


# --- tools and structured output ---------------------------------------------------------------


async def test_each_arm_binds_the_tools_itself_on_each_call() -> None:
    a, b = RecordingArm(model="a"), RecordingArm(model="b")
    router = ChatBanditRouter(arms={"a": a, "b": b}, reward=lambda: 1.0, seed=0)
    with_tools = router.bind_tools([multiply], tool_choice="any")
    for _ in range(6):
        out = await with_tools.ainvoke("What is 6 times 7?")
        assert out.tool_calls[0]["name"] == "multiply"
        assert out.tool_calls[0]["args"] == {"a": 6, "b": 7}
    assert len(a.bound) + len(b.bound) == 6  # converted per call, by the chosen arm only
    assert all(bound == (["multiply"], "any") for bound in a.bound + b.bound)
    assert a.bound
    assert b.bound
    # The bound router is the router: the statistics moved together.
    await router.aclose()  # the rewards are scored after the answers
    stats = await router.astatistics()
    assert sum(s.pulls for s in stats.values()) == 6


async def test_tool_calls_stream_through() -> None:
    router = ChatBanditRouter(arms={"a": ScriptedArm(model="a")})
    full: Any = None
    async for chunk in router.bind_tools([multiply]).astream("What is 3 times 4?"):
        full = chunk if full is None else full + chunk
    assert full.tool_calls[0]["args"] == {"a": 3, "b": 4}
    assert full.chunk_position == "last"


@pytest.mark.parametrize("method", ["function_calling", "json_schema", "json_mode"])
async def test_structured_output_shares_learning(method: str) -> None:
    router = ChatBanditRouter(
        arms={"a": ScriptedArm(model="a"), "b": ScriptedArm(model="b")}, reward=lambda: 1.0
    )
    structured = router.with_structured_output(Answer, method=method)
    prompt = "Say 42 with a 'value' and a 'reason'."
    if method == "json_mode":
        # JSON mode has no schema: the prompt must name the keys (and value must parse as int).
        prompt = "Give 'reason' as JSON."
        structured = router.with_structured_output(
            {"title": "R", "type": "object", "properties": {"reason": {"type": "string"}}},
            method=method,
        )
    out = await structured.ainvoke(prompt)
    assert isinstance(out, Answer | dict)
    if isinstance(out, Answer):
        assert out.value == 42
    await router.ainvoke("hi")
    await router.aclose()  # the rewards are scored after the answers
    stats = await router.astatistics()
    assert sum(s.pulls for s in stats.values()) == 2


async def test_an_arm_whose_output_does_not_parse_fails_over() -> None:
    garbage = ScriptedArm(model="garbage", responses=["not json"])
    router = ChatBanditRouter(
        arms={"garbage": garbage, "good": ScriptedArm(model="good")},
        reward=lambda: 1.0,
        priors=None,
        seed=0,
    )
    structured = router.with_structured_output(Answer, method="json_schema")
    for _ in range(5):
        out = await structured.ainvoke("Say 42.")
        assert isinstance(out, Answer)
        assert out.value == 42
    stats = await router.astatistics()
    assert stats["garbage"].failures >= 1


# --- callbacks, traces, streaming events -------------------------------------------------------


class Counting(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts = 0
        self.ends = 0
        self.tokens: list[str] = []

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.starts += 1

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self.ends += 1

    def on_llm_new_token(self, token: Any, **kwargs: Any) -> None:
        self.tokens.append(str(token))


@pytest.mark.parametrize("face", ["invoke", "ainvoke", "stream", "astream"])
async def test_callbacks_see_one_chat_model_call(face: str) -> None:
    router = ChatBanditRouter(arms={"a": ScriptedArm(reply="hello world")}, reward=lambda: 1.0)
    handler = Counting()
    config: Any = {"callbacks": [handler]}
    with get_usage_metadata_callback() as usage:
        if face == "invoke":
            router.invoke("hi", config=config)
        elif face == "ainvoke":
            await router.ainvoke("hi", config=config)
        elif face == "stream":
            list(router.stream("hi", config=config))
        else:
            _ = [c async for c in router.astream("hi", config=config)]
    assert (handler.starts, handler.ends) == (1, 1)
    if face in ("stream", "astream"):
        assert "".join(handler.tokens) == "hello world"  # each token once
    [(model, counted)] = usage.usage_metadata.items()  # tokens counted once, under the arm
    assert model == "scripted"
    assert counted["output_tokens"] == 2


def _walk(run: Run) -> list[Run]:
    return [run, *(r for c in run.child_runs for r in _walk(c))]


@pytest.mark.parametrize("face", ["invoke", "ainvoke", "stream", "astream"])
@pytest.mark.parametrize("how", ["config", "context"])
async def test_arm_runs_are_children_of_the_router_run_in_traces(face: str, how: str) -> None:
    router = ChatBanditRouter(arms={"a": ScriptedArm()}, reward=lambda: 1.0)
    tracer = RunCollectorCallbackHandler()
    config: Any = {"callbacks": [tracer]} if how == "config" else {}
    with collect_runs() if how == "context" else nullcontext(tracer) as collector:
        if face == "invoke":
            router.invoke("hi", config)
        elif face == "ainvoke":
            await router.ainvoke("hi", config)
        elif face == "stream":
            list(router.stream("hi", config))
        else:
            _ = [c async for c in router.astream("hi", config)]
    [root] = collector.traced_runs
    assert root.name == "bandit_router"
    assert root.run_type == "llm"
    [child] = root.child_runs
    assert child.run_type == "llm"
    assert child.parent_run_id == root.id
    assert child.trace_id == root.trace_id
    assert {"bandit_router:arm:a", "retry:attempt:1", "nostream"} <= set(child.tags or [])


async def test_arm_runs_nest_inside_a_chain_trace() -> None:
    router = ChatBanditRouter(arms={"a": ScriptedArm()}, reward=lambda: 1.0)
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | router
    with collect_runs() as collector:
        _ = [c async for c in chain.astream({"q": "hi"})]
    [root] = collector.traced_runs
    names = [r.name for r in _walk(root)]
    assert names == ["RunnableSequence", "ChatPromptTemplate", "bandit_router", "ScriptedArm"]


async def test_astream_events_streams_each_token_once() -> None:
    router = ChatBanditRouter(arms={"a": ScriptedArm(reply="one two three four")})
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | router
    events = [e async for e in chain.astream_events({"q": "hi"}, version="v2")]
    streamed = [e for e in events if e["event"] == "on_chat_model_stream"]
    assert {e["name"] for e in streamed} == {"bandit_router"}
    assert "".join(str(e["data"]["chunk"].content) for e in streamed) == "one two three four"
    starts = [e["name"] for e in events if e["event"] == "on_chat_model_start"]
    assert starts == ["bandit_router"]


async def test_astream_events_of_invoke_inside_a_chain_streams_once() -> None:
    router = ChatBanditRouter(arms={"a": ScriptedArm(reply="one two three four")})

    async def call(q: str) -> AIMessage:
        return await router.ainvoke([HumanMessage(q)])

    from langchain_core.runnables import RunnableLambda

    events = [e async for e in RunnableLambda(call).astream_events("hi", version="v2")]
    streamed = [e for e in events if e["event"] == "on_chat_model_stream"]
    assert "".join(str(e["data"]["chunk"].content) for e in streamed) == "one two three four"


async def test_langgraph_streams_each_token_once() -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph

    router = ChatBanditRouter(
        arms={
            "a": ScriptedArm(reply="alpha beta gamma"),
            "b": ScriptedArm(reply="alpha beta gamma"),
        },
        reward=lambda: 1.0,
    )

    async def model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await router.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState).add_node("model", model)
    graph.add_edge(START, "model")
    graph.add_edge("model", END)
    app = graph.compile()
    tokens: list[str] = []
    async for item in app.astream({"messages": [HumanMessage("hi")]}, stream_mode="messages"):
        chunk, meta = item
        assert isinstance(chunk, BaseMessage)
        assert isinstance(meta, dict)
        assert meta["langgraph_node"] == "model"
        tokens.append(str(chunk.content))
    assert "".join(tokens) == "alpha beta gamma"
    await router.aclose()  # the rewards are scored after the answers
    assert sum(s.pulls for s in (await router.astatistics()).values()) == 1


async def test_create_agent_calls_tools_through_the_router() -> None:
    from langchain.agents import create_agent

    router = ChatBanditRouter(
        arms={"a": ScriptedArm(model="a"), "b": ScriptedArm(model="b")}, reward=lambda: 1.0
    )
    agent = create_agent(router, tools=[multiply])
    state = await agent.ainvoke({"messages": [HumanMessage("What is 6 times 7?")]})
    kinds = [type(m).__name__ for m in state["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"]
    assert state["messages"][2].content == "42"
    assert "42" in state["messages"][-1].content
    await router.aclose()  # the rewards are scored after the answers
    stats = await router.astatistics()
    assert sum(s.pulls for s in stats.values()) == 2


def test_a_sync_langgraph_graph_streams_each_token_once() -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph

    router = ChatBanditRouter(arms={"a": ScriptedArm(reply="alpha beta gamma")})

    def model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [router.invoke(state["messages"])]}

    graph = StateGraph(MessagesState).add_node("model", model)
    graph.add_edge(START, "model")
    graph.add_edge("model", END)
    tokens: list[str] = []
    for item in graph.compile().stream({"messages": [HumanMessage("hi")]}, stream_mode="messages"):
        chunk, _meta = item
        assert isinstance(chunk, BaseMessage)
        tokens.append(str(chunk.content))
    assert "".join(tokens) == "alpha beta gamma"


async def test_an_agent_streams_the_router_s_tokens_once() -> None:
    from langchain.agents import create_agent

    router = ChatBanditRouter(
        arms={"a": ScriptedArm(model="a", chunk_size=3), "b": ScriptedArm(model="b", chunk_size=3)},
        reward=lambda: 1.0,
    )
    agent = create_agent(router, tools=[multiply])
    texts: list[str] = []
    tool_args: list[str] = []
    async for item in agent.astream(
        {"messages": [HumanMessage("What is 6 times 7?")]}, stream_mode="messages"
    ):
        chunk, meta = item
        assert isinstance(meta, dict)
        if meta["langgraph_node"] == "model" and isinstance(chunk, AIMessageChunk):
            texts.append(str(chunk.content))
            tool_args.extend(str(c["args"] or "") for c in chunk.tool_call_chunks)
    assert "".join(tool_args) == '{"a": 6, "b": 7}'  # the tool call, streamed once
    assert "".join(texts) == "The tool returned: 42"  # the answer, streamed once


async def test_the_evaluator_sees_the_messages_and_the_arm_s_answer() -> None:
    seen: list[tuple[Any, Any, str]] = []

    def reward(inputs: Any, outputs: Any, arm: str) -> float:
        seen.append((inputs, outputs, arm))
        return 1.0

    router = ChatBanditRouter(arms={"a": ScriptedArm(reply="yes")}, reward=reward)
    await router.ainvoke([HumanMessage("question")])
    await router.aclose()  # the evaluator runs after the answer
    [(inputs, outputs, arm)] = seen
    assert [m.content for m in inputs] == ["question"]
    assert outputs.content == "yes"
    assert arm == "a"


async def test_a_stream_closed_early_or_a_cancelled_call_releases_its_slot() -> None:
    import anyio

    router = ChatBanditRouter(arms={"a": ScriptedArm(reply="one two three four", chunk_size=3)})
    stream = router.astream("hi")
    await stream.__anext__()
    assert (await router.astatistics())["a"].in_flight == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert (await router.astatistics())["a"].in_flight == 0

    hanging = ChatBanditRouter(arms={"h": FakeArm(hang=True)}, timeout=None)
    with anyio.move_on_after(0.2):
        await hanging.ainvoke("hi")
    stats = await hanging.astatistics()
    assert stats["h"].in_flight == 0
    assert stats["h"].failures == 0  # a caller's cancellation teaches nothing


def test_a_sync_stream_closed_early_releases_its_slot() -> None:
    router = ChatBanditRouter(arms={"a": ScriptedArm(reply="one two three four", chunk_size=3)})
    stream = router.stream("hi")
    next(stream)
    stream.close()  # type: ignore[attr-defined]
    assert router.statistics()["a"].in_flight == 0
