"""SQLiteStore: persistent statistics in one file, shared by the processes of one host."""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

import anyio.to_thread

from bandit_router._engine import PendingDecision, Rules
from bandit_router._errors import (
    ConfigurationError,
    CorruptStateError,
    DuplicateDecisionError,
    StoreError,
    UnknownDecisionError,
)
from bandit_router._stats import BanditState, Outcome
from bandit_router.stores._base import Chooser
from bandit_router.stores.memory import unknown_message

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

#: Version of the file's schema, stored in its ``meta`` table; bumped on incompatible change.
SCHEMA_VERSION: Final = 1
_APP: Final = "bandit-router"
_HEADER: Final = b"SQLite format 3\x00"

_SCHEMA: Final = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE clocks (
    namespace TEXT NOT NULL, context TEXT NOT NULL, clock INTEGER NOT NULL,
    PRIMARY KEY (namespace, context));
CREATE TABLE arms (
    namespace TEXT NOT NULL, context TEXT NOT NULL, arm TEXT NOT NULL,
    n REAL NOT NULL, total REAL NOT NULL, total_sq REAL NOT NULL, stamp INTEGER NOT NULL,
    pulls INTEGER NOT NULL, reward_sum REAL NOT NULL, failures INTEGER NOT NULL,
    in_flight INTEGER NOT NULL,
    PRIMARY KEY (namespace, context, arm));
CREATE TABLE pending (
    namespace TEXT NOT NULL, decision_id TEXT NOT NULL, context TEXT NOT NULL, arm TEXT NOT NULL,
    started_at REAL NOT NULL, expires_at REAL NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (namespace, decision_id));
CREATE INDEX pending_by_age ON pending (namespace, seq);
CREATE TABLE finished (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, namespace TEXT NOT NULL, decision_id TEXT NOT NULL,
    how TEXT NOT NULL);
