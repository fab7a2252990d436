"""The router's fast path when nobody listens: no chain run configured, arms called directly.

``_nobody_listens`` answers, without building a callback manager, whether LangChain's
configuration would have a handler. These tests pin its answer to the real configuration's
in every case that adds one, and check what the arms receive either way.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, ClassVar

import pytest
from langchain_core.callbacks import AsyncCallbackHandler, AsyncCallbackManager
from langchain_core.globals import set_debug
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langchain_core.runnables.config import ensure_config, get_async_callback_manager_for_config
from langchain_core.tracers.context import (
    _configure_hooks,
    collect_runs,
    register_configure_hook,
    tracing_v2_callback_var,
)
from langsmith import tracing_context

from bandit_router import BanditRouterRunnable
from bandit_router.langchain.arms import nobody_listens as _nobody_listens
from bandit_router.langchain.arms import unobserved as _unobserved
from bandit_router.testing import FakeArm, ScriptedArm, is_right

from .test_router import Recorder

pytestmark = pytest.mark.anyio


@contextmanager
def tracer_var() -> Iterator[None]:
    """What ``tracing_v2_enabled()`` sets, with a handler that sends nothing anywhere."""
    token = tracing_v2_callback_var.set(Recorder())  # type: ignore[arg-type]
    try:
        yield
    finally:
        tracing_v2_callback_var.reset(token)


@contextmanager
def debug_on() -> Iterator[None]:
    set_debug(True)
    try:
        yield
    finally:
        set_debug(False)


_HOOK_VAR: ContextVar[AsyncCallbackHandler | None] = ContextVar("bandit_test_hook", default=None)


@contextmanager
def custom_hook() -> Iterator[None]:
    """An instrumentation's configure hook (as OpenInference and others register)."""
    register_configure_hook(_HOOK_VAR, True)
    token = _HOOK_VAR.set(Recorder())
    try:
        yield
    finally:
        _HOOK_VAR.reset(token)
        _configure_hooks[:] = [h for h in _configure_hooks if h[0] is not _HOOK_VAR]


