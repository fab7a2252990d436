"""`bandit-router stats`: live statistics read from a real SQLiteStore and a real Redis."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bandit_router import Bandit, BanditRouterRunnable, Prior
from bandit_router._cli_stats import register, stats_command
from bandit_router.stores import SQLiteStore, StateStore
from bandit_router.testing import FakeArm

HAS_REDIS_STORE = importlib.util.find_spec("bandit_router_redis") is not None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bandit-router")
    sub = p.add_subparsers(dest="command", required=True)
    register(sub)
    return p


def run(*argv: str) -> tuple[int, str, str]:
    """Run the stats command in-process; return (status, stdout, stderr)."""
    args = parser().parse_args(["stats", *argv])
    out, err = io.StringIO(), io.StringIO()
    old_err, sys.stderr = sys.stderr, err
    try:
        status = stats_command(args, out)
    finally:
        sys.stderr = old_err
    return status, out.getvalue(), err.getvalue()


async def fill(store: StateStore, name: str = "support") -> None:
    """Make some history: two contexts, rewards, a failure, one call left in flight."""
    bandit = Bandit(["mini", "big"], name=name, store=store, seed=1)
    for i in range(12):
        d = await bandit.choose()
        await bandit.reward(d.decision_id, 1.0 if d.arm == "big" else 0.25 * (i % 2))
    d = await bandit.choose(context="billing")
    await bandit.fail(d.decision_id)
    await bandit.choose(context="billing")  # never settled: in flight


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "router.db"

    async def make() -> None:
        store = SQLiteStore(path)
        await fill(store)
        await store.aclose()

    asyncio.run(make())
    return path


def test_table_from_sqlite(db: Path) -> None:
    status, out, err = run("--store", f"sqlite:///{db}")
    assert status == 0, err
    assert "router 'support'  context '' (global)" in out
    assert "router 'support'  context 'billing'" in out
    lines = out.splitlines()
    header = lines[1].split()
    assert header == ["arm", "pulls", "mean", "index", "failures", "in_flight"]
    rows = {line[2:].split()[0]: line[2:].split() for line in lines[2:4]}
    assert int(rows["big"][1]) + int(rows["mini"][1]) == 12
    assert float(rows["big"][2]) == 1.0  # every reward of big was 1
    assert sum(line.startswith("* ") for line in lines[2:4]) == 1  # the policy's next choice


def test_json_matches_the_store(db: Path) -> None:
    status, out, _ = run("--store", str(db), "--format", "json")
    assert status == 0
    data = json.loads(out)

    async def truth() -> dict[str, Any]:
        store = SQLiteStore(db)
        try:
            b = Bandit(["big", "mini"], name="support", store=store)
            return {
                "": await b.statistics(),
                "billing": await b.statistics("billing"),
            }
        finally:
            await store.aclose()

    expected = asyncio.run(truth())
    assert {(r["context"], r["arm"]) for r in data} == {
        ("", "big"),
        ("", "mini"),
        ("billing", "big"),
        ("billing", "mini"),
    }
    for r in data:
        s = expected[r["context"]][r["arm"]]
        assert r["router"] == "support"
        assert (r["pulls"], r["failures"], r["in_flight"]) == (s.pulls, s.failures, s.in_flight)
        assert r["mean"] == s.mean
    billing = [r for r in data if r["context"] == "billing"]
    assert sum(r["failures"] for r in billing) == 1
    assert sum(r["in_flight"] for r in billing) == 1
    assert sum(r["next"] for r in data if r["context"] == "") == 1


def test_filters_arms_priors_and_decay(db: Path) -> None:
    status, out, _ = run(
        "--store", str(db), "--name", "support", "--context", "", "--format", "json",
        "--arms", "big,mini,new", "--decay", "0.9", "--prior", "mini=0.9:100",
    )  # fmt: skip
    assert status == 0
    data = {r["arm"]: r for r in json.loads(out)}
    assert set(data) == {"big", "mini", "new"}
    assert {r["context"] for r in data.values()} == {""}
    assert data["new"]["pulls"] == 0
    assert data["new"]["index"] == "inf"  # untried: tried first
    assert data["new"]["next"] is True
    assert data["new"]["mean"] is None
    assert data["mini"]["mean"] > 0.5  # the strong prior dominates its few observations


def test_known_costs_lower_the_index(db: Path) -> None:
    _, a, _ = run("--store", str(db), "--context", "", "--format", "json")
    _, b, _ = run("--store", str(db), "--context", "", "--format", "json", "--cost", "big=0.25")
    ia = {r["arm"]: r["index"] for r in json.loads(a)}
    ib = {r["arm"]: r["index"] for r in json.loads(b)}
    assert ib["big"] == pytest.approx(ia["big"] - 0.25)
    assert ib["mini"] == ia["mini"]


def test_policy_choice_changes_the_index(db: Path) -> None:
    _, a, _ = run("--store", str(db), "--context", "", "--format", "json")
    _, b, _ = run("--store", str(db), "--context", "", "--format", "json", "--policy", "ucb1")
    ia = {r["arm"]: r["index"] for r in json.loads(a)}
    ib = {r["arm"]: r["index"] for r in json.loads(b)}
    assert ia.keys() == ib.keys()
    assert ia != ib


def test_a_router_written_by_the_runnable(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    router = BanditRouterRunnable(
        arms={"cheap": FakeArm(quality=0.3, seed=1), "good": FakeArm(quality=0.9, seed=2)},
        reward=lambda outputs: outputs.content == "right",
        store=SQLiteStore(path),
        name="qa",
        context_key=lambda q: "code" if "code" in q else "prose",
        priors={"good": Prior(0.8, 2)},
    )
    for i in range(20):
        router.invoke("code question" if i % 2 else "prose question")
    status, out, _ = run("--store", str(path), "--name", "qa", "--prior", "good=0.8:2")
    assert status == 0
    assert "router 'qa'  context 'code'" in out
    assert "router 'qa'  context 'prose'" in out
    total = sum(
        int(line[2:].split()[1])
        for line in out.splitlines()
        if line[2:].startswith(("cheap", "good"))
    )
    assert total == 20


def test_context_prior_weight_matches_the_routers_selection(tmp_path: Path) -> None:
    path = tmp_path / "seeded.db"

    async def make() -> list[float]:
        store = SQLiteStore(path)
        bandit = Bandit(["a", "b"], name="seeded", store=store, seed=3, context_prior_weight=5)
        for i in range(30):
            d = await bandit.choose(context="new" if i % 10 == 0 else "old")
            await bandit.reward(d.decision_id, 1.0 if d.arm == "a" else 0.0)
        state = await bandit.state("new")
        priors = await bandit._context_priors("new")
        sel = bandit.engine.select(state, priors=priors)
        await store.aclose()
        return list(sel.indices)

    expected = asyncio.run(make())
    args = ["--store", str(path), "--context", "new", "--arms", "a,b", "--format", "json"]
    _, plain, _ = run(*args)
    _, seeded, _ = run(*args, "--context-prior-weight", "5")
    got = [r["index"] for r in json.loads(seeded)]
    assert got == pytest.approx(expected)
    assert got != [r["index"] for r in json.loads(plain)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--store", "missing.db"], "does not exist"),
        (["--store", "postgres://x/y"], "unsupported store URL"),
        (["--store", "{db}", "--name", "nobody"], "no router named 'nobody'"),
        (["--store", "{db}", "--context", "nowhere"], "has no context 'nowhere'"),
        (["--store", "{db}", "--prior", "ghost=0.5:1"], "unknown arm"),
        (["--store", "{db}", "--cost", "ghost=0.5"], "--cost for unknown arm"),
    ],
)
def test_errors_are_one_clear_line(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = run(*[a.replace("{db}", str(db)) for a in argv])
    assert status == 1
    assert out == ""
    assert message in err
    assert err.startswith("bandit-router stats: ")
    assert not (tmp_path / "missing.db").exists()  # never created


def test_not_a_store_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("hello")
    status, _, err = run("--store", str(junk))
    assert status == 1
    assert "junk.db" in err
    assert junk.read_text() == "hello"


def test_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    asyncio.run(SQLiteStore(path).aclose())
    status, out, err = run("--store", str(path))
    assert status == 1
    assert out == ""
    assert "no statistics" in err


@pytest.mark.parametrize(
    "bad",
    [
        ["--decay", "0"],
        ["--decay", "x"],
        ["--prior", "a=2:1"],
        ["--prior", "a"],
        ["--cost", "a=-1"],
        ["--cost", "a"],
        ["--context-prior-weight", "-1"],
    ],
)
def test_bad_arguments_are_usage_errors(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["stats", "--store", "x.db", *bad])
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_help_is_complete(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["stats", "--help"])
    text = capsys.readouterr().out
    for word in (
        "--store", "--name", "--context", "--arms", "--policy", "--decay", "--prior",
        "--cost", "--context-prior-weight", "--prefix", "--format", "sqlite:///", "redis://",
        "pulls", "mean", "index", "failures", "in_flight", "exit status",
    ):  # fmt: skip
        assert word in text, word


# --- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    if not HAS_REDIS_STORE:
        pytest.skip("bandit-router-redis is not installed")
    from bandit_router_redis.testing import delete_prefix, redis_url, require_redis

    url = redis_url()
    require_redis(url)
    prefix = f"bandit_router_test:{uuid.uuid4().hex[:12]}"
    yield url, prefix
    delete_prefix(url, prefix)


def test_table_from_redis(redis_prefix: tuple[str, str]) -> None:
    from bandit_router_redis import RedisStore

    url, prefix = redis_prefix

    async def make() -> None:
        store = RedisStore(url, prefix=prefix)
        await fill(store, name="support")
        await fill(store, name="odd {name}%")  # escaped in the hash tag
        await store.aclose()

    asyncio.run(make())
    status, out, err = run("--store", url, "--prefix", prefix, "--format", "json")
    assert status == 0, err
    data = json.loads(out)
    assert {r["router"] for r in data} == {"support", "odd {name}%"}
    for name in ("support", "odd {name}%"):
        mine = [r for r in data if r["router"] == name]
        assert sum(r["pulls"] for r in mine if r["context"] == "") == 12
        assert sum(r["failures"] for r in mine if r["context"] == "billing") == 1
        assert sum(r["in_flight"] for r in mine if r["context"] == "billing") == 1
    status, out, _ = run("--store", url, "--prefix", prefix, "--name", "support")
    assert status == 0
    assert "router 'support'  context 'billing'" in out


def test_redis_unreachable_is_one_clear_line() -> None:
    if not HAS_REDIS_STORE:
        pytest.skip("bandit-router-redis is not installed")
    status, _, err = run("--store", "redis://:secret@127.0.0.1:1/0")
    assert status == 1
    assert "secret" not in err
    assert err.startswith("bandit-router stats: ")


def test_through_the_bandit_router_command(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bandit_router.cli import main

    assert main(["stats", "--store", str(db), "--context", "billing"]) == 0
    out = capsys.readouterr().out
    assert "router 'support'  context 'billing'" in out
    assert "context '' (global)" not in out
