"""SQLiteStore's file: schema version, mode, concurrent creation, foreign and corrupt files."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from bandit_router._engine import Rules
from bandit_router._errors import CorruptStateError
from bandit_router._stats import Outcome
from bandit_router.stores import Chooser, SQLiteStore
from bandit_router.stores.sqlite import SCHEMA_VERSION

from ._procs import StoreSpec, worker_command, worker_env

ARMS = ("a", "b", "c")
RULES = Rules(decay=0.9, expired=Outcome(None, None), pending_ttl=3600.0, max_pending=100_000)


def pick(arm: str) -> Chooser:
    return lambda state: arm


def populate(path: Path, decisions: int = 400) -> None:
    """Write a real state file with some pages: contexts, arms, pending and finished rows."""

    async def run() -> None:
        store = SQLiteStore(path)
        try:
            for i in range(decisions):
                ctx = f"context-{i % 40}"
                await store.begin("ns", ctx, ARMS, pick(ARMS[i % 3]), f"id-{i}", RULES, 0.0)
                if i % 3:
                    await store.settle("ns", f"id-{i}", Outcome(0.5, 0.5), RULES, 0.0)
        finally:
            await store.aclose()

    anyio.run(run)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_meta(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- a new file ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_a_new_file_is_private_and_carries_its_schema_version(tmp_path: Path, mask: int) -> None:
    path = tmp_path / "sub" / "state.db"
    with umask(mask):
        store = SQLiteStore(path)
        try:
            assert mode(path) == 0o600
            anyio.run(store.observe, "ns", "", ARMS, "a", Outcome(1.0, 1.0), RULES)
            # The write-ahead log SQLite creates next to it inherits the mode.
            sidecars = [p for p in tmp_path.joinpath("sub").iterdir() if p != path]
            assert sidecars
            assert all(mode(p) == 0o600 for p in sidecars)
        finally:
            anyio.run(store.aclose)
    assert read_meta(path) == {
        "application": "bandit-router",
        "schema_version": str(SCHEMA_VERSION),
    }
    assert mode(path) == 0o600


def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    store = SQLiteStore(path)
    anyio.run(store.aclose)
    assert read_meta(path)["schema_version"] == str(SCHEMA_VERSION)


@pytest.mark.parametrize(
    ("processes", "rounds"), [(4, 30), pytest.param(6, 150, marks=pytest.mark.slow)]
)
def test_processes_creating_the_same_file_at_once(
    tmp_path: Path, processes: int, rounds: int
) -> None:
    """Every process opening a new file at the same moment gets a working store."""
    specs = [
        StoreSpec("sqlite", "bandit_router.stores:SQLiteStore", args=(str(tmp_path / f"{k}.db"),))
        for k in range(rounds)
    ]
    payload = {"specs": [s.to_json() for s in specs], "start": time.time() + 1.5, "step": 0.05}
    procs = [
        subprocess.Popen(
            worker_command("open_at", payload),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=worker_env(),
        )
        for _ in range(processes)
    ]
    outs = []
    for proc in procs:
        with proc:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            outs.append(json.loads(out.splitlines()[-1])["results"])
    failures = [r for results in outs for r in results if r != "ok"]
    assert failures == []
    for k in range(rounds):
        assert read_meta(tmp_path / f"{k}.db")["application"] == "bandit-router"


# --- foreign and corrupt files: CorruptStateError, and the file is left untouched --------------


def _random_bytes(path: Path, real: Path) -> None:
    path.write_bytes(random.Random(1).randbytes(8192))


def _text(path: Path, real: Path) -> None:
    path.write_text("router settings\nthis is not a database\n" * 200)


def _sqlite_header_then_garbage(path: Path, real: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + random.Random(2).randbytes(8192 - 16))


def _truncated(cut: Callable[[int], int]) -> Callable[[Path, Path], None]:
    def make(path: Path, real: Path) -> None:
        data = real.read_bytes()
        assert len(data) >= 8 * 4096, "the real state file is too small to truncate meaningfully"
        path.write_bytes(data[: cut(len(data))])

    return make


def _foreign_app(path: Path, real: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, user INTEGER, total REAL);"
        "INSERT INTO users (name) VALUES ('ada'), ('grace');"
        "INSERT INTO orders (user, total) VALUES (1, 9.5);"
    )
    conn.close()


def _foreign_meta(path: Path, real: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('application', 'another-app'), ('schema_version', '1');"
    )
    conn.close()


def _edit_meta(sql: str) -> Callable[[Path, Path], None]:
    def make(path: Path, real: Path) -> None:
        path.write_bytes(real.read_bytes())
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(sql)
        conn.close()
        assert not path.with_name(path.name + "-wal").exists()

    return make


BAD_FILES: dict[str, Callable[[Path, Path], None]] = {
    "random-bytes": _random_bytes,
    "text": _text,
    "sqlite-header-then-garbage": _sqlite_header_then_garbage,
    "truncated-to-10-bytes": _truncated(lambda n: 10),
    "truncated-to-100-bytes": _truncated(lambda n: 100),
    "truncated-to-the-first-page": _truncated(lambda n: 4096),
    "truncated-to-half": _truncated(lambda n: n // 2),
    "truncated-by-a-page": _truncated(lambda n: n - 4096),
    "truncated-by-one-byte": _truncated(lambda n: n - 1),
    "another-application": _foreign_app,
    "another-application-with-meta": _foreign_meta,
    "newer-schema-version": _edit_meta(
        f"UPDATE meta SET value='{SCHEMA_VERSION + 1}' WHERE key='schema_version'"
    ),
    "no-schema-version": _edit_meta("DELETE FROM meta WHERE key='schema_version'"),
}


@pytest.fixture(scope="module")
def real_state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("real") / "real.db"
    populate(path)
    return path


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_a_bad_file_is_refused_and_left_untouched(
    tmp_path: Path, real_state_file: Path, kind: str
) -> None:
    path = tmp_path / "state.db"
    BAD_FILES[kind](path, real_state_file)
    digest, listing = sha256(path), sorted(os.listdir(tmp_path))
    with pytest.raises(CorruptStateError) as info:
        SQLiteStore(path)
    assert str(path) in str(info.value)
    assert "not modified" in str(info.value)
    if kind == "newer-schema-version":
        assert f"schema version '{SCHEMA_VERSION + 1}'" in str(info.value)
    assert sha256(path) == digest
    assert sorted(os.listdir(tmp_path)) == listing
    # Refused again, the same way: nothing was repaired or initialised behind our back.
    with pytest.raises(CorruptStateError):
        SQLiteStore(path)
    assert sha256(path) == digest


def test_the_real_state_file_itself_opens(tmp_path: Path, real_state_file: Path) -> None:
    """The control for the test above: an intact copy opens and holds its state."""
    path = tmp_path / "copy.db"
    path.write_bytes(real_state_file.read_bytes())
    store = SQLiteStore(path)
    try:
        st = anyio.run(store.load, "ns", "context-1", ARMS, RULES)
        assert sum(st.pulls) + sum(st.in_flight) == 10
        assert anyio.run(store.contexts, "ns") == sorted(f"context-{i}" for i in range(40))
    finally:
        anyio.run(store.aclose)
