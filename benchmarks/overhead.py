"""Microseconds per ``ainvoke``: the router against the bare chat model, measured side by side.

Every contender answers ``[HumanMessage("hi")]`` with native-async fake chat models
(:class:`~bandit_router._fakes.FakeArm`: no network, no sleep), so what is measured is pure
overhead: LangChain's callback machinery, the routing, the learning. Contenders:

1. bare: ``FakeArm().ainvoke(msg)``, the baseline every ratio divides by;
2. ``FakeArm().with_fallbacks([FakeArm()]).ainvoke(msg)``, LangChain's own wrapper;
3. a ten-line ``RunnableLambda`` router picking one of two models at random (async chooser;
   a sync chooser, which ``ainvoke`` runs in a thread pool, is shown for information);
4. ``BanditRouterRunnable(arms={"a": ..., "b": ...}, reward=is_right)``: inline sync reward
   (placed where :class:`~bandit_router.rewards.Evaluator` puts it by default),
   ``InMemoryStore``, default KL-UCB;
5. the same router without ``reward`` (delayed feedback): each round's decisions stay
   pending during the timed loop (so later calls see calls in flight, as in production) and
   are settled with ``arecord_feedback`` after the round, outside the timed section;
6. for information: router 4 with an async reward (no thread hop), and router 4 over a
   ``SQLiteStore`` on a temporary file;
7. for information: router 4 with ``telemetry=False``, and with an OpenTelemetry SDK whose
   exporter drops every span;
8. for information, a hand-written learning router: configure the call's callbacks (as
   LangChain's own Runnables do), ``Bandit.choose``, the arm, ``Bandit.reward``, nothing else
   (no child run, timeout, retries, fallback, telemetry or stamped metadata). The router
   does more per call yet can be cheaper: when nobody listens it answers that question
   without configuring a callback manager at all.

No tracing SDK is configured: ``LANGCHAIN_TRACING_V2``, ``LANGSMITH_TRACING`` (and their
``_V2``/plain siblings) are removed from the environment before anything runs.

All contenders share one event loop. A round gives each contender ``--calls`` calls, in turns
of ``--batch`` calls that cycle through the contenders (the starting contender rotates each
round), so every contender sees the same machine load. Before each turn, a short pause and two
untimed calls keep one contender's leftovers (worker threads, cold caches) from being charged
to the next; the cyclic garbage collector runs after each turn, timed with it, instead of
whenever allocations happen to trigger it. Each contender keeps its best and its median round.
Ratios to bare: best round over bare's best round, and the median over rounds of (this round /
bare's same round), the robust one on a shared machine, which the verdict uses. ``--clock cpu``
times process CPU time instead of wall time (steadier under load, but blind to time spent
waiting, such as a thread hop's). Usage::

    python benchmarks/overhead.py [--calls 1000] [--rounds 7] [--batch 10] [--clock wall]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import langchain_core
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda
from langchain_core.runnables.config import ensure_config, get_async_callback_manager_for_config
from langchain_core.utils.uuid import uuid7

from bandit_router import Bandit, BanditRouterRunnable, __version__
from bandit_router._fakes import FakeArm, is_right
from bandit_router.stores import SQLiteStore

#: Every switch that turns LangSmith tracing on (removed before anything runs).
_TRACING_VARS = (
    "LANGCHAIN_TRACING_V2",
    "LANGSMITH_TRACING",
    "LANGSMITH_TRACING_V2",
    "LANGCHAIN_TRACING",
)

MSG: list[BaseMessage] = [HumanMessage("hi")]
GOAL = 1.5  # router/bare, from the issue
SETTLE_S = 0.001  # pause between two contenders' turns
WARM_PER_TURN = 2  # untimed calls before each turn

Timed = Callable[[int], Awaitable[float]]  # runs n calls, returns the seconds they took
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
clock: Callable[[], float] = time.perf_counter  # set by main() from --clock


@dataclass
class Contender:
    """One row of the table: how to run ``n`` calls, and what to do after a round (untimed)."""

    name: str
    run: Timed
    after: Callable[[], Awaitable[None]] | None = None
    info: bool = False  # for information: not one of the contenders
    rounds: list[float] = field(default_factory=list)  # microseconds per call, per round
    seconds: float = 0.0  # accumulated over the current round


def plain_reward(outputs: Any) -> bool:
    """A reward as a user writes it: a plain sync function, no marker, no wrapper."""
    return bool(getattr(outputs, "content", None) == "right")


def sync_invoke_loop(runnable: Runnable[Any, Any]) -> Timed:
    """Time ``n`` sequential sync ``runnable.invoke(MSG)`` (the sync face; no loop needed)."""

    async def run(n: int) -> float:
        invoke = runnable.invoke
        t0 = clock()
        for _ in range(n):
            invoke(MSG)
        return clock() - t0

    return run


def sync_stream_loop(runnable: Runnable[Any, Any]) -> Timed:
    """Time ``n`` sequential sync ``list(runnable.stream(MSG))``."""

    async def run(n: int) -> float:
        stream = runnable.stream
        t0 = clock()
        for _ in range(n):
            for _chunk in stream(MSG):
                pass
        return clock() - t0

    return run


def invoke_loop(runnable: Runnable[Any, Any]) -> Timed:
    """Time ``n`` sequential ``await runnable.ainvoke(MSG)``."""

    async def run(n: int) -> float:
        ainvoke = runnable.ainvoke
        t0 = clock()
        for _ in range(n):
            await ainvoke(MSG)
        return clock() - t0

    return run


def lambda_router(
    a: Runnable[Any, Any], b: Runnable[Any, Any], seed: int = 0
) -> Runnable[Any, Any]:
    """The ten-line router a user writes by hand: pick one of two models at random."""
    rng = random.Random(seed)

    async def route(messages: list[BaseMessage], config: RunnableConfig) -> BaseMessage:
        model = a if rng.random() < 0.5 else b
        out: BaseMessage = await model.ainvoke(messages, config)
        return out

    return RunnableLambda(route, name="lambda_router")


def lambda_router_sync(
    a: Runnable[Any, Any], b: Runnable[Any, Any], seed: int = 0
) -> Runnable[Any, Any]:
    """LangChain's routing idiom: a sync function returning the Runnable to call.

    ``RunnableLambda.ainvoke`` runs a sync function in the default thread pool, then invokes the
    returned Runnable as a child run.
    """
    rng = random.Random(seed)
    return RunnableLambda(lambda _messages: a if rng.random() < 0.5 else b, name="lambda_router")


def hand_written_router(a: Runnable[Any, Any], b: Runnable[Any, Any]) -> Timed:
    """A hand-written learning router, for scale: no router run, no child run.

    It configures the call's callbacks (as LangChain's Runnables do, to know whether someone
    listens), asks a :class:`~bandit_router.Bandit` on an ``InMemoryStore`` for an arm, calls it
    with the caller's config and rewards it with :func:`is_right` inline. No telemetry, no
    timeout, no retries, no fallback, no stamped metadata, no evaluator errors handled.
    """
    arms = {"a": a, "b": b}
    bandit = Bandit(list(arms))

    async def run(n: int) -> float:
        t0 = clock()
        for _ in range(n):
            config = ensure_config(None)
            get_async_callback_manager_for_config(config)
            d = await bandit.choose(decision_id=str(uuid7()))
            out = await arms[d.arm].ainvoke(MSG, config)
            await bandit.reward(d.decision_id, is_right(out))
        return clock() - t0

    return run


async def is_right_async(outputs: Any) -> bool:
    """:func:`is_right` as a coroutine function: the router awaits it on the event loop."""
    return is_right(outputs)


def delayed_feedback(router: BanditRouterRunnable) -> tuple[Timed, Callable[[], Awaitable[None]]]:
    """Time ``n`` calls of a reward-less router; settle their decisions afterwards, untimed."""
    outputs: list[Any] = []

    async def run(n: int) -> float:
        ainvoke = router.ainvoke
        keep = outputs.append
        t0 = clock()
        for _ in range(n):
            keep(await ainvoke(MSG))
        return clock() - t0

    async def settle() -> None:
        for out in outputs:
            meta = out.response_metadata["bandit_router"]
            await router.arecord_feedback(meta["decision_id"], is_right(out))
        outputs.clear()

    return run, settle


def sdk_tracer_provider() -> Any:
    """An OpenTelemetry SDK tracer provider whose exporter drops every span."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Null(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Null()))
    return provider


