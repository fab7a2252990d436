"""Security: no prompt or answer text in spans, metrics or logs by default; state files are
private (0600); Redis keys stay inside the router's namespace; stored data is never unpickled
or evaluated; no error message, log line or traceback shows a connection password.
"""

from __future__ import annotations

import ast
import logging
import os
import pickle
import re
import sqlite3
import stat
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableLambda

import bandit_router
from bandit_router import (
    AllArmsFailedError,
    Bandit,
    BanditRouterRunnable,
    ConfigurationError,
    CorruptStateError,
    StoreError,
)
from bandit_router._engine import Rules
from bandit_router._stats import Outcome
from bandit_router.stores import SQLiteStore
from bandit_router.testing import FakeArm, is_right

from ._support import MARK, Otel

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
REDIS_PACKAGE = ROOT / "integrations" / "bandit_router_redis" / "bandit_router_redis"


@pytest.fixture
def otel() -> Iterator[Otel]:
    o = Otel()
    yield o
    o.shutdown()


def library_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Every line the library logged (its loggers are ``bandit_router*``)."""
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if r.name.startswith("bandit_router")
    )


# --- no content in spans, metrics and logs --------------------------------------------------------


def echo(prefix: str) -> RunnableLambda[Any, AIMessage]:
    """An arm whose answer quotes the prompt (as models do)."""

    async def answer(question: Any) -> AIMessage:
        text = question if isinstance(question, str) else str(question[-1].content)
        return AIMessage(content=f"{prefix}: {text} {MARK}")

    return RunnableLambda(answer)


async def route_private_traffic(router: BanditRouterRunnable) -> None:
    """Prompts and answers carrying the marker: invoke, stream, feedback, failures."""
    run_id = uuid.uuid4()
    await router.ainvoke(f"my secret is {MARK}", {"run_id": run_id})
    await router.ainvoke([HumanMessage(content=f"hello {MARK}")])
    _ = [chunk async for chunk in router.astream(f"stream {MARK}")]
    for _ in range(20):  # the flaky arm fails now and then (its errors quote no content)
        await router.ainvoke(f"again {MARK}")


async def test_no_content_reaches_spans_metrics_or_logs_by_default(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    router = BanditRouterRunnable(
        arms={
            "echo": echo("echo"),
            "flaky": FakeArm(failure_rate=0.3, error=ConnectionError, seed=1, model="flaky"),
        },
        reward=lambda outputs: 0.5,
        retry_initial_wait=0.0,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    )
    await route_private_traffic(router)
    exported = otel.exported_text()
    assert "bandit_router.route" in exported  # spans were recorded ...
    assert MARK not in exported  # ... without the prompts and answers
    assert MARK not in library_logs(caplog)


async def test_the_marker_is_found_when_content_capture_is_on(otel: Otel) -> None:
    """The control of the test above: the marker is visible when it is there."""
    router = BanditRouterRunnable(
        arms={"echo": echo("echo")},
        reward=lambda outputs: 0.5,
        capture_content=True,
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
    )
    await route_private_traffic(router)
    assert MARK in otel.exported_text()


def quoting_router(otel: Otel | None = None) -> BanditRouterRunnable:
    """Arms and an evaluator whose *exceptions* quote the prompt or the answer, as provider
    errors and judges often do."""

    async def refuses(question: Any) -> Any:
        raise ValueError(f"invalid request: {question!r}")

    def judge(outputs: Any) -> float:
        raise RuntimeError(f"cannot grade {outputs.content!r}")

    return BanditRouterRunnable(
        arms={"refuses": RunnableLambda(refuses), "echo": echo("echo")},
        reward=judge,
        tracer_provider=otel.tracer_provider if otel else None,
        meter_provider=otel.meter_provider if otel else None,
    )


async def test_exception_messages_quoting_content_stay_out_of_spans_and_metrics(
    otel: Otel,
) -> None:
    router = quoting_router(otel)
    for _ in range(5):
        await router.ainvoke(f"my secret is {MARK}")
    assert MARK not in otel.exported_text()


async def test_exception_messages_quoting_content_stay_out_of_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    router = quoting_router()
    for _ in range(5):
        await router.ainvoke(f"my secret is {MARK}")
    assert MARK not in library_logs(caplog)


# --- state files ----------------------------------------------------------------------------------


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


async def test_state_files_are_private_even_under_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "state" / "router.db"
    with umask(0):  # the worst case: everything the process creates is world-writable
        store = SQLiteStore(path)
        router = BanditRouterRunnable(arms={"a": FakeArm(), "b": FakeArm()}, store=store)
        for _ in range(10):
            await router.ainvoke("q")
        files = sorted(p.name for p in path.parent.iterdir())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
        await store.aclose()
    assert files == ["router.db", "router.db-shm", "router.db-wal"]
    assert modes == dict.fromkeys(files, 0o600)


# --- Redis: keys inside the namespace, no password anywhere --------------------------------------


@pytest.fixture
def private_redis() -> Iterator[Any]:
    """A private redis-server with a password: its key space is ours alone to inspect."""
    try:
        from bandit_router_redis.testing import RedisServer
    except ImportError:
        pytest.skip("pip install -e integrations/bandit_router_redis to test RedisStore")
    try:
        server = RedisServer(password=f"pw-{MARK}")
    except FileNotFoundError:
        if os.environ.get("BANDIT_ROUTER_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server is not installed", pytrace=False)
        pytest.skip("redis-server is not installed")
    with server:
        yield server


async def test_redis_keys_stay_inside_the_routers_namespace(private_redis: Any) -> None:
    import redis.asyncio as aioredis
    from bandit_router_redis import RedisStore
    from bandit_router_redis._store import _tag

    client = aioredis.Redis.from_url(private_redis.url)
    await client.set("other-app:config", "untouched")
    await client.hset("bandit_router:{chat}:state:", "a:x", "not ours")  # another prefix
    prefix = "myapp"
    store = RedisStore(private_redis.url, prefix=prefix)
    names = ["chat", "evil}{x", "*", "50%"]  # hash-tag and glob characters in a name
    try:
        for name in names:
            router = BanditRouterRunnable(
                arms={
                    "flaky": FakeArm(failure_rate=0.5, error=ConnectionError, seed=2),
                    "good": FakeArm(seed=3),
                },
                reward=is_right,
                store=store,
                name=name,
                context_key=lambda q: "code" if "code" in str(q) else "",
                max_pending=5,
                retry_initial_wait=0.0,
            )
            for i in range(20):
                await router.ainvoke("code" if i % 2 else "prose")
            # Delayed feedback (decisions wait in the registry), some of it never arriving.
            waiting = BanditRouterRunnable(
                arms={"flaky": FakeArm(seed=4), "good": FakeArm(seed=5)},
                store=store,
                name=name,
                max_pending=5,
            )
            run_ids = [uuid.uuid4() for _ in range(8)]
            for run_id in run_ids:
                await waiting.ainvoke("q", {"run_id": run_id})
            await waiting.arecord_feedback(run_ids[-1], 1.0)
            await Bandit(["flaky", "good"], name=name, store=store, max_pending=5).expire()
        keys = sorted([k.decode() async for k in client.scan_iter(match="*")])
        assert await client.get("other-app:config") == b"untouched"
        assert await client.hgetall("bandit_router:{chat}:state:") == {b"a:x": b"not ours"}
    finally:
        await store.aclose()
        await client.aclose()
    ours = [k for k in keys if k not in ("other-app:config", "bandit_router:{chat}:state:")]
    bases = [f"{prefix}:{{{_tag(n)}}}:" for n in names]
    documented = re.compile(
        r"(state:.*|contexts|pending|pending-by-expiry|finished|finished-order|observed"
        r"|observed-order|lease:.*|waiters:.*|wake:.*)"
    )
    for key in ours:
        base = next((b for b in bases if key.startswith(b)), None)
        assert base is not None, f"key {key!r} is outside every router namespace"
        assert documented.fullmatch(key[len(base) :]), f"undocumented key {key!r}"
    assert {b for b in bases if any(k.startswith(b) for k in ours)} == set(bases)


def full_text(exc: BaseException) -> str:
    """Everything a traceback or an error tracker would show of ``exc`` and its chain."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