CREATE INDEX finished_by_id ON finished (namespace, decision_id);
"""
_TABLES: Final = {"meta", "clocks", "arms", "pending", "finished", "sqlite_sequence"}
_FIELDS: Final = ("n", "total", "total_sq", "stamp", "pulls", "reward_sum", "failures", "in_flight")
_NOTHING: Final = Outcome(reward=None, learn=None)
_SQLITE_MAX_INT: Final = 2**63 - 1

T = TypeVar("T")


def _busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` means another connection holds the lock (SQLITE_BUSY)."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY


def _set_wal(conn: sqlite3.Connection, deadline: float) -> None:
    """Switch to WAL mode, retrying while another process does the same.

    Changing the journal mode does not wait on SQLite's busy handler, so processes that open
    a new file at the same moment get ``database is locked``; retry until ``deadline``.
    """
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _implausible(st: BanditState) -> str | None:
    """Why ``st`` cannot have been written by bandit-router, or None.

    Rewards and learned values lie in [0, 1] and an arm's stamp is a past value of its
    context's clock, so these hold for every state the library writes (IEEE rounding is
    monotonic); a damaged file that breaks them must not be read as statistics. SQLite keeps
    no checksums, so a damaged number that still looks plausible cannot be detected.
    """
    tol = 1e-9
    for i, arm in enumerate(st.arms):
        if st.stamp[i] > st.clock:
            return f"arm {arm!r} is stamped {st.stamp[i]}, after its clock {st.clock}"
        if st.reward_sum[i] > st.pulls[i] * (1 + tol) + tol:
            return f"arm {arm!r} has a reward sum {st.reward_sum[i]!r} over {st.pulls[i]} pulls"
        if (
            st.total[i] > st.n[i] * (1 + tol) + tol
            or st.total_sq[i] > st.total[i] * (1 + tol) + tol
        ):
            return (
                f"arm {arm!r} has sums {st.total[i]!r}, {st.total_sq[i]!r} over a count {st.n[i]!r}"
            )
    return None


class SQLiteStore:
    """Keeps statistics in a SQLite file that several processes of one host can share.

    Every operation is one ``BEGIN IMMEDIATE`` transaction (read, compute, write, commit), so
    concurrent processes never lose an update, and a process killed mid-write leaves the file
    holding only whole updates (SQLite's write-ahead log). Blocking calls run in a worker
    thread, off the event loop. The file is created with mode 0600 and carries a schema
    version; a corrupt or foreign file raises :class:`CorruptStateError` and is left untouched.

    Args:
        path: The database file; created (with its parent folder) if missing.
        timeout: Seconds to wait for another process's lock before raising ``StoreError``.
        synchronous: SQLite's ``synchronous`` setting: ``"NORMAL"`` (default; survives a
            process crash) or ``"FULL"`` (also survives power loss, slower).

    Raises:
        CorruptStateError: If the file is not a bandit-router database, is damaged, or has a
            newer schema version.
        StoreError: If the file cannot be opened or created.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, timeout: float = 30.0, synchronous: str = "NORMAL"
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        # Checked before the file is touched: sqlite3 would raise a TypeError that does not
        # name the argument, or wait forever on a NaN deadline while another process writes.
        seconds = math.nan
        if isinstance(timeout, int | float) and not isinstance(timeout, bool):
            try:
                seconds = float(timeout)
            except OverflowError:  # an int beyond any float
                seconds = math.inf
        if not 0 <= seconds < math.inf:
            raise ConfigurationError(
                f"timeout must be a finite number of seconds >= 0, got {timeout!r}"
            )
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn = self._open(seconds, synchronous)

    # --- opening and validation -----------------------------------------------------------

    def _open(self, timeout: float, synchronous: str) -> sqlite3.Connection:
        path = self.path
        fresh = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Create the file ourselves so it is born 0600 (SQLite gives -wal/-shm the same mode).
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            os.close(fd)
            fresh = True
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot create state file {str(path)!r}: {exc}") from exc
        try:
            with open(path, "rb") as f:
                head = f.read(len(_HEADER))
        except OSError as exc:
            raise StoreError(f"cannot read state file {str(path)!r}: {exc}") from exc
        if head and head != _HEADER:
            raise CorruptStateError(
                f"{str(path)!r} is not a SQLite database (it starts with {head[:8]!r}); "
                "it was not modified"
            )
        fresh = fresh or not head
        try:
            conn = sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open state file {str(path)!r}: {exc}") from exc
        try:
            if not fresh:
                self._validate(conn)
            _set_wal(conn, time.monotonic() + timeout)
            conn.execute(f"PRAGMA synchronous={synchronous}")
            conn.execute("PRAGMA foreign_keys=OFF")
            if fresh:
                self._create(conn)
        except CorruptStateError:
            conn.close()
            raise
        except UnicodeDecodeError as exc:  # damaged text (a name, or the check's report)
            conn.close()
            raise CorruptStateError(
                f"{str(path)!r} is damaged: it holds text that is not UTF-8 ({exc}); "
                "it was not modified"
            ) from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _busy(exc):  # another process held the lock too long: not a damaged file
                raise StoreError(f"cannot open state file {str(path)!r}: {exc}") from exc
            raise CorruptStateError(
                f"{str(path)!r} is damaged or not a bandit-router database ({exc}); "
                "it was not modified"
            ) from exc
        return conn

    def _validate(self, conn: sqlite3.Connection) -> None:
        path = str(self.path)
        # SQLite writes whole pages; a partial last page is a truncated file, which
        # quick_check misses (it reads the missing bytes as zeros).
        (page,) = conn.execute("PRAGMA page_size").fetchone()
        size = os.path.getsize(self.path)
        if size % page:
            raise CorruptStateError(
                f"{path!r} is truncated: {size} bytes is not a whole number of "
                f"{page}-byte pages; it was not modified"
            )
        # integrity_check, not quick_check: it also checks that every index matches its
        # table, and a damaged index would hide an arm's row (its statistics silently read
        # as zero). It costs ~0.5 s on a file holding 100,000 pending and finished decisions.
        check = conn.execute("PRAGMA integrity_check").fetchone()
        if check is None or check[0] != "ok":
            raise CorruptStateError(f"{path!r} failed SQLite's integrity check: {check!r}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            # An empty database another process is creating right now: wait for its schema.
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("COMMIT")
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not tables:
                self._create(conn)
                return
        if "meta" not in tables:
            raise CorruptStateError(
                f"{path!r} is a SQLite database but not a bandit-router state file "
                f"(tables {sorted(tables)}); it was not modified"
            )
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("application") != _APP:
            raise CorruptStateError(
                f"{path!r} is not a bandit-router state file (application "
                f"{meta.get('application')!r}); it was not modified"
            )
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise CorruptStateError(
                f"{path!r} has schema version {version!r}; this bandit-router reads version "
                f"{SCHEMA_VERSION}; it was not modified"
            )
        if not tables <= _TABLES or not {"clocks", "arms", "pending", "finished"} <= tables:
            raise CorruptStateError(f"{path!r} has unexpected tables {sorted(tables)}")

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            if exists is None:
                # executescript() would commit first; run the statements inside our transaction.
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("application", _APP), ("schema_version", str(SCHEMA_VERSION))],
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if exists is not None:
            self._validate(conn)

    # --- the transaction runner --------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Cursor], T]) -> T:
        return await anyio.to_thread.run_sync(self._transaction, fn)

    def _transaction(self, fn: Callable[[sqlite3.Cursor], T]) -> T:
        with self._lock:
            conn = self._conn
            try:
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {str(self.path)!r}: {exc}") from exc
            try:
                result = fn(cur)
            except BaseException as exc:
                conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.DatabaseError):
                    raise StoreError(f"SQLite store {str(self.path)!r}: {exc}") from exc
                if isinstance(exc, UnicodeDecodeError):  # a damaged text value in a row
                    raise CorruptStateError(
                        f"SQLite store {str(self.path)!r} holds text that is not UTF-8: {exc}"
                    ) from exc
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise StoreError(f"SQLite store {str(self.path)!r}: {exc}") from exc
            return result

    # --- row helpers (inside a transaction) ----------------------------------------------------

    def _load(self, cur: sqlite3.Cursor, ns: str, ctx: str, arms: tuple[str, ...]) -> BanditState:
        row = cur.execute(
            "SELECT clock FROM clocks WHERE namespace=? AND context=?", (ns, ctx)
        ).fetchone()
        st = BanditState(arms, clock=0 if row is None else row[0])
        if row is not None and (not isinstance(row[0], int) or row[0] < 0):
            raise CorruptStateError(f"{str(self.path)!r}: bad clock {row[0]!r} for {ns!r}/{ctx!r}")
        marks = ",".join("?" * len(arms))
        rows = cur.execute(
            f"SELECT arm, {', '.join(_FIELDS)} FROM arms "
            f"WHERE namespace=? AND context=? AND arm IN ({marks})",
            (ns, ctx, *arms),
        ).fetchall()
        for r in rows:
            try:
                st.set_arm_record(arms.index(r[0]), dict(zip(_FIELDS, r[1:], strict=True)))
            except ValueError as exc:
                raise CorruptStateError(
                    f"{str(self.path)!r}: arm {r[0]!r} of {ns!r}/{ctx!r} is corrupt: {exc}"
                ) from exc
        why = _implausible(st)
        if why is not None:
            raise CorruptStateError(f"{str(self.path)!r}: {ns!r}/{ctx!r} is corrupt: {why}")
        return st

    def _write(self, cur: sqlite3.Cursor, ns: str, ctx: str, st: BanditState, i: int) -> None:
        rec = st.arm_record(i)
        cur.execute(
            "INSERT OR REPLACE INTO arms (namespace, context, arm, "
            f"{', '.join(_FIELDS)}) VALUES (?, ?, ?, {', '.join('?' * len(_FIELDS))})",
            (ns, ctx, st.arms[i], *(rec[f] for f in _FIELDS)),
        )
        cur.execute(
            "INSERT OR REPLACE INTO clocks (namespace, context, clock) VALUES (?, ?, ?)",
            (ns, ctx, st.clock),
        )

    def _apply(
        self,
        cur: sqlite3.Cursor,
        ns: str,
        ctx: str,
        arm: str,
        outcome: Outcome,
        rules: Rules,
        release: bool,
    ) -> None:
        st = self._load(cur, ns, ctx, (arm,))
        if release:
            st.in_flight[0] = max(st.in_flight[0] - 1, 0)
        st.apply(0, outcome, rules.decay)
        self._write(cur, ns, ctx, st, 0)

    def _finish(self, cur: sqlite3.Cursor, ns: str, did: str, how: str, rules: Rules) -> None:
        cur.execute("DELETE FROM pending WHERE namespace=? AND decision_id=?", (ns, did))
        cur.execute(
            "INSERT INTO finished (namespace, decision_id, how) VALUES (?, ?, ?)", (ns, did, how)
        )
        seq = cur.lastrowid or 0
        if seq % 256 == 0:  # trim now and then, not on every write
            cur.execute(
                "DELETE FROM finished WHERE namespace=? AND seq NOT IN "
                "(SELECT seq FROM finished WHERE namespace=? ORDER BY seq DESC LIMIT ?)",
                # SQLite integers are 64-bit; a larger bound (valid: any int >= 1) means "all".
                (ns, ns, min(rules.max_pending, _SQLITE_MAX_INT)),
            )

    def _expire(self, cur: sqlite3.Cursor, ns: str, rules: Rules, now: float, room: int) -> int:
        (count,) = cur.execute("SELECT COUNT(*) FROM pending WHERE namespace=?", (ns,)).fetchone()
        over = max(count + room - rules.max_pending, 0)
        rows = cur.execute(
            "SELECT decision_id, context, arm, expires_at FROM pending WHERE namespace=? "
            "ORDER BY seq",
            (ns,),
        )
        doomed: list[tuple[str, str, str]] = []
        for did, ctx, arm, expires_at in rows:
            if expires_at > now and len(doomed) >= over:
                break
            doomed.append((did, ctx, arm))
        for did, ctx, arm in doomed:
            self._apply(cur, ns, ctx, arm, rules.expired, rules, release=True)
            self._finish(cur, ns, did, "expired", rules)
        return len(doomed)

    # --- the StateStore protocol -------------------------------------------------------------

    async def load(
        self, namespace: str, context: str, arms: tuple[str, ...], rules: Rules
    ) -> BanditState:
        """See :meth:`StateStore.load`."""
        return await self._run(lambda cur: self._load(cur, namespace, context, arms))

    async def begin(
        self,
        namespace: str,
        context: str,
        arms: tuple[str, ...],
        choose: Chooser,
        decision_id: str,
        rules: Rules,
        now: float,
    ) -> str:
        """See :meth:`StateStore.begin`."""
        # Set (under self._lock) when the caller was cancelled: a begin that has not run yet
        # must then not run, since nobody would ever settle the decision it records.
        abandoned: list[bool] = []

        def tx(cur: sqlite3.Cursor) -> str | None:
            if abandoned:
                return None
            if cur.execute(
                "SELECT 1 FROM pending WHERE namespace=? AND decision_id=? UNION ALL "
                "SELECT 1 FROM finished WHERE namespace=? AND decision_id=?",
                (namespace, decision_id, namespace, decision_id),
            ).fetchone():
                raise DuplicateDecisionError(f"decision id {decision_id!r} was already used")
            self._expire(cur, namespace, rules, now, room=1)
            st = self._load(cur, namespace, context, arms)
            arm = choose(st.copy())  # a snapshot: the chooser may keep it, we change st below
            i = st.index(arm)
            st.in_flight[i] += 1
            self._write(cur, namespace, context, st, i)
            (seq,) = cur.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM pending WHERE namespace=?", (namespace,)
            ).fetchone()
            cur.execute(
                "INSERT INTO pending (namespace, decision_id, context, arm, started_at, "
                "expires_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (namespace, decision_id, context, arm, now, now + rules.pending_ttl, seq),
            )
            return arm

        def undo(cur: sqlite3.Cursor) -> None:
            # Runs under self._lock like tx: either tx already committed (release what it
            # recorded) or it has not started and now never will (abandoned is set).
            abandoned.append(True)
            row = cur.execute(
                "SELECT context, arm FROM pending WHERE namespace=? AND decision_id=?",
                (namespace, decision_id),
            ).fetchone()
            if row is not None:
                self._apply(cur, namespace, row[0], row[1], _NOTHING, rules, release=True)
                self._finish(cur, namespace, decision_id, "settled", rules)

        try:
            arm = await self._run(tx)
        except anyio.get_cancelled_exc_class():
            # An asyncio task.cancel() does not stop the worker thread: the transaction may
            # still commit after the caller has gone, leaking an in-flight slot and a pending
            # decision until pending_ttl. Undo it (a second cancellation of this very caller
            # during the undo is not covered).
            with anyio.CancelScope(shield=True):
                await self._run(undo)
            raise
        assert arm is not None  # only an abandoned begin returns None, and it raised above
        return arm

    async def settle(
        self, namespace: str, decision_id: str, outcome: Outcome, rules: Rules, now: float
    ) -> PendingDecision:
        """See :meth:`StateStore.settle`."""

        def tx(cur: sqlite3.Cursor) -> PendingDecision | str:
            self._expire(cur, namespace, rules, now, room=0)
            row = cur.execute(
                "SELECT context, arm, started_at, expires_at FROM pending "
                "WHERE namespace=? AND decision_id=?",
                (namespace, decision_id),
            ).fetchone()
            if row is None:
                how = cur.execute(
                    "SELECT how FROM finished WHERE namespace=? AND decision_id=? "
                    "ORDER BY seq DESC LIMIT 1",
                    (namespace, decision_id),
                ).fetchone()
                # Raised after the commit: the expiries above stand (as in InMemoryStore),
                # else a decision reported as expired would stay pending and in flight.
                return unknown_message(decision_id, how and how[0])
            ctx, arm, started, expires = row
            self._apply(cur, namespace, ctx, arm, outcome, rules, release=True)
            self._finish(cur, namespace, decision_id, "settled", rules)
            return PendingDecision(decision_id, ctx, arm, started, expires)

        result = await self._run(tx)
        if isinstance(result, str):
            raise UnknownDecisionError(result)
        return result

    async def reroute(
        self,
        namespace: str,
        decision_id: str,
        arms: tuple[str, ...],
        choose: Chooser,
        outcome: Outcome,
        rules: Rules,
        now: float,
    ) -> str:
        """See :meth:`StateStore.reroute`."""

        def tx(cur: sqlite3.Cursor) -> tuple[str, bool]:
            self._expire(cur, namespace, rules, now, room=0)
            row = cur.execute(
                "SELECT context, arm FROM pending WHERE namespace=? AND decision_id=?",
                (namespace, decision_id),
            ).fetchone()
            if row is None:
                how = cur.execute(
                    "SELECT how FROM finished WHERE namespace=? AND decision_id=? "
                    "ORDER BY seq DESC LIMIT 1",
                    (namespace, decision_id),
                ).fetchone()
                return unknown_message(decision_id, how and how[0]), False
            ctx, old = row
            self._apply(cur, namespace, ctx, old, outcome, rules, release=True)
            st = self._load(cur, namespace, ctx, arms)
            arm = choose(st.copy())  # a raise rolls the whole transaction back
            i = st.index(arm)
            st.in_flight[i] += 1
            self._write(cur, namespace, ctx, st, i)
            cur.execute(
                "UPDATE pending SET arm=? WHERE namespace=? AND decision_id=?",
                (arm, namespace, decision_id),
            )
            return arm, True

        result, ok = await self._run(tx)
        if not ok:
            raise UnknownDecisionError(result)
        return result

    async def observe(
        self,
        namespace: str,
        context: str,
        arms: tuple[str, ...],
        arm: str,
        outcome: Outcome,
        rules: Rules,
    ) -> None:
        """See :meth:`StateStore.observe`."""
        if arm not in arms:
            BanditState(arms).index(arm)  # raises UnknownArmError naming the arm
        await self._run(
            lambda cur: self._apply(cur, namespace, context, arm, outcome, rules, release=False)
        )

    async def pending(self, namespace: str, decision_id: str) -> PendingDecision | None:
        """See :meth:`StateStore.pending`."""

        def tx(cur: sqlite3.Cursor) -> PendingDecision | None:
            row = cur.execute(
                "SELECT context, arm, started_at, expires_at FROM pending "
                "WHERE namespace=? AND decision_id=?",
                (namespace, decision_id),
            ).fetchone()
            return None if row is None else PendingDecision(decision_id, *row)

        return await self._run(tx)

    async def expire(self, namespace: str, rules: Rules, now: float) -> int:
        """See :meth:`StateStore.expire`."""
        return await self._run(lambda cur: self._expire(cur, namespace, rules, now, room=0))

    async def contexts(self, namespace: str) -> list[str]:
        """See :meth:`StateStore.contexts`."""
        return await self._run(
            lambda cur: [
                r[0]
                for r in cur.execute(
                    "SELECT context FROM clocks WHERE namespace=? ORDER BY context", (namespace,)
                )
            ]
        )

    async def aclose(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"