@contextmanager
def env_hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A hook that creates its handler when an environment variable is set."""
    var: ContextVar[AsyncCallbackHandler | None] = ContextVar("bandit_env_hook", default=None)
    register_configure_hook(var, True, Recorder, "BANDIT_TEST_HOOK")
    monkeypatch.setenv("BANDIT_TEST_HOOK", "true")
    try:
        yield
    finally:
        _configure_hooks[:] = [h for h in _configure_hooks if h[0] is not var]


def scenarios(
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, tuple[Any, AbstractContextManager[Any]]]:
    """``name -> (callbacks in the config, context around the check)``."""
    handler = Recorder()
    return {
        "nothing": (None, nullcontext()),
        "empty list": ([], nullcontext()),
        "empty manager": (AsyncCallbackManager(handlers=[]), nullcontext()),
        "handler list": ([handler], nullcontext()),
        "manager with a local handler": (AsyncCallbackManager(handlers=[handler]), nullcontext()),
        "manager with an inherited handler": (
            AsyncCallbackManager(handlers=[], inheritable_handlers=[handler]),
            nullcontext(),
        ),
        "tracing_v2_enabled's tracer": (None, tracer_var()),
        "langsmith tracing_context(enabled=False)": (None, tracing_context(enabled=False)),
        "collect_runs()": (None, collect_runs()),
        "set_debug(True)": (None, debug_on()),
        "a registered configure hook": (None, custom_hook()),
        "a configure hook with its environment variable": (None, env_hook(monkeypatch)),
    }


@pytest.mark.parametrize(
    "name",
    [
        "nothing",
        "empty list",
        "empty manager",
        "handler list",
        "manager with a local handler",
        "manager with an inherited handler",
        "tracing_v2_enabled's tracer",
        "langsmith tracing_context(enabled=False)",
        "collect_runs()",
        "set_debug(True)",
        "a registered configure hook",
        "a configure hook with its environment variable",
    ],
)
async def test_the_quick_answer_is_langchains_answer(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    callbacks, around = scenarios(monkeypatch)[name]
    with around:
        config = ensure_config(RunnableConfig(callbacks=callbacks))
        manager = get_async_callback_manager_for_config(config)
        real = not (manager.handlers or manager.inheritable_handlers)
        assert _nobody_listens(config) is real, name


def test_langsmith_tracing_enabled_counts_as_listening() -> None:
    """``tracing_context(enabled=True)`` (or LANGSMITH_TRACING=true) makes LangChain add its
    tracer (not built here: it would start a LangSmith client)."""
    with tracing_context(enabled=True):
        assert not _nobody_listens(ensure_config(None))
    assert _nobody_listens(ensure_config(None))


def test_unobserved_arms_are_models_without_handlers_of_their_own() -> None:
    assert _unobserved(FakeArm())
    assert not _unobserved(FakeArm(callbacks=[Recorder()]))
    # plain bindings make no run of their own: only their callbacks matter
    assert _unobserved(FakeArm().with_config(tags=["x"]))
    assert _unobserved(FakeArm().bind(stop=["."]).with_config(metadata={"m": 1}))
    assert _unobserved(ScriptedArm().bind_tools([add]))
    assert not _unobserved(FakeArm().with_config(callbacks=[Recorder()]))
    assert not _unobserved(FakeArm(callbacks=[Recorder()]).bind(stop=["."]))
    assert not _unobserved(FakeArm().with_listeners(on_start=lambda run: None))
    assert not _unobserved(FakeArm().with_retry())  # makes a run of its own
    assert not _unobserved(FakeArm().with_fallbacks([FakeArm()]))
    assert not _unobserved(RunnableLambda(lambda x: x))


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_tools_bound_arms_take_the_quick_path_and_keep_their_tools() -> None:
    router = BanditRouterRunnable(
        arms={"a": ScriptedArm()}, reward=lambda outputs: bool(outputs.tool_calls)
    ).bind_tools([add])
    seen = Recorder()
    quiet = await router.ainvoke("add 1 and 2")
    assert quiet.tool_calls[0]["name"] == "add"
    heard = await router.ainvoke("add 1 and 2", {"callbacks": [seen]})
    assert heard.tool_calls[0]["name"] == "add"
    kinds = sorted(run["kind"] for run in seen.runs.values())
    assert kinds == ["chain", "chat"]
    await router.aclose()  # the rewards are scored after the answers
    assert (await router.astatistics())["a"].pulls == 2


class ConfigSpy(FakeArm):
    """A plain chat model arm that keeps the config each call received."""

    seen: ClassVar[list[RunnableConfig]] = []

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kw: Any) -> Any:
        self.seen.append(dict(config or {}))  # type: ignore[arg-type]
        return await super().ainvoke(input, config, **kw)


async def test_an_unobserved_arm_gets_the_callers_config_less_the_routers_run() -> None:
    spy = ConfigSpy()
    router = BanditRouterRunnable(arms={"a": spy}, reward=is_right)
    run_id = uuid.uuid4()
    out = await router.ainvoke(
        "q",
        {
            "run_id": run_id,
            "run_name": "my router",
            "tags": ["t"],
            "metadata": {"m": 1},
            "configurable": {"k": "v"},
        },
    )
    (config,) = spy.seen
    assert "run_id" not in config
    assert "run_name" not in config
    assert config["tags"] == ["t"]
    assert config["metadata"] == {"m": 1}
    assert config["configurable"] == {"k": "v"}
    assert out.response_metadata["bandit_router"]["decision_id"] == str(run_id)
    assert (await router.astatistics())["a"].pulls == 1


async def test_an_arm_with_its_own_handler_still_runs_as_the_routers_child() -> None:
    """Nobody listens to the router, but the arm's own handler sees the tagged child run."""
    seen = Recorder()
    router = BanditRouterRunnable(arms={"a": FakeArm(callbacks=[seen])}, reward=is_right)
    run_id = uuid.uuid4()
    await router.ainvoke("q", {"run_id": run_id})
    (run,) = seen.runs.values()
    assert (run["kind"], run["parent"]) == ("chat", run_id)
    tags = run["tags"]
    assert "bandit_router:arm:a" in tags
    assert "retry:attempt:1" in tags


async def test_with_a_listener_the_router_reports_its_own_run() -> None:
    seen = Recorder()
    router = BanditRouterRunnable(arms={"a": FakeArm()}, reward=is_right)
    run_id = uuid.uuid4()
    await router.ainvoke("q", {"run_id": run_id, "callbacks": [seen]})
    assert (seen.runs[run_id]["kind"], seen.runs[run_id]["parent"]) == ("chain", None)
    (child,) = [r for r in seen.runs.values() if r["parent"] == run_id]
    assert child["kind"] == "chat"
    assert "bandit_router:arm:a" in child["tags"]


async def test_run_ids_are_fresh_uuid7_strings_when_none_is_given() -> None:
    router = BanditRouterRunnable(arms={"a": FakeArm()}, reward=is_right)
    ids = [
        (await router.ainvoke("q")).response_metadata["bandit_router"]["decision_id"]
        for _ in range(3)
    ]
    assert len(set(ids)) == 3
    assert all(uuid.UUID(i).version == 7 for i in ids)