async def test_passwords_never_reach_errors_logs_or_reprs(
    private_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from bandit_router_redis import RedisStore
    from bandit_router_redis.testing import free_port

    caplog.set_level(logging.DEBUG)
    secret = private_redis.password
    texts: list[str] = []
    # A wrong password, a closed port, a password in the query string.
    wrong = private_redis.url.replace(secret, f"wrong-{MARK}")
    closed = f"redis://admin:{secret}@127.0.0.1:{free_port()}/0"
    query = f"redis://127.0.0.1:{free_port()}/0?password={secret}"
    for url in (wrong, closed, query):
        store = RedisStore(url, connect_timeout=1.0)
        texts.append(repr(store))
        router = BanditRouterRunnable(arms={"a": FakeArm()}, store=store)
        for call in (store.ping, router.astatistics):
            with pytest.raises(StoreError) as info:
                await call()
            texts.append(full_text(info.value))
        # A call answers anyway (without learning), and says why in the log only.
        assert (await router.ainvoke("q")).content == "right"
        await store.aclose()
    # An outage of a Redis reached before: warnings are logged, the password is not.
    store = RedisStore(private_redis.url, retry_interval=0.05)
    router = BanditRouterRunnable(arms={"a": FakeArm()}, reward=is_right, store=store)
    await router.ainvoke("q")
    private_redis.stop()
    for _ in range(3):
        await router.ainvoke("q")  # degraded: keeps routing
    assert store.degraded
    private_redis.start()
    await anyio.sleep(0.3)
    await router.ainvoke("q")
    texts.append(repr(store))
    await store.aclose()
    texts.append(library_logs(caplog))
    assert "outage" in texts[-1] or "unreachable" in texts[-1]  # the outage was logged
    for text in texts:
        assert MARK not in text, text


PASSWORDS = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=4, max_size=16
).map(lambda s: f"Pw{s}")