def clear_tracing_env() -> bool:
    """Remove every tracing switch from the environment; return whether tracing is still on."""
    for var in _TRACING_VARS:
        os.environ.pop(var, None)
    from langsmith import utils as ls_utils

    cache_clear = getattr(ls_utils.get_env_var, "cache_clear", None)
    if cache_clear is not None:  # langsmith caches what it read from the environment
        cache_clear()
    return bool(ls_utils.tracing_is_enabled())


async def measure(
    contenders: list[Contender], calls: int, rounds: int, warmup: int, batch: int
) -> None:
    """Warm every contender up, then run the interleaved rounds."""
    for c in contenders:
        await c.run(warmup)
        if c.after is not None:
            await c.after()
    turns = [batch] * (calls // batch) + ([calls % batch] if calls % batch else [])
    for r in range(rounds):
        k = r % len(contenders)
        order = contenders[k:] + contenders[:k]  # rotate the order: no position bias
        gc.collect()
        for c in order:
            c.seconds = 0.0
        # The cyclic garbage collector runs after each turn, timed as part of it: a contender
        # pays for collecting what its own calls left, never for a collection that another
        # contender's allocations happened to trigger during its turn.
        gc.disable()
        try:
            for n in turns:
                for c in order:
                    # Untimed: let worker threads left by a thread-using contender (3b, 6b)
                    # park, warm this contender's code and data back into the CPU caches, and
                    # collect the warm-up's garbage, so that no contender pays for another.
                    await asyncio.sleep(SETTLE_S)
                    await c.run(WARM_PER_TURN)
                    gc.collect(1)
                    seconds = await c.run(n)
                    t0 = clock()
                    gc.collect(1)
                    c.seconds += seconds + (clock() - t0)
        finally:
            gc.enable()
        for c in order:
            c.rounds.append(c.seconds / calls * 1e6)
            if c.after is not None:
                await c.after()


def paired(c: Contender, bare: Contender) -> float:
    """The median over rounds of this contender's round over ``bare``'s same round."""
    return statistics.median(x / b for x, b in zip(c.rounds, bare.rounds, strict=True))


def named(contenders: list[Contender], prefix: str) -> Contender:
    """The contender whose name starts with ``prefix``."""
    return next(c for c in contenders if c.name.startswith(prefix))


def report(
    contenders: list[Contender], calls: int, rounds: int, batch: int, clock_name: str, tracing: bool
) -> float:
    """Print the table; return the router's paired-median ratio to bare."""
    bare = contenders[0]
    bare_best = min(bare.rounds)
    print(
        f"ainvoke([HumanMessage('hi')]) over native-async FakeArm chat models; {calls} calls per "
        f"contender per round in turns of {batch}, {rounds} rounds, {clock_name} clock."
    )
    print(
        f"Python {sys.version.split()[0]} ({platform.python_implementation()}) on "
        f"{platform.machine()}, langchain-core {langchain_core.__version__}, "
        f"bandit-router {__version__}; tracing {'ON (!)' if tracing else 'off'}."
    )
    print()
    print("| contender | best us/call | median us/call | ratio (best) | ratio (paired median) |")
    print("|---|---:|---:|---:|---:|")
    for c in contenders:
        best = min(c.rounds)
        name = f"{c.name} (info)" if c.info else c.name
        print(
            f"| {name} | {best:.1f} | {statistics.median(c.rounds):.1f} | "
            f"{best / bare_best:.2f} | {paired(c, bare):.2f} |"
        )
    print()
    router = next(c for c in contenders if c.name.startswith("4."))
    ratio = paired(router, bare)
    off = next(c for c in contenders if c.name.startswith("7a."))
    sdk = next(c for c in contenders if c.name.startswith("7b."))
    print(
        f"telemetry, no SDK / telemetry off = {min(router.rounds) / min(off.rounds):.2f}; "
        f"SDK + no-op exporter / telemetry off = {min(sdk.rounds) / min(off.rounds):.2f} "
        "(best rounds)."
    )
    verdict = "meets" if ratio <= GOAL else "misses"
    print(
        f"router/bare = {ratio:.2f} (paired median; best rounds: "
        f"{min(router.rounds) / bare_best:.2f}): {verdict} the goal <= {GOAL}."
    )
    # The routing core's goals: a plain sync reward within 1.1 x with_fallbacks' overhead;
    # the sync faces within 1.2 x (invoke) and 1.3 x (stream) of with_fallbacks'.
    fallbacks = named(contenders, "2.")
    plain = paired(named(contenders, "4p."), bare)
    wf = paired(fallbacks, bare)
    print(
        f"plain def reward: router/bare = {plain:.2f}, with_fallbacks/bare = {wf:.2f}: "
        f"{plain / wf:.2f} x with_fallbacks ({'meets' if plain <= 1.1 * wf else 'misses'} "
        "<= 1.1)."
    )
    no_eval = paired(named(contenders, "5."), bare)
    print(f"no evaluator (delayed feedback): router/bare = {no_eval:.2f}.")
    inv = paired(named(contenders, "9c."), named(contenders, "9b."))
    st = paired(named(contenders, "10c."), named(contenders, "10b."))
    print(
        f"sync invoke: router / with_fallbacks = {inv:.2f} ({'meets' if inv <= 1.2 else 'misses'}"
        f" <= 1.2); sync stream: router / with_fallbacks = {st:.2f} "
        f"({'meets' if st <= 1.3 else 'misses'} <= 1.3) (paired medians)."
    )
    print(
        "5. settles each round's decisions with arecord_feedback after the round, untimed; "
        "during the round they are pending (calls in flight for the policy)."
    )
    return ratio


async def amain(
    calls: int, rounds: int, warmup: int, batch: int, clock_name: str, tracing: bool
) -> float:
    with tempfile.TemporaryDirectory(prefix="bandit-router-overhead-") as tmp:
        sqlite = SQLiteStore(Path(tmp) / "state.db")
        try:
            no_reward = BanditRouterRunnable(arms={"a": FakeArm(), "b": FakeArm()})
            run5, settle5 = delayed_feedback(no_reward)
            contenders = [
                Contender("1. bare FakeArm", invoke_loop(FakeArm())),
                Contender(
                    "2. FakeArm.with_fallbacks([FakeArm])",
                    invoke_loop(FakeArm().with_fallbacks([FakeArm()])),
                ),
                Contender(
                    "3. RunnableLambda router (async, random)",
                    invoke_loop(lambda_router(FakeArm(), FakeArm())),
                ),
                Contender(
                    "3b. RunnableLambda router (sync chooser, thread pool)",
                    invoke_loop(lambda_router_sync(FakeArm(), FakeArm())),
                    info=True,
                ),
                Contender(
                    "4. BanditRouterRunnable, reward=is_right, InMemoryStore",
                    invoke_loop(
                        BanditRouterRunnable(arms={"a": FakeArm(), "b": FakeArm()}, reward=is_right)
                    ),
                ),
                Contender(
                    "4p. BanditRouterRunnable, plain `def reward(outputs)`, InMemoryStore",
                    invoke_loop(
                        BanditRouterRunnable(
                            arms={"a": FakeArm(), "b": FakeArm()}, reward=plain_reward
                        )
                    ),
                ),
                Contender("5. BanditRouterRunnable, no reward (delayed feedback)", run5, settle5),
                Contender(
                    "6a. BanditRouterRunnable, async reward, InMemoryStore",
                    invoke_loop(
                        BanditRouterRunnable(
                            arms={"a": FakeArm(), "b": FakeArm()}, reward=is_right_async
                        )
                    ),
                    info=True,
                ),
                Contender(
                    "6b. BanditRouterRunnable, reward=is_right, SQLiteStore",
                    invoke_loop(
                        BanditRouterRunnable(
                            arms={"a": FakeArm(), "b": FakeArm()}, reward=is_right, store=sqlite
                        )
                    ),
                    info=True,
                ),
                Contender(
                    "7a. router 4 with telemetry=False",
                    invoke_loop(
                        BanditRouterRunnable(
                            arms={"a": FakeArm(), "b": FakeArm()}, reward=is_right, telemetry=False
                        )
                    ),
                    info=True,
                ),
                Contender(
                    "7b. router 4 with an OpenTelemetry SDK and a no-op exporter",
                    invoke_loop(
                        BanditRouterRunnable(
                            arms={"a": FakeArm(), "b": FakeArm()},
                            reward=is_right,
                            tracer_provider=sdk_tracer_provider(),
                        )
                    ),
                    info=True,
                ),
                Contender(
                    "8. hand-written: configure + Bandit.choose + arm + Bandit.reward",
                    hand_written_router(FakeArm(), FakeArm()),
                    info=True,
                ),
                Contender("9a. sync: bare FakeArm.invoke", sync_invoke_loop(FakeArm())),
                Contender(
                    "9b. sync: with_fallbacks invoke",
                    sync_invoke_loop(FakeArm().with_fallbacks([FakeArm()])),
                ),
                Contender(
                    "9c. sync: router invoke, plain reward",
                    sync_invoke_loop(
                        BanditRouterRunnable(
                            arms={"a": FakeArm(), "b": FakeArm()}, reward=plain_reward
                        )
                    ),
                ),
                Contender("10a. sync: bare FakeArm.stream", sync_stream_loop(FakeArm())),
                Contender(
                    "10b. sync: with_fallbacks stream",
                    sync_stream_loop(FakeArm().with_fallbacks([FakeArm()])),
                ),
                Contender(
                    "10c. sync: router stream, plain reward",
                    sync_stream_loop(
                        BanditRouterRunnable(
                            arms={"a": FakeArm(), "b": FakeArm()}, reward=plain_reward
                        )
                    ),
                ),
            ]
            await measure(contenders, calls, rounds, warmup, batch)
        finally:
            await sqlite.aclose()
    return report(contenders, calls, rounds, batch, clock_name, tracing)


def main(argv: list[str] | None = None) -> int:
    global clock
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=1000, help="calls per contender per round")
    ap.add_argument("--rounds", type=int, default=7, help="rounds")
    ap.add_argument("--batch", type=int, default=10, help="calls per contender per turn")
    ap.add_argument("--warmup", type=int, default=200, help="untimed calls per contender first")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="what is timed")
    ns = ap.parse_args(argv)
    if ns.calls < 1 or ns.rounds < 1 or ns.batch < 1 or ns.warmup < 0:
        ap.error("--calls, --rounds and --batch must be >= 1, --warmup >= 0")
    clock = CLOCKS[ns.clock]
    tracing = clear_tracing_env()
    asyncio.run(amain(ns.calls, ns.rounds, ns.warmup, ns.batch, ns.clock, tracing))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
