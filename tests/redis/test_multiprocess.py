"""Four OS processes route calls through one router name on Redis: exact totals, feedback anywhere.

Each worker (``_worker.py``) runs a real :class:`~bandit_router.BanditRouterRunnable` over fake
chat models and records delayed feedback with ``arecord_feedback``, half of it for calls that
another process routed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from bandit_router_redis import RedisStore

from bandit_router import Bandit

pytestmark = pytest.mark.anyio

ARMS = ("a", "b", "c")
WORKER = Path(__file__).with_name("_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def reward_for(decision_id: str) -> float:
    import random

    return random.Random(decision_id).randrange(1025) / 1024


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def run_workers(
    url: str, prefix: str, tmp: Path, workers: int, decisions: int
) -> list[dict[str, Any]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    go, go2 = tmp / "go", tmp / "go2"
    with ExitStack() as stack:
        procs = []
        for w in range(workers):
            payload = {
                "url": url,
                "prefix": prefix,
                "name": "shared-router",
                "worker": w,
                "decisions": decisions,
                "tasks": 8,
                "go": str(go),
                "go2": str(go2),
                "handoff_out": str(tmp / f"handoff-{w}.json"),
                "handoff_in": str(tmp / f"handoff-{(w + 1) % workers}.json"),
            }
            proc = stack.enter_context(
                subprocess.Popen(
                    [sys.executable, str(WORKER), json.dumps(payload)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
            stack.callback(_kill, proc)
            procs.append(proc)

        def expect(line: str) -> None:
            for proc in procs:
                assert proc.stdout is not None
                got = proc.stdout.readline()
                assert got == f"{line}\n", proc.stderr.read() if proc.stderr else got

        expect("ready")
        go.touch()  # every process routes at once
        expect("routed")
        go2.touch()  # then each rewards the decisions its neighbour routed
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results


@pytest.mark.parametrize(
    ("workers", "decisions"),
    [(4, 2500), pytest.param(4, 10000, marks=pytest.mark.slow)],
)
async def test_four_processes_give_exact_totals(
    url: str, prefix: str, tmp_path: Path, workers: int, decisions: int
) -> None:
    results = await anyio.to_thread.run_sync(run_workers, url, prefix, tmp_path, workers, decisions)
    routed = {did: arm for res in results for did, arm in res["routed"]}
    assert len(routed) == workers * decisions
    # Feedback recorded by another process reached the arm that the routing process chose.
    for res in results:
        assert len(res["settled"]) == decisions // 2
        for did, settled_arm, routed_arm in res["settled"]:
            assert settled_arm == routed_arm == routed[did]
        assert not res["degraded"]
    pulls: dict[str, int] = defaultdict(int)
    sums: dict[str, float] = defaultdict(float)
    for did, arm in sorted(routed.items()):
        pulls[arm] += 1
        sums[arm] += reward_for(did)
    store = RedisStore(url, prefix=prefix)
    try:
        bandit = Bandit(ARMS, name="shared-router", store=store)
        st = await bandit.state()
        assert st.pulls == [pulls[a] for a in ARMS]
        assert st.reward_sum == [sums[a] for a in ARMS]  # exact: multiples of 1/1024
        assert st.total == st.reward_sum
        assert st.in_flight == [0, 0, 0]
        assert st.clock == workers * decisions
        assert len([a for a in ARMS if pulls[a]]) > 1
        for did in list(routed)[:: max(1, len(routed) // 200)]:
            assert await store.pending("shared-router", did) is None
    finally:
        await store.aclose()