@settings(max_examples=100, deadline=None)
@given(password=PASSWORDS, encoded=st.booleans(), where=st.sampled_from(["user", "query"]))
def test_fuzzed_passwords_are_masked_in_every_message(
    password: str, encoded: bool, where: str
) -> None:
    """Passwords of any printable characters, percent-encoded or (wrongly) not."""
    from bandit_router_redis import RedisStore, mask_url

    pw = quote(password, safe="") if encoded else password
    url = (
        f"redis://admin:{pw}@127.0.0.1:1/0"
        if where == "user"
        else f"redis://127.0.0.1:1/0?password={pw}"
    )
    secrets = {password, pw}
    texts = [mask_url(url), mask_url(url.replace("redis://", "http://", 1))]
    for candidate in (url, url.replace("redis://", "http://", 1)):
        try:
            store = RedisStore(candidate)
        except ConfigurationError as exc:
            texts.append(full_text(exc))
        else:
            texts.append(repr(store))
            texts.append(store.masked_url)
    for text in texts:
        assert not any(s in text for s in secrets), (url, text)


# --- no pickle, no eval ---------------------------------------------------------------------------

FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve"}
FORBIDDEN_MODULES |= {"jsonpickle", "yaml"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def library_sources() -> list[Path]:
    package = Path(bandit_router.__file__).parent
    return sorted([*package.rglob("*.py"), *REDIS_PACKAGE.rglob("*.py")])


def test_the_library_never_unpickles_or_evaluates() -> None:
    found: list[str] = []
    sources = library_sources()
    assert len(sources) > 10
    for path in sources:
        tree = ast.parse(path.read_text("utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in FORBIDDEN_CALLS:
                    found.append(f"{path.name}:{node.lineno} calls {node.func.id}()")
                continue
            else:
                continue
            found += [
                f"{path.name}:{node.lineno} imports {n}" for n in names if n in FORBIDDEN_MODULES
            ]
    lua = [p.read_text("utf-8") for p in REDIS_PACKAGE.rglob("*.lua")]
    assert lua
    for script in lua:
        for word in ("loadstring", "dofile", "loadfile"):
            if word in script:
                found.append(f"Lua uses {word}")
        if re.search(r"(?<![\w.])load\s*\(", script):
            found.append("Lua uses load()")
    assert found == []


class Trap:
    """Unpickling this creates a file: proof that stored data was executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Path.touch, (str(self.path),))


def payloads(tripwire: Path) -> list[Any]:
    return [
        pickle.dumps(Trap(tripwire)),
        f"__import__('pathlib').Path({str(tripwire)!r}).touch()",
        '{"__class__": "pathlib.Path"}',
    ]


RULES = Rules(decay=None, expired=Outcome(None, None), pending_ttl=3600.0, max_pending=100)


def test_malicious_data_in_a_state_file_is_refused_not_executed(tmp_path: Path) -> None:
    tripwire = tmp_path / "executed"
    for i, payload in enumerate(payloads(tripwire)):
        path = tmp_path / f"state-{i}.db"

        async def seed(path: Path = path) -> None:
            store = SQLiteStore(path)
            await store.observe("ns", "", ("a",), "a", Outcome(1.0, 1.0), RULES)
            await store.aclose()

        anyio.run(seed)
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("UPDATE arms SET n=?, total=? WHERE arm='a'", (payload, payload))
        conn.close()

        async def load(path: Path = path) -> None:
            store = SQLiteStore(path)
            try:
                await store.load("ns", "", ("a",), RULES)
            finally:
                await store.aclose()

        with pytest.raises(CorruptStateError, match="corrupt"):
            anyio.run(load)
        assert not tripwire.exists()
    # The control: the pickled payload does trip the wire when it is unpickled.
    control = tmp_path / "control"
    pickle.loads(payloads(control)[0])  # on purpose: this test is the only unpickler
    assert control.exists()


async def test_malicious_data_in_redis_is_refused_not_executed(
    private_redis: Any, tmp_path: Path
) -> None:
    import redis.asyncio as aioredis
    from bandit_router_redis import RedisStore

    tripwire = tmp_path / "executed"
    client = aioredis.Redis.from_url(private_redis.url)
    try:
        for i, payload in enumerate(payloads(tripwire)):
            store = RedisStore(private_redis.url, prefix=f"evil{i}")
            bandit = Bandit(["a", "b"], name="r", store=store)
            d = await bandit.choose()
            await client.hset(f"evil{i}:{{r}}:state:", "a:a", payload)
            await client.hset(f"evil{i}:{{r}}:pending", d.decision_id, payload)
            with pytest.raises(CorruptStateError):
                await bandit.statistics()
            with pytest.raises((StoreError, AllArmsFailedError, ValueError)):
                await bandit.reward(d.decision_id, 1.0)
            await store.aclose()
    finally:
        await client.aclose()
    assert not tripwire.exists()
