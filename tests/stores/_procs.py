"""Store specs, and the worker processes of the cross-process store contract tests.

A :class:`StoreSpec` is plain data (JSON and pickle friendly): every process, the test's and
its workers', opens its own connection to the same store from it. This file is also the
worker program: ``python _procs.py COMMAND JSON`` runs one of the commands below in a fresh
interpreter (the tests start it with :func:`worker_command`), so workers never depend on how
pytest named the test modules.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import anyio

from bandit_router._engine import Engine, Rules
from bandit_router._stats import Outcome
from bandit_router.stores import Chooser, StateStore

Scalar = str | int | float | bool


@dataclass(frozen=True)
class StoreSpec:
    """How to open one store, in any process.

    Attributes:
        name: Short name, used in test ids.
        factory: ``"module:attribute"`` of a callable returning the store.
        args: Positional arguments of ``factory`` (a path, a URL ...).
        kwargs: Keyword arguments of ``factory``, as ``(name, value)`` pairs.
        shared: Whether a store opened from this spec in another process sees the same state
            (False for a store that lives in one process's memory).
    """

    name: str
    factory: str
    args: tuple[Scalar, ...] = ()
    kwargs: tuple[tuple[str, Scalar], ...] = ()
    shared: bool = False

    def open(self) -> StateStore:
        """Open a new connection to (or instance of) the store."""
        module, _, attr = self.factory.partition(":")
        make = getattr(importlib.import_module(module), attr)
        store = make(*self.args, **dict(self.kwargs))
        if not isinstance(store, StateStore):
            raise TypeError(f"{self.factory} returned {store!r}, not a StateStore")
        return store

    def to_json(self) -> dict[str, Any]:
        """Return the spec as JSON-compatible data."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoreSpec:
        """Rebuild a spec from :meth:`to_json`'s output (after a JSON round trip)."""
        return cls(
            name=data["name"],
            factory=data["factory"],
            args=tuple(data["args"]),
            kwargs=tuple((k, v) for k, v in data["kwargs"]),
            shared=data["shared"],
        )


def rules_to_json(rules: Rules) -> dict[str, Any]:
    """Return ``rules`` as JSON-compatible data."""
    return asdict(rules)


def rules_from_json(data: dict[str, Any]) -> Rules:
    """Rebuild :class:`Rules` from :func:`rules_to_json`'s output."""
    return Rules(
        decay=data["decay"],
        expired=Outcome(**data["expired"]),
        pending_ttl=data["pending_ttl"],
        max_pending=data["max_pending"],
    )


def worker_command(command: str, payload: dict[str, Any]) -> list[str]:
    """Return the argv that runs worker ``command`` with ``payload`` in a new interpreter."""
    return [sys.executable, str(Path(__file__).resolve()), command, json.dumps(payload)]


def worker_env() -> dict[str, str]:
    """Return the environment for a worker (the repository root importable, unbuffered)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- the worker commands (run in child processes) ---------------------------------------------


def _engine_chooser(arms: tuple[str, ...], seed: int) -> Chooser:
    engine = Engine(arms, seed=seed)
    return lambda state: engine.select(state).arm


async def _hammer(p: dict[str, Any]) -> dict[str, Any]:
    """``lanes`` concurrent tasks doing ``per_lane`` begin+settle each, after a start signal.

    Rewards are multiples of 1/1024, so any sum of them is exact in floating point and the
    test can compare sums with ``==``.
    """
    store = StoreSpec.from_json(p["spec"]).open()
    arms = tuple(p["arms"])
    rules = rules_from_json(p["rules"])
    choose = _engine_chooser(arms, p["seed"])
    rng = random.Random(p["seed"])
    per_arm: dict[str, list[float]] = {a: [] for a in arms}
    print("ready", flush=True)
    go = Path(p["go"])
    while not go.exists():
        time.sleep(0.001)

    async def lane(k: int) -> None:
        for j in range(p["per_lane"]):
            did = f"{p['prefix']}{k}-{j}"
            await store.begin(p["namespace"], p["context"], arms, choose, did, rules, 0.0)
            await anyio.lowlevel.checkpoint()
            reward = rng.randrange(1025) / 1024
            d = await store.settle(p["namespace"], did, Outcome(reward, reward), rules, 0.0)
            per_arm[d.arm].append(reward)

    async with anyio.create_task_group() as tg:
        for k in range(p["lanes"]):
            tg.start_soon(lane, k)
    await store.aclose()
    return {"per_arm": per_arm}


async def _begin(p: dict[str, Any]) -> dict[str, Any]:
    """Begin the decisions ``ids``; return the arm of each."""
    store = StoreSpec.from_json(p["spec"]).open()
    arms = tuple(p["arms"])
    rules = rules_from_json(p["rules"])
    choose = _engine_chooser(arms, 0)
    chosen = [
        await store.begin(p["namespace"], p["context"], arms, choose, did, rules, p["now"])
        for did in p["ids"]
    ]
    await store.aclose()
    return {"arms": chosen}


async def _settle(p: dict[str, Any]) -> dict[str, Any]:
    """Settle each ``[id, reward]`` of ``settle``; return the arm of each."""
    store = StoreSpec.from_json(p["spec"]).open()
    rules = rules_from_json(p["rules"])
    arms = [
        (await store.settle(p["namespace"], did, Outcome(r, r), rules, p["now"])).arm
        for did, r in p["settle"]
    ]
    await store.aclose()
    return {"arms": arms}


async def _crash(p: dict[str, Any]) -> dict[str, Any]:
    """Begin and settle decisions (reward 0.5) forever, logging each step; the test kills it."""
    store = StoreSpec.from_json(p["spec"]).open()
    arms = tuple(p["arms"])
    rules = rules_from_json(p["rules"])
    choose = _engine_chooser(arms, p["seed"])
    half = Outcome(0.5, 0.5)
    i = 0
    while True:
        did = f"{p['prefix']}{i}"
        await store.begin(p["namespace"], p["context"], arms, choose, did, rules, 0.0)
        print(f"b {i}", flush=True)
        await store.settle(p["namespace"], did, half, rules, 0.0)
        print(f"s {i}", flush=True)
        i += 1


async def _open_at(p: dict[str, Any]) -> dict[str, Any]:
    """Open each spec of ``specs`` at its wall-clock moment ``start + k * step``.

    Several workers given the same schedule open the same new stores at the same moments.
    """
    results: list[str] = []
    for k, data in enumerate(p["specs"]):
        moment = p["start"] + k * p["step"]
        while time.time() < moment:  # spin: sleeping would blur the moment
            pass
        try:
            store = StoreSpec.from_json(data).open()
        except Exception as exc:  # reported to the test, which fails naming it
            results.append(f"{type(exc).__name__}: {exc}")
        else:
            await store.aclose()
            results.append("ok")
    return {"results": results}


COMMANDS = {
    "hammer": _hammer,
    "begin": _begin,
    "settle": _settle,
    "crash": _crash,
    "open_at": _open_at,
}


def main(argv: list[str]) -> None:
    """Run worker command ``argv[1]`` on the JSON payload ``argv[2]``; print its result."""
    command, payload = argv[1], json.loads(argv[2])
    result = anyio.run(COMMANDS[command], payload)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv)
