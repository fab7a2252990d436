"""The StateStore contract across OS processes (stores that several processes can share).

Workers are fresh interpreters running ``_procs.py``; each opens the store from the same
:class:`StoreSpec`. Process-local stores (InMemoryStore) are skipped by ``shared_spec``.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from bandit_router._engine import Engine, Rules
from bandit_router._errors import UnknownDecisionError
from bandit_router._stats import Outcome

from ._procs import StoreSpec, rules_to_json, worker_command, worker_env

pytestmark = pytest.mark.anyio

NS = "router"
CTX = "ctx"
ARMS = ("a", "b", "c")
RULES = Rules(decay=None, expired=Outcome(None, None), pending_ttl=3600.0, max_pending=100_000)
TIMEOUT = 120.0


def _popen(command: str, payload: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        worker_command(command, payload),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def run_worker(command: str, payload: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run one worker to completion (blocking)."""
    return subprocess.run(
        worker_command(command, payload),
        capture_output=True,
        text=True,
        env=worker_env(),
        timeout=TIMEOUT,
        check=False,
    )


def result_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return out


def base_payload(spec: StoreSpec, rules: Rules = RULES) -> dict[str, Any]:
    return {
        "spec": spec.to_json(),
        "namespace": NS,
        "context": CTX,
        "arms": list(ARMS),
        "rules": rules_to_json(rules),
    }


async def in_thread(fn: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(fn)


# --- 6. several processes on one store ----------------------------------------------------------


@pytest.mark.parametrize(
    ("workers", "per_worker"), [(4, 500), pytest.param(6, 2000, marks=pytest.mark.slow)]
)
async def test_processes_lose_no_update(
    shared_spec: StoreSpec, tmp_path: Path, workers: int, per_worker: int
) -> None:
    lanes = 5
    go = tmp_path / "go"

    def run_all() -> list[dict[str, Any]]:
        with ExitStack() as stack:
            procs = []
            for w in range(workers):
                payload = base_payload(shared_spec) | {
                    "seed": w,
                    "prefix": f"w{w}-",
                    "lanes": lanes,
                    "per_lane": per_worker // lanes,
                    "go": str(go),
                }
                proc = stack.enter_context(_popen("hammer", payload))
                stack.callback(_kill, proc)
                procs.append(proc)
            for proc in procs:  # every worker has opened the store: start them together
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line == "ready\n", proc.stderr.read() if proc.stderr else line
            go.touch()
            outs = [proc.communicate(timeout=TIMEOUT) for proc in procs]
            for proc, (_, err) in zip(procs, outs, strict=True):
                assert proc.returncode == 0, err
            return [json.loads(out.splitlines()[-1]) for out, _ in outs]

    results: list[dict[str, Any]] = await in_thread(run_all)

    rewards = {a: [r for res in results for r in res["per_arm"][a]] for a in ARMS}
    store = shared_spec.open()
    try:
        st = await store.load(NS, CTX, ARMS, RULES)
        total = workers * per_worker
        assert sum(st.pulls) == total
        assert st.pulls == [len(rewards[a]) for a in ARMS]
        # Rewards are multiples of 1/1024: every sum is exact, whatever the order.
        assert st.reward_sum == [sum(rewards[a]) for a in ARMS]
        assert st.total == st.reward_sum
        assert st.in_flight == [0, 0, 0]
        assert st.clock == total
        assert st.n == [float(p) for p in st.pulls]
        assert len([a for a in ARMS if rewards[a]]) > 1
        lane_ids = [f"w{w}-{k}-" for w in range(workers) for k in range(lanes)]
        leftover = [
            did
            for prefix in lane_ids
            for did in (f"{prefix}{j}" for j in range(0, per_worker // lanes, 7))
            if await store.pending(NS, did) is not None
        ]
        assert leftover == []
    finally:
        await store.aclose()


async def test_feedback_from_another_process(shared_spec: StoreSpec) -> None:
    store = shared_spec.open()
    try:
        engine = Engine(ARMS, seed=5)
        ids = [f"p{i}" for i in range(30)]
        chosen = [
            await store.begin(NS, CTX, ARMS, lambda s: engine.select(s).arm, did, RULES, 0.0)
            for did in ids
        ]
        rewards = [(i % 5) / 4 for i in range(len(ids))]
        payload = base_payload(shared_spec) | {
            "settle": [[d, r] for d, r in zip(ids, rewards, strict=True)],
            "now": 1.0,
        }
        done = result_of(await in_thread(lambda: run_worker("settle", payload)))
        assert done["arms"] == chosen
        st = await store.load(NS, CTX, ARMS, RULES)
        assert st.in_flight == [0, 0, 0]
        assert st.pulls == [chosen.count(a) for a in ARMS]
        assert st.reward_sum == [
            sum(r for c, r in zip(chosen, rewards, strict=True) if c == a) for a in ARMS
        ]
        assert [await store.pending(NS, d) for d in ids] == [None] * len(ids)
        with pytest.raises(UnknownDecisionError, match="already settled"):
            await store.settle(NS, "p0", Outcome(1.0, 1.0), RULES, 2.0)

        # The other way round: another process begins, this one settles.
        more = [f"q{i}" for i in range(10)]
        payload = base_payload(shared_spec) | {"ids": more, "now": 2.0}
        begun = result_of(await in_thread(lambda: run_worker("begin", payload)))["arms"]
        assert (await store.load(NS, CTX, ARMS, RULES)).in_flight == [begun.count(a) for a in ARMS]
        settled = [(await store.settle(NS, d, Outcome(1.0, 1.0), RULES, 3.0)).arm for d in more]
        assert settled == begun
        after = await store.load(NS, CTX, ARMS, RULES)
        assert after.in_flight == [0, 0, 0]
        assert sum(after.pulls) == len(ids) + len(more)

        # A second settle from yet another process is refused there, and changes nothing.
        payload = base_payload(shared_spec) | {"settle": [["q0", 1.0]], "now": 4.0}
        refused = await in_thread(lambda: run_worker("settle", payload))
        assert refused.returncode != 0
        assert "UnknownDecisionError" in refused.stderr
        assert "already settled" in refused.stderr
        again = await store.load(NS, CTX, ARMS, RULES)
        assert [again.arm_record(i) for i in range(3)] == [after.arm_record(i) for i in range(3)]
    finally:
        await store.aclose()


# --- 7. a writer killed mid-run -----------------------------------------------------------------


def run_and_kill(payload: dict[str, Any], settles: int, delay: float) -> list[str]:
    """Start a crash worker; SIGKILL it ``delay`` seconds after its ``settles``-th settle.

    Returns:
        Every line it printed ("b I" once decision I has begun, "s I" once it is settled).
    """
    with _popen("crash", payload) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        lines: list[str] = []
        try:
            seen = 0
            while seen < settles:
                line = proc.stdout.readline()
                if not line:
                    pytest.fail(f"the worker stopped by itself: {proc.stderr.read()}")
                lines.append(line.strip())
                seen += line.startswith("s ")
            time.sleep(delay)
        finally:
            _kill(proc)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
        lines += [x.strip() for x in proc.stdout.read().splitlines() if x.strip()]
        return lines


DECAY = 0.99


@pytest.mark.parametrize("kills", [4, pytest.param(25, marks=pytest.mark.slow)])
async def test_a_killed_writer_leaves_only_whole_updates(
    shared_spec: StoreSpec, kills: int
) -> None:
    rules = Rules(decay=DECAY, expired=Outcome(None, None), pending_ttl=1e9, max_pending=10**7)
    rng = random.Random(20240607)
    candidates: list[str] = []  # every id a killed worker may have left pending
    printed_settles = 0
    for run in range(kills):
        prefix = f"r{run}-"
        payload = base_payload(shared_spec, rules) | {"seed": run, "prefix": prefix}
        settles, delay = rng.randint(1, 400), rng.uniform(0.0, 0.02)
        lines = await in_thread(partial(run_and_kill, payload, settles, delay))
        began = [int(x[2:]) for x in lines if x.startswith("b ")]
        settled = [int(x[2:]) for x in lines if x.startswith("s ")]
        assert began == list(range(len(began)))
        assert settled == list(range(len(settled)))
        printed_settles += len(settled)
        # It may have begun one more decision, and settled one more, than it printed; all
        # the others it printed as settled.
        candidates += [f"{prefix}{i}" for i in range(len(settled), len(began) + 1)]

        store = shared_spec.open()  # the file opens cleanly after the kill
        try:
            st = await store.load(NS, CTX, ARMS, rules)
            pulls = sum(st.pulls)
            assert printed_settles <= pulls <= printed_settles + run + 1
            assert pulls == st.clock  # a settle's pull and its clock tick are one update
            assert sum(st.reward_sum) == 0.5 * pulls  # exact: multiples of 0.5
            assert st.failures == [0, 0, 0]
            pending = [d for d in [await store.pending(NS, c) for c in candidates] if d]
            assert len(pending) <= run + 1  # at most one unsettled decision per killed run
            assert st.in_flight == [sum(d.arm == a for d in pending) for a in ARMS]
            for i in settled[-3:]:
                assert await store.pending(NS, f"{prefix}{i}") is None
            assert await store.pending(NS, f"{prefix}{len(began) + 1}") is None
            # Decayed counts are whole too: one unit per clock tick, discounted since.
            n, s, _ = st.discounted(DECAY)
            assert sum(n) == pytest.approx((1 - DECAY**pulls) / (1 - DECAY), rel=1e-9)
            assert sum(s) == pytest.approx(0.5 * sum(n), rel=1e-9)
            if shared_spec.name == "sqlite":
                check_sqlite_file(Path(str(shared_spec.args[0])), pulls, len(pending))
        finally:
            await store.aclose()

    # Still a working store: the leftovers settle, a new decision runs.
    store = shared_spec.open()
    try:
        for c in candidates:
            if await store.pending(NS, c) is not None:
                await store.settle(NS, c, Outcome(0.5, 0.5), rules, 1.0)
        await store.begin(NS, CTX, ARMS, lambda s: "a", "after", rules, 1.0)
        await store.settle(NS, "after", Outcome(0.5, 0.5), rules, 1.0)
        st = await store.load(NS, CTX, ARMS, rules)
        assert st.in_flight == [0, 0, 0]
        assert sum(st.pulls) == st.clock
    finally:
        await store.aclose()


def check_sqlite_file(path: Path, pulls: int, pending: int) -> None:
    """SQLite extras: the file passes its integrity check and its rows agree."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        (finished,) = conn.execute("SELECT COUNT(*) FROM finished WHERE how='settled'").fetchone()
        (rows,) = conn.execute("SELECT COUNT(*) FROM pending").fetchone()
        assert (finished, rows) == (pulls, pending)
    finally:
        conn.close()
