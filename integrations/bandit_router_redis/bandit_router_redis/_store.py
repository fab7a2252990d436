"""RedisStore: one learning state shared by many processes and hosts, through Redis.

How it works (the long version is docs/redis.md):

* All state lives in Redis, under keys ``<prefix>:{<namespace>}:...`` (one hash tag per
  namespace, so a namespace's keys share one Redis Cluster slot): one hash per context with the
  arms' statistics, the context's decay clock and a version number; the pending decisions (a
  hash and a sorted set by expiry); the recently finished ids (bounded); the ids of applied
  observations (bounded); per-context leases.
* Every change is made by one Lua script (``flush.lua``), atomically. Operations that need the
  Python chooser (``begin``, ``reroute``) use optimistic concurrency: the client chooses on the
  context's state at version ``v`` and the script applies the choice only if the context is
  still at ``v``. A conflict returns the fresh state and gives the caller a short lease on the
  context (other writers wait), so the retry succeeds: no livelock under contention.
* Each event loop has one connection pool and, per namespace, one *lane* that sends the
  operations queued while the previous script ran as one batch (one round trip for the
  batch): a process with many concurrent tasks makes few, larger script calls. The lane keeps
  the last state each reply returned, so a ``begin`` usually needs no separate load.
* Every operation carries a token, so a script that ran but whose reply was lost can be sent
  again and is not applied twice.
* When Redis cannot be reached (after it once could), the store degrades: selection uses the
  last known state, updates are buffered (bounded) and written back, in order and each exactly
  once, when Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import re
import threading
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Final, TypeVar, cast

import anyio.to_thread
import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bandit_router import (
    ConfigurationError,
    CorruptStateError,
    DuplicateDecisionError,
    StoreError,
    UnknownDecisionError,
)
from bandit_router.stores import BanditState, Chooser, Outcome, PendingDecision, Rules
from bandit_router.stores.memory import unknown_message

__all__ = ["RedisStore", "mask_url"]

_LOG: Final = logging.getLogger("bandit_router_redis")
_SCRIPT: Final = resources.files("bandit_router_redis").joinpath("flush.lua").read_text("utf-8")
#: Errors that mean "Redis is not reachable right now" (refused, reset, timed out, loading).
_DOWN: Final = (RedisConnectionError, RedisTimeoutError, OSError)
_SCHEMES: Final = ("redis", "rediss", "unix")
_MAX_CACHED_CONTEXTS: Final = 10_000
_BUSY_SLEEP: Final = 0.001
#: Expected version meaning "do not apply: hold the context for me and send its state".
_ACQUIRE: Final = -3
#: Seconds a context counts as contended after a conflict (ask for it before choosing).
_CONTENDED_FOR: Final = 0.05
#: The outcome of a decision released without a reward.
_NOTHING: Final = Outcome(reward=None, learn=None)

T = TypeVar("T")


def mask_url(url: str) -> str:
    """Return ``url`` with its password (in the user part or the query) replaced by ``***``.

    Passwords often hold characters that should have been percent-encoded but were not
    (``#``, ``?``, ``/``, ``@``), which a URL parser reads as the start of the fragment, the
    query or the path: so everything up to the *last* ``@`` counts as user information, and a
    ``password=`` query value runs to the next ``&`` whatever it holds. Masking too much is
    harmless; masking too little leaks the password into messages and logs.

    Args:
        url: A Redis URL such as ``redis://user:secret@host:6379/0``.

    Returns:
        The same URL, safe to log: ``redis://user:***@host:6379/0``.
    """
    if not isinstance(url, str):
        return "<unparsable Redis URL>"
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    if "@" in rest:
        userinfo, _, tail = rest.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        rest = f"{user}:***@{tail}" if colon else f"{user}@{tail}"
    return head + sep + _QUERY_PASSWORD.sub(r"\1***", rest)


#: A ``password=`` query parameter and its value (to the next ``&``, whatever it holds).
_QUERY_PASSWORD: Final = re.compile(r"(?i)([?&;]password=)[^&;]*")


def _tag(namespace: str) -> str:
    """Escape a namespace for use inside a hash tag ``{...}`` (no braces, no ambiguity)."""
    return namespace.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def _widen(state: BanditState, arms: Iterable[str]) -> BanditState:
    """Return ``state`` itself when it covers ``arms``, else a copy with the missing arms added."""
    missing = tuple(a for a in dict.fromkeys(arms) if a not in state.arms)
    if not missing:
        return state
    return _project(state, state.arms + missing)


def _order(first: tuple[str, ...], rest: tuple[str, ...]) -> tuple[str, ...]:
    """``first``, then the arms of ``rest`` not in it (a state's arms in the caller's order)."""
    if first == rest:
        return first
    return tuple(dict.fromkeys((*first, *rest)))


def _outcome(o: Outcome) -> list[Any]:
    return [
        False if o.reward is None else o.reward,
        False if o.learn is None else o.learn,
        o.failure,
    ]


class _RulesTable:
    """Interns the :class:`Rules` of one script call; operations refer to them by position."""

    __slots__ = ("index", "rows")

    def __init__(self) -> None:
        self.index: dict[Rules, int] = {}
        self.rows: list[list[Any]] = []

    def __call__(self, rules: Rules) -> int:
        i = self.index.get(rules)
        if i is None:
            i = self.index[rules] = len(self.rows) + 1  # Lua counts from 1
            e = rules.expired
            self.rows.append(
                [
                    False if rules.decay is None else rules.decay,
                    False if e.reward is None else e.reward,
                    False if e.learn is None else e.learn,
                    e.failure,
                    rules.max_pending,
                ]
            )
        return i


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


@dataclass(slots=True)
class _Snap:
    """The last known state of one context: its version (-1: unknown or changed locally)."""

    version: int
    state: BanditState


def _snap(key: str, version: int, clock: int, arms: list[str], recs: list[Any]) -> _Snap:
    """Build a context's state from its arms' records (JSON arrays of 8 numbers)."""
    st = BanditState(tuple(arms), clock)
    n, total, total_sq, stamp = st.n, st.total, st.total_sq, st.stamp
    pulls, reward_sum, failures, in_flight = st.pulls, st.reward_sum, st.failures, st.in_flight
    try:
        for i, raw in enumerate(recs):
            f = raw[1:-1].split("," if isinstance(raw, str) else b",")
            if len(f) != 8:
                raise ValueError(f"arm {arms[i]!r} has {len(f)} fields, expected 8")
            n[i] = float(f[0])
            total[i] = float(f[1])
            total_sq[i] = float(f[2])
            stamp[i] = int(f[3])
            pulls[i] = int(f[4])
            reward_sum[i] = float(f[5])
            failures[i] = int(f[6])
            in_flight[i] = int(f[7])
            if not math.isfinite(n[i] + total[i] + total_sq[i] + reward_sum[i]):
                raise ValueError(f"arm {arms[i]!r} has a statistic that is not finite")
    except (ValueError, TypeError) as exc:
        raise CorruptStateError(f"Redis hash {key!r} is not a bandit-router state: {exc}") from exc
    return _Snap(version, st)


def _parse_hash(key: str, fields: dict[Any, Any]) -> _Snap:
    """Build a context's state from its hash, as HGETALL returns it."""
    version = clock = 0
    arms: list[str] = []
    recs: list[Any] = []
    try:
        for k, v in fields.items():
            name = k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else str(k)
            if name == "version":
                version = int(v)
            elif name == "clock":
                clock = int(v)
            elif name.startswith("a:"):
                arms.append(name[2:])
                recs.append(v)
    except (ValueError, TypeError) as exc:
        raise CorruptStateError(f"Redis hash {key!r} is not a bandit-router state: {exc}") from exc
    return _snap(key, version, clock, arms, recs)


def _parse_reply_state(base: str, flat: list[Any]) -> tuple[str, _Snap]:
    """Parse one state of a script reply: [context, version, clock, arm, record, ...]."""
    ctx = str(flat[0])
    key = f"{base}:state:{ctx}"
    try:
        version, clock = int(flat[1]), int(flat[2])
    except (ValueError, TypeError, IndexError) as exc:
        raise CorruptStateError(f"Redis hash {key!r} is not a bandit-router state: {exc}") from exc
    return ctx, _snap(key, version, clock, [str(a) for a in flat[3::2]], flat[4::2])


def _project(state: BanditState, arms: tuple[str, ...]) -> BanditState:
    """Return a copy of ``state`` over exactly ``arms`` (missing arms empty); no validation."""
    if state.arms == arms:
        return state.copy()
    out = BanditState(arms, state.clock)
    where = {a: i for i, a in enumerate(state.arms)}
    for j, arm in enumerate(arms):
        i = where.get(arm)
        if i is not None:
            out.n[j] = state.n[i]
            out.total[j] = state.total[i]
            out.total_sq[j] = state.total_sq[i]
            out.stamp[j] = state.stamp[i]
            out.pulls[j] = state.pulls[i]
            out.reward_sum[j] = state.reward_sum[i]
            out.failures[j] = state.failures[i]
            out.in_flight[j] = state.in_flight[i]
    return out


def _reply(raw: Any) -> tuple[list[Any], list[Any], list[str], list[str]]:
    """Decode a script reply (one JSON string; Lua's cjson writes empty arrays as {})."""
    results, states, granted, held = json.loads(raw)
    return (results or []), (states or []), (granted or []), (held or [])


# --- operations ------------------------------------------------------------------------------


class _Op:
    """One queued store operation; ``fut`` is resolved with its result."""

    __slots__ = ("first", "fut", "tok")

    def __init__(self, tok: str) -> None:
        self.tok = tok
        self.fut: asyncio.Future[Any] | None = None
        self.first = time.monotonic()


class _Begin(_Op):
    __slots__ = ("arm", "arms", "choose", "ctx", "did", "now", "rules")

    def __init__(
        self,
        tok: str,
        ctx: str,
        arms: tuple[str, ...],
        choose: Chooser,
        did: str,
        rules: Rules,
        now: float,
    ) -> None:
        super().__init__(tok)
        self.ctx, self.arms, self.choose, self.did = ctx, arms, choose, did
        self.rules, self.now = rules, now
        self.arm: str | None = None


class _Reroute(_Op):
    __slots__ = ("arm", "arms", "choose", "ctx", "did", "now", "old", "outcome", "rules")

    def __init__(
        self,
        tok: str,
        did: str,
        arms: tuple[str, ...],
        choose: Chooser,
        outcome: Outcome,
        rules: Rules,
        now: float,
    ) -> None:
        super().__init__(tok)
        self.did, self.arms, self.choose, self.outcome = did, arms, choose, outcome
        self.rules, self.now = rules, now
        self.ctx: str | None = None  # the decision's context and arm, once known
        self.old: str | None = None
        self.arm: str | None = None


class _Settle(_Op):
    __slots__ = ("did", "now", "outcome", "rules")

    def __init__(self, tok: str, did: str, outcome: Outcome, rules: Rules, now: float) -> None:
        super().__init__(tok)
        self.did, self.outcome, self.rules, self.now = did, outcome, rules, now


class _Observe(_Op):
    __slots__ = ("arm", "ctx", "outcome", "rules")

    def __init__(self, tok: str, ctx: str, arm: str, outcome: Outcome, rules: Rules) -> None:
        super().__init__(tok)
        self.ctx, self.arm, self.outcome, self.rules = ctx, arm, outcome, rules


class _Expire(_Op):
    __slots__ = ("now", "rules")

    def __init__(self, tok: str, rules: Rules, now: float) -> None:
        super().__init__(tok)
        self.rules, self.now = rules, now


class _Peek(_Op):
    """Learn a pending decision's context and arm (for a reroute this lane did not begin)."""

    __slots__ = ("of",)

    def __init__(self, of: _Reroute) -> None:
        super().__init__(of.tok)
        self.of = of


# --- the lane: one namespace on one event loop ---------------------------------------------


class _Lane:
    """Batches one namespace's operations on one event loop, and keeps its local knowledge.

    Local knowledge: the last known state of each context (``cache``), the decisions begun
    here and not yet settled here (``records``, for reroutes and for settles during an outage),
    and, while Redis is unreachable, the buffer of updates to write back.
    """

    def __init__(self, link: _Link, namespace: str) -> None:
        self.link = link
        self.store = link.store
        self.namespace = namespace
        self.base = f"{link.store.prefix}:{{{_tag(namespace)}}}"
        self.key_pending = f"{self.base}:pending"
        self.token = uuid.uuid4().hex[:16]
        self.wake_key = f"{self.base}:wake:{self.token}"
        self._ids = itertools.count()
        self.queue: list[_Op] = []
        self.running = False
        self.task: asyncio.Task[None] | None = None
        self.cache: OrderedDict[str, _Snap] = OrderedDict()
        self.records: OrderedDict[str, PendingDecision] = OrderedDict()
        self.offline_only: set[str] = set()  # begun during an outage, begin not buffered
        self.finished_local: OrderedDict[str, str] = OrderedDict()  # during an outage
        self.leases: dict[str, float] = {}  # contexts held -> since when (monotonic)
        self.contended: dict[str, float] = {}  # context -> until when to ask before choosing
        self.blocked: set[str] = set()  # contexts another lane holds: wait, then ask
        self.buffer: deque[_Op] = deque()
        self.inflight: list[_Op] = []

    def new_token(self) -> str:
        return f"{self.token}:{next(self._ids)}"

    def state_key(self, context: str) -> str:
        return f"{self.base}:state:{context}"

    # --- submitting ------------------------------------------------------------------------

    async def submit(self, op: _Op) -> Any:
        if self.store.closed:
            raise StoreError(f"{self.store!r} is closed")
        if self.link.degraded:
            return self.offline(op)
        fut: asyncio.Future[Any] = self.link.loop.create_future()
        op.fut = fut
        self.post(op)
        return await fut

    def post(self, op: _Op) -> None:
        """Queue ``op`` for the next script call, without waiting for its result."""
        if self.link.degraded:
            self.offline(op)
            return
        self.queue.append(op)
        if not self.running:
            self.running = True
            self.task = self.link.loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                if self.link.degraded:
                    batch, self.queue = self.queue, []
                    for op in batch:
                        self._resolve_offline(op)
                    return
                if not self.queue and not self.leases:
                    return
                batch = self.queue[: self.store.max_batch]
                del self.queue[: self.store.max_batch]
                pause = await self._flush([op for op in batch if not _done(op)])
                if self._all_blocked():
                    await self._wait_turn()
                else:
                    # Let the callers just answered run first: they queue their next
                    # operations, which then go in one batch.
                    await asyncio.sleep(pause)
        except BaseException as exc:
            pending, self.queue = [*self.inflight, *self.queue], []
            for op in pending:
                _fail(op, StoreError(f"the Redis store stopped: {exc!r}"))
            raise
        finally:
            self.running = False

    def _all_blocked(self) -> bool:
        """Whether every queued operation waits for a context another lane holds."""
        if not self.blocked or not self.queue or self.leases or self.link.degraded:
            return False
        blocked = self.blocked
        return all(self._context_of(op) in blocked for op in self.queue)

    async def _wait_turn(self) -> None:
        """Wait until the holder hands this lane the context (BLPOP, no polling)."""
        timeout = min(self.store.lease_ms / 1000, 0.1)
        try:
            got = await cast(Any, self.link.client.blpop([self.wake_key], timeout=timeout))
        except _DOWN as exc:
            if self.store.ever_connected:
                self.link.down(exc)
            return
        except RedisError:
            await asyncio.sleep(_BUSY_SLEEP)
            return
        if got:
            ctx, snap = _parse_reply_state(self.base, json.loads(got[1]))
            self.remember_state(ctx, snap, authoritative=True)
            self.leases.setdefault(ctx, time.monotonic())
            self.blocked.discard(ctx)

    # --- one round trip ----------------------------------------------------------------------

    async def _flush(self, batch: list[_Op]) -> float:
        """Send ``batch`` as one script call and dispatch the results; return a pause (s)."""
        sent, payload, groups, held_back = self._build(batch)
        if held_back:
            self.queue[:0] = held_back
        if not sent and not payload["rel"] and not payload["g"]:
            return 0.0
        self.inflight = sent
        try:
            reply = await self.link.call(self.key_pending, payload)
        except _DOWN as exc:
            if not self.store.ever_connected:
                err = self.store.unreachable(exc)
                for op in sent:
                    _fail(op, err)
                return 0.0
            self.link.down(exc)
            for op in sent:
                self._resolve_offline(op)
            return 0.0
        except RedisError as exc:
            err = StoreError(f"Redis at {self.store.masked_url} refused a script call: {exc}")
            for op in sent:
                _fail(op, err)
            return 0.0
        except Exception as exc:  # e.g. an id that cannot be encoded
            err = StoreError(f"cannot send to Redis at {self.store.masked_url}: {exc!r}")
            for op in sent:
                _fail(op, err)
            return 0.0
        finally:
            self.inflight = []
        self.store.ever_connected = True
        try:
            return self._dispatch(reply, sent, groups, payload["keep"])
        except Exception as exc:
            err = exc if isinstance(exc, StoreError) else StoreError(f"bad reply: {exc!r}")
            for op in sent:
                _fail(op, err)
            return 0.0

    def _context_of(self, op: _Op) -> str | None:
        """The context ``op`` changes, if known here."""
        if isinstance(op, _Begin | _Reroute | _Observe):
            return op.ctx
        if isinstance(op, _Settle):
            d = self.records.get(op.did)
            return None if d is None else d.context
        return None

    def _build(
        self, batch: list[_Op]
    ) -> tuple[list[_Op], dict[str, Any], dict[str, int], list[_Op]]:
        """Encode ``batch``: run the choosers on the cached states, group by context.

        Operations on a context another lane holds are held back; a request for the context
        (a group without operations) is sent instead.

        Returns:
            The operations sent (in result order), the payload, the expected version of each
            group's context (-1: unknown; ``_ACQUIRE``: asked for), the operations held back.
        """
        ri = _RulesTable()
        by_ctx: dict[str, list[_Begin | _Reroute]] = {}
        others: list[_Op] = []
        held_back: list[_Op] = []
        probes: dict[str, Rules] = {}
        blocked = self.blocked
        for op in batch:
            if blocked:
                ctx = self._context_of(op)
                if ctx is not None and ctx in blocked:
                    held_back.append(op)
                    if ctx not in probes:
                        probes[ctx] = cast(Any, op).rules
                    continue
            if isinstance(op, _Begin):
                by_ctx.setdefault(op.ctx, []).append(op)
            elif isinstance(op, _Reroute):
                if op.ctx is None or op.old is None:
                    others.append(_Peek(op))
                else:
                    by_ctx.setdefault(op.ctx, []).append(op)
            else:
                others.append(op)

        sent: list[_Op] = []
        groups_payload: list[list[Any]] = []
        versions: dict[str, int] = {}
        clock = time.monotonic()
        for ctx, ops in by_ctx.items():
            snap = self.cache.get(ctx)
            if snap is None or snap.version < 0:
                work, expected = None, -1
            elif ctx not in self.leases and self.contended.get(ctx, 0.0) > clock:
                # Others write this context all the time: an optimistic choice would fail.
                # Ask for the context first (it comes with the state), then choose once.
                work, expected = None, _ACQUIRE
            else:
                work = _project(snap.state, _order(ops[0].arms, snap.state.arms))
                expected = snap.version
            encoded: list[list[Any]] = []
            now = -math.inf
            for op in ops:
                op.arm = None
                if work is not None:
                    try:
                        work = self._choose(work, op)
                    except Exception as exc:  # the chooser's error goes to its caller
                        _fail(op, exc)
                        continue
                now = max(now, op.now)
                encoded.append(self._encode_choice(op))
                sent.append(op)
            if encoded:
                versions[ctx] = expected
                groups_payload.append([ctx, expected, now, ri(ops[0].rules), encoded])
        blocked.intersection_update(probes)
        for ctx, rules in probes.items():
            versions[ctx] = _ACQUIRE
            groups_payload.append([ctx, _ACQUIRE, 0.0, ri(rules), []])
        sent.extend(others)
        # Keep holding a context while this lane keeps using it, up to `hold`; then give it
        # back (to the first lane waiting) and ask for it again like any other lane.
        keep: list[str] = []
        rel: list[str] = []
        if self.leases:
            active = set(by_ctx)
            active.update(c for c in map(self._context_of, others) if c is not None)
            for ctx, since in self.leases.items():
                if ctx in active and clock - since < self.store.hold:
                    keep.append(ctx)
                else:
                    rel.append(ctx)
                    if ctx in active:  # our turn is over: ask again, after those waiting
                        self.contended[ctx] = clock + _CONTENDED_FOR
            self.leases = {c: self.leases[c] for c in keep}
        payload: dict[str, Any] = {
            "b": self.base,
            "t": self.token,
            "lm": self.store.lease_ms,
            "g": groups_payload,
            "o": [self._encode_other(op, ri) for op in others],
            "rel": rel,
            "keep": keep,
            "sb": False,
        }
        payload["r"] = ri.rows
        return sent, payload, versions, held_back

    @staticmethod
    def _choose(work: BanditState, op: _Begin | _Reroute) -> BanditState:
        """Run ``op``'s chooser on ``work`` (the group's state so far); return the new state."""
        if isinstance(op, _Begin):
            view = _project(work, op.arms)
            arm = op.choose(view)
            view.index(arm)  # UnknownArmError for an arm outside op.arms
            work = _widen(work, op.arms)
            work.in_flight[work.arms.index(arm)] += 1
            op.arm = arm
            return work
        old = cast(str, op.old)
        every = tuple(dict.fromkeys((*op.arms, old)))
        work = _widen(work, every)
        view = _project(work, every)
        i = view.arms.index(old)
        view.in_flight[i] = max(view.in_flight[i] - 1, 0)
        view.apply(i, op.outcome, op.rules.decay)
        arm = op.choose(_project(view, op.arms))
        view.index(arm)
        j = work.arms.index(old)
        work.in_flight[j] = max(work.in_flight[j] - 1, 0)
        work.apply(j, op.outcome, op.rules.decay)
        work.in_flight[work.arms.index(arm)] += 1
        op.arm = arm
        return work

    @staticmethod
    def _encode_choice(op: _Begin | _Reroute) -> list[Any]:
        if isinstance(op, _Begin):
            return [
                "b",
                op.did,
                op.arm or "",
                repr(op.now),
                repr(op.now + op.rules.pending_ttl),
                op.tok,
            ]
        return ["r", op.did, op.old, op.arm or "", *_outcome(op.outcome), op.tok]

    @staticmethod
    def _encode_other(op: _Op, ri: _RulesTable) -> list[Any]:
        if isinstance(op, _Settle):
            return ["s", op.did, *_outcome(op.outcome), op.now, ri(op.rules), op.tok]
        if isinstance(op, _Observe):
            return ["o", op.ctx, op.arm, *_outcome(op.outcome), ri(op.rules), op.tok]
        if isinstance(op, _Expire):
            return ["x", op.now, ri(op.rules)]
        if isinstance(op, _Peek):
            return ["p", op.of.did]
        if isinstance(op, _Begin):  # the write-back of a begin made during an outage
            return [
                "B",
                op.ctx,
                op.did,
                op.arm,
                repr(op.now),
                repr(op.now + op.rules.pending_ttl),
                op.now,
                ri(op.rules),
                op.tok,
            ]
        if isinstance(op, _Reroute):  # the write-back of a reroute made during an outage
            return ["R", op.did, op.arm, *_outcome(op.outcome), op.now, ri(op.rules), op.tok]
        raise TypeError(f"cannot encode {op!r}")  # pragma: no cover

    def _dispatch(
        self, reply: Any, sent: list[_Op], versions: dict[str, int], payload_keep: list[str]
    ) -> float:
        results, states, granted, held = _reply(reply)
        clock = time.monotonic()
        pause = 0.0
        for ctx in granted:
            self.leases.setdefault(ctx, clock)
        self.blocked.difference_update(granted)
        if held:  # we are queued for them: _run waits for the hand-over
            self.blocked.update(held)
            for ctx in held:
                self.contended[ctx] = clock + _CONTENDED_FOR
        for flat in states:
            ctx, snap = _parse_reply_state(self.base, flat)
            expected = versions.get(ctx, -1)
            if 0 <= snap.version < expected:
                _LOG.warning(
                    "context %r of namespace %r went back from version %d to %d on Redis at %s "
                    "(restarted without persistence, or its keys deleted?)",
                    ctx,
                    self.namespace,
                    expected,
                    snap.version,
                    self.store.masked_url,
                )
            self.remember_state(ctx, snap, authoritative=True)
        retry: list[_Op] = []
        committed: set[str] = set()
        counters = self.store.counters
        counters["flushes"] += 1
        for op, res in zip(sent, results, strict=True):
            code = res[0]
            if code != "ok":
                counters[f"{type(op).__name__.strip('_').lower()} {code}"] += 1
            if code == "busy":
                pause = _BUSY_SLEEP
                if len(res) > 2:  # the context another lane holds
                    self.blocked.add(res[2])
                retry.append(op)
            elif code == "retry":
                if isinstance(op, _Begin | _Reroute) and versions.get(cast(str, op.ctx), -1) >= 0:
                    self.contended[cast(str, op.ctx)] = clock + _CONTENDED_FOR
                retry.append(op)
            elif isinstance(op, _Begin):
                if code == "ok":
                    arm = _text(res[1])
                    self._remember(
                        PendingDecision(op.did, op.ctx, arm, op.now, op.now + op.rules.pending_ttl),
                        op.rules,
                    )
                    committed.add(op.ctx)
                    if _orphaned(op):
                        self.queue.append(self.releaser(op))
                    _resolve(op, arm)
                else:  # dup
                    _fail(op, DuplicateDecisionError(f"decision id {op.did!r} was already used"))
            elif isinstance(op, _Reroute):
                if code == "ok":
                    arm = _text(res[1])
                    d = self.records.get(op.did)
                    if d is not None:
                        self.records[op.did] = replace(d, arm=arm)
                    committed.add(cast(str, op.ctx))
                    _resolve(op, arm)
                elif code == "stale":
                    op.ctx, op.old = _text(res[1]), _text(res[2])
                    retry.append(op)
                else:  # gone
                    self.records.pop(op.did, None)
                    _fail(op, UnknownDecisionError(unknown_message(op.did, _how(res))))
            elif isinstance(op, _Settle):
                self.records.pop(op.did, None)
                if code == "ok":
                    ctx, arm, s, e = (_text(x) for x in res[1:5])
                    _resolve(op, PendingDecision(op.did, ctx, arm, float(s), float(e)))
                else:
                    _fail(op, UnknownDecisionError(unknown_message(op.did, _how(res))))
            elif isinstance(op, _Observe):
                _resolve(op, None)
            elif isinstance(op, _Expire):
                _resolve(op, int(res[1]))
            elif isinstance(op, _Peek):
                target = op.of
                if code == "ok":
                    target.ctx, target.old = _text(res[1]), _text(res[2])
                    retry.append(target)
                else:
                    _fail(target, UnknownDecisionError(unknown_message(target.did, _how(res))))
        for ctx in committed:
            if ctx not in payload_keep:
                self.leases.pop(ctx, None)
        if retry:
            limit = self.store.contention_timeout
            now = time.monotonic()
            keep: list[_Op] = []
            for op in retry:
                if now - op.first > limit:
                    _fail(
                        op,
                        StoreError(
                            f"gave up after {limit:g} s of contention on Redis at "
                            f"{self.store.masked_url} (namespace {self.namespace!r})"
                        ),
                    )
                else:
                    keep.append(op)
            self.queue[:0] = keep
        return pause

    def remember_state(self, ctx: str, snap: _Snap, *, authoritative: bool) -> None:
        """Cache ``snap``; a plain read (not authoritative) never replaces a newer state.

        Script replies are authoritative: one script call at a time per lane, so they arrive
        in order (and a version that went back means Redis lost data: believe it).
        """
        cache = self.cache
        old = cache.get(ctx)
        if not authoritative and old is not None and snap.version < old.version:
            return
        cache[ctx] = snap
        cache.move_to_end(ctx)
        if len(cache) > _MAX_CACHED_CONTEXTS:
            cache.popitem(last=False)

    def _remember(self, d: PendingDecision, rules: Rules) -> None:
        records = self.records
        records[d.decision_id] = d
        while records and (
            len(records) > rules.max_pending
            or next(iter(records.values())).expires_at < d.started_at
        ):
            did, _ = records.popitem(last=False)
            self.offline_only.discard(did)

    # --- degraded mode -------------------------------------------------------------------

    def _resolve_offline(self, op: _Op) -> None:
        """Answer ``op`` (sent or queued when Redis went away) from local knowledge."""
        if isinstance(op, _Peek):
            op = op.of
        try:
            result = self.offline(op, lost=True)
            if _orphaned(op):
                self.offline(self.releaser(cast(_Begin, op)))
        except Exception as exc:
            _fail(op, exc)
        else:
            _resolve(op, result)

    def releaser(self, op: _Begin) -> _Settle:
        """A settle that counts nothing, for a begin whose caller has gone (see _orphaned)."""
        return _Settle(self.new_token(), op.did, _NOTHING, op.rules, op.now)

    def offline(self, op: _Op, *, lost: bool = False) -> Any:
        """Carry out ``op`` locally while Redis is unreachable (see docs/redis.md).

        Args:
            op: The operation.
            lost: Whether it may have been sent already (its reply was lost).
        """
        if isinstance(op, _Begin):
            return self._offline_begin(op)
        if isinstance(op, _Settle):
            return self._offline_settle(op, lost)
        if isinstance(op, _Observe):
            st = self._local(op.ctx, (op.arm,))
            st.apply(st.arms.index(op.arm), op.outcome, op.rules.decay)
            self._buffer(op)
            return None
        if isinstance(op, _Reroute):
            return self._offline_reroute(op, lost)
        raise StoreError(
            f"Redis at {self.store.masked_url} is unreachable; cannot expire decisions now"
            if isinstance(op, _Expire)
            else f"Redis at {self.store.masked_url} is unreachable"
        )

    def _local(self, ctx: str, arms: Iterable[str]) -> BanditState:
        """The cached state of ``ctx`` covering ``arms``, marked as changed locally."""
        snap = self.cache.get(ctx)
        if snap is None:
            snap = _Snap(-1, BanditState(tuple(dict.fromkeys(arms))))
            self.cache[ctx] = snap
        else:
            snap.state = _widen(snap.state, arms)
            snap.version = -1
        return snap.state

    def _offline_begin(self, op: _Begin) -> str:
        did = op.did
        if did in self.records or did in self.finished_local:
            raise DuplicateDecisionError(f"decision id {did!r} was already used")
        snap = self.cache.get(op.ctx)
        state = BanditState(op.arms) if snap is None else snap.state
        arm = op.arm
        if arm is None:
            view = _project(state, op.arms)
            arm = op.choose(view)
            view.index(arm)
            op.arm = arm
        st = self._local(op.ctx, op.arms)
        st.in_flight[st.arms.index(arm)] += 1
        self._remember(
            PendingDecision(did, op.ctx, arm, op.now, op.now + op.rules.pending_ttl), op.rules
        )
        if not self._buffer(op):
            self.offline_only.add(did)
        return arm

    def _unknown_offline(self, did: str, lost: bool) -> Exception:
        how = self.finished_local.get(did)
        if how is not None:
            return UnknownDecisionError(unknown_message(did, how))
        url = self.store.masked_url
        if lost:
            return StoreError(
                f"the connection to Redis at {url} was lost while updating decision {did!r}, "
                "which this process did not begin: whether the update was recorded is "
                "unknown; retrying later is safe (a reward is never counted twice)"
            )
        return StoreError(
            f"Redis at {url} is unreachable and decision {did!r} was not begun by this "
            "process, so it cannot be checked now; retry when Redis is back"
        )

    def _offline_settle(self, op: _Settle, lost: bool) -> PendingDecision:
        did = op.did
        d = self.records.pop(did, None)
        if d is None:
            raise self._unknown_offline(did, lost)
        self._finish_local(did, "expired" if d.expires_at <= op.now else "settled", op.rules)
        st = self._local(d.context, (d.arm,))
        i = st.arms.index(d.arm)
        st.in_flight[i] = max(st.in_flight[i] - 1, 0)
        if d.expires_at <= op.now:
            # Overdue: Redis expires it by itself (or on write-back, from its begin).
            st.apply(i, op.rules.expired, op.rules.decay)
            self.offline_only.discard(did)
            raise UnknownDecisionError(unknown_message(did, "expired"))
        st.apply(i, op.outcome, op.rules.decay)
        if did in self.offline_only:
            self.offline_only.discard(did)
            self._buffer(_Observe(op.tok, d.context, d.arm, op.outcome, op.rules))
        else:
            self._buffer(op)
        return d

    def _offline_reroute(self, op: _Reroute, lost: bool) -> str:
        did = op.did
        d = self.records.get(did)
        if d is None:
            raise self._unknown_offline(did, lost)
        snap = self.cache.get(d.context)
        every = tuple(dict.fromkeys((*op.arms, d.arm)))
        base = BanditState(every) if snap is None else snap.state
        arm = op.arm if op.old == d.arm else None
        if arm is None:
            view = _project(base, every)
            i = view.arms.index(d.arm)
            view.in_flight[i] = max(view.in_flight[i] - 1, 0)
            view.apply(i, op.outcome, op.rules.decay)
            arm = op.choose(_project(view, op.arms))
            view.index(arm)
            op.arm = arm
        st = self._local(d.context, every)
        j = st.arms.index(d.arm)
        st.in_flight[j] = max(st.in_flight[j] - 1, 0)
        st.apply(j, op.outcome, op.rules.decay)
        st.in_flight[st.arms.index(arm)] += 1
        self.records[did] = replace(d, arm=arm)
        if did in self.offline_only:
            self._buffer(_Observe(op.tok, d.context, d.arm, op.outcome, op.rules))
        else:
            op.ctx, op.old = d.context, d.arm
            self._buffer(op)
        return arm

    def _finish_local(self, did: str, how: str, rules: Rules) -> None:
        fin = self.finished_local
        fin[did] = how
        while len(fin) > rules.max_pending:
            fin.popitem(last=False)

    def _buffer(self, op: _Op) -> bool:
        """Queue a write-back; return False (and count a drop) when the buffer is full."""
        store = self.store
        if store.buffered >= store.buffer_size:
            store.note_drop(op)
            return False
        self.buffer.append(op)
        store.buffered += 1
        return True

    async def drain(self) -> bool:
        """Write the buffer back, in order; return False if Redis went away again."""
        while self.buffer:
            batch = list(itertools.islice(self.buffer, self.store.max_batch))
            payload: dict[str, Any] = {
                "b": self.base,
                "t": self.token,
                "lm": self.store.lease_ms,
                "g": [],
                "rel": [],
                "keep": [],
                "sb": True,  # stop at the first busy operation: later ones may depend on it
            }
            ri = _RulesTable()
            payload["o"] = [self._encode_other(op, ri) for op in batch]
            payload["r"] = ri.rows
            try:
                reply = await self.link.call(self.key_pending, payload)
            except _DOWN:
                return False
            except RedisError as exc:
                _LOG.error(
                    "Redis at %s refused %d buffered updates of namespace %r: %s",
                    self.store.masked_url,
                    len(batch),
                    self.namespace,
                    exc,
                )
                for _ in batch:
                    self.buffer.popleft()
                self.store.buffered -= len(batch)
                self.store.rejected += len(batch)
                continue
            results, states, _, _ = _reply(reply)
            for flat in states:
                ctx, snap = _parse_reply_state(self.base, flat)
                self.remember_state(ctx, snap, authoritative=True)
            busy = False
            for op, res in zip(batch, results, strict=True):
                code = res[0]
                if code == "busy":
                    busy = True
                    break
                self.buffer.popleft()
                self.store.buffered -= 1
                if code != "ok":
                    self.store.note_rejected(self.namespace, op, _text(code), _how(res))
            if busy:
                await asyncio.sleep(_BUSY_SLEEP)
        return True


def _how(res: Sequence[Any]) -> str | None:
    return _text(res[1]) or None if len(res) > 1 else None


def _done(op: _Op) -> bool:
    return op.fut is not None and op.fut.done()


def _orphaned(op: _Op) -> bool:
    """Whether ``op`` is a begin whose caller was cancelled while it was being applied.

    Nobody will ever settle such a decision, so its in-flight slot would leak until
    ``pending_ttl``: the lane releases it instead. (A begin cancelled while still queued is
    never sent at all.)
    """
    return isinstance(op, _Begin) and op.fut is not None and op.fut.cancelled()


def _resolve(op: _Op, value: Any) -> None:
    if op.fut is not None and not op.fut.done():
        op.fut.set_result(value)


def _fail(op: _Op, exc: BaseException) -> None:
    if op.fut is not None and not op.fut.done():
        op.fut.set_exception(exc)


# --- the link: one event loop's connection ---------------------------------------------------


class _Link:
    """One event loop's Redis client, its lanes, and its outage state."""

    def __init__(self, store: RedisStore, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            store.url,
            socket_timeout=store.socket_timeout,
            socket_connect_timeout=store.connect_timeout,
            retry=Retry(NoBackoff(), 1),  # one immediate retry: every script is idempotent
            decode_responses=False,
            **store.client_options,
        )
        self.sha: str | None = None
        self.lanes: dict[str, _Lane] = {}
        self.degraded = False
        self.down_since = 0.0
        self.probe: asyncio.Task[None] | None = None

    def lane(self, namespace: str) -> _Lane:
        lane = self.lanes.get(namespace)
        if lane is None:
            lane = self.lanes[namespace] = _Lane(self, namespace)
        return lane

    async def call(self, key: str, payload: dict[str, Any]) -> Any:
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        client = self.client
        if self.sha is not None:
            try:
                return await cast(Any, client.evalsha(self.sha, 1, key, data))
            except NoScriptError:
                pass  # Redis restarted or flushed its script cache: load it again
        self.sha = cast(str, await cast(Any, client.script_load(_SCRIPT)))
        return await cast(Any, client.evalsha(self.sha, 1, key, data))

    def down(self, exc: BaseException) -> None:
        """Redis is unreachable: degrade (logged once per outage) and start probing."""
        if self.degraded:
            return
        self.degraded = True
        self.down_since = time.monotonic()
        for lane in self.lanes.values():  # leases lapse on their own; forget them
            lane.leases.clear()
            lane.blocked.clear()
            lane.contended.clear()
        self.store.outages += 1
        self.store.drop_logged = False
        _LOG.warning(
            "Redis at %s is unreachable (%s: %s): routing from the last known statistics and "
            "buffering up to %d updates until it is back",
            self.store.masked_url,
            type(exc).__name__,
            exc,
            self.store.buffer_size,
        )
        if self.probe is None or self.probe.done():
            self.probe = self.loop.create_task(self._probe())

    async def _probe(self) -> None:
        store = self.store
        while True:
            await asyncio.sleep(store.retry_interval)
            try:
                await cast(Any, self.client.ping())
            except _DOWN:
                continue
            except RedisError:
                continue
            ok = True
            for lane in list(self.lanes.values()):
                if not await lane.drain():
                    ok = False
                    break
            if ok and not any(lane.buffer for lane in self.lanes.values()):
                self.degraded = False
                for lane in self.lanes.values():
                    lane.finished_local.clear()
                _LOG.warning(
                    "Redis at %s is reachable again after %.1f s; buffered updates written "
                    "back (%d rejected, %d dropped so far)",
                    store.masked_url,
                    time.monotonic() - self.down_since,
                    store.rejected,
                    store.dropped,
                )
                return

    async def close(self) -> None:
        for lane in list(self.lanes.values()):
            task = lane.task
            if task is not None and not task.done():
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout=5.0)
                except (TimeoutError, Exception):
                    task.cancel()
        if self.degraded and any(lane.buffer for lane in self.lanes.values()):
            try:
                await asyncio.wait_for(cast(Any, self.client.ping()), timeout=1.0)
                for lane in self.lanes.values():
                    if not await lane.drain():
                        break
            except (*_DOWN, RedisError):
                pass
        left = sum(len(lane.buffer) for lane in self.lanes.values())
        if left:
            _LOG.warning(
                "closing the store with %d buffered updates not written back to Redis at %s",
                left,
                self.store.masked_url,
            )
        if self.probe is not None:
            self.probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.probe
        await self.client.aclose()


class _Bridge:
    """A private asyncio loop in a thread, for callers on another async library (trio)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="bandit-router-redis", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await anyio.to_thread.run_sync(fut.result, abandon_on_cancel=True)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


# --- the store ------------------------------------------------------------------------------


class RedisStore:
    """Keeps statistics and pending decisions in Redis, shared by every process and host.

    Every change is one atomic Lua script; the selection (a Python chooser) uses optimistic
    concurrency on a per-context version, so two replicas never lose an update nor choose on
    a state the other changed meanwhile. Concurrent calls of one process are batched into one
    script call per round trip. Works on asyncio natively and on trio (through a private
    asyncio thread). Requires Redis >= 7.0.

    When Redis stops answering after the store has reached it once, the store *degrades*
    instead of failing: ``begin`` chooses from the last known statistics, settles and
    observations are buffered (at most ``buffer_size``) and written back in order, each
    exactly once, when Redis answers again; beyond the bound they are dropped and counted in
    :attr:`dropped`. :attr:`degraded` tells whether the store runs degraded now;
    :attr:`rejected` counts buffered updates Redis refused on write-back, and :attr:`counters`
    the operations that had to wait or retry (for diagnosis).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
            ``unix://``; options of redis-py may be given in the query string.
        prefix: The first part of every key (no braces); several applications can share one
            Redis with different prefixes.
        buffer_size: The most updates buffered during an outage (>= 0).
        lease: Seconds a writer that lost an optimistic-concurrency race holds its context
            while it chooses again (> 0); bounds how long a crashed worker can block others.
        hold: Seconds a process may keep a contended context while it keeps using it, before
            it hands it to the next process waiting (>= 0; longer: more throughput under
            contention, longer waits for the other replicas).
        retry_interval: Seconds between reconnection attempts during an outage (> 0).
        socket_timeout: Seconds to wait for a reply before the connection counts as lost.
        connect_timeout: Seconds to wait for a connection.
        contention_timeout: Seconds an operation may wait on a contended context before it
            raises :class:`StoreError`.
        max_batch: The most operations sent in one script call.
        **client_options: More keyword arguments for ``redis.asyncio.Redis.from_url``
            (``ssl_ca_certs``, ``username``, ``password``, ``max_connections`` ...).

    Raises:
        ConfigurationError: If the URL's scheme is not ``redis``, ``rediss`` or ``unix``, or
            an argument is out of range; the message masks the password.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "bandit_router",
        buffer_size: int = 10_000,
        lease: float = 0.25,
        hold: float = 0.05,
        retry_interval: float = 1.0,
        socket_timeout: float | None = 5.0,
        connect_timeout: float | None = 2.0,
        contention_timeout: float = 30.0,
        max_batch: int = 256,
        **client_options: Any,
    ) -> None:
        if not isinstance(url, str):
            raise ConfigurationError(f"url must be a string, got {type(url).__name__}")
        self.masked_url = mask_url(url)
        # Not urlsplit(): it raises on a stray "[" (a raw password character) before we can
        # give a clear ConfigurationError below.
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme not in _SCHEMES:
            raise ConfigurationError(
                f"Redis URL must start with redis://, rediss:// or unix://, got {self.masked_url!r}"
            )
        # Parse now: a malformed URL must fail here, not on first use. redis-py's message may
        # quote part of the URL, password included: name only the masked URL, and raise
        # outside the handler so that no traceback can print the original as its context.
        try:
            parse_url(url)
            unparsable = ""
        except (ValueError, TypeError) as exc:
            unparsable = type(exc).__name__
        if unparsable:
            raise ConfigurationError(
                f"cannot parse the Redis URL {self.masked_url!r} ({unparsable}); "
                "percent-encode special characters in the password"
            )
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                f"prefix must be a non-empty string without braces, got {prefix!r}"
            )
        for name, value, low in (
            ("lease", lease, 0.0),
            ("retry_interval", retry_interval, 0.0),
            ("contention_timeout", contention_timeout, 0.0),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > low:
                raise ConfigurationError(f"{name} must be a number > 0, got {value!r}")
        if isinstance(hold, bool) or not isinstance(hold, int | float) or not 0 <= hold < lease:
            raise ConfigurationError(f"hold must be a number in [0, lease), got {hold!r}")
        for name, count, least in (("buffer_size", buffer_size, 0), ("max_batch", max_batch, 1)):
            if isinstance(count, bool) or not isinstance(count, int) or count < least:
                raise ConfigurationError(f"{name} must be an integer >= {least}, got {count!r}")
        self.url = url
        self.prefix = prefix
        self.buffer_size = buffer_size
        self.lease_ms = max(int(lease * 1000), 1)
        self.hold = float(hold)
        self.retry_interval = float(retry_interval)
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.contention_timeout = float(contention_timeout)
        self.max_batch = max_batch
        self.client_options = client_options
        self.ever_connected = False
        self.closed = False
        self.buffered = 0
        self.outages = 0
        self.drop_logged = False
        self._dropped = 0
        self.rejected = 0
        self._links: dict[asyncio.AbstractEventLoop, _Link] = {}
        self._links_lock = threading.Lock()
        #: Operation outcomes by kind (``"begin ok"``, ``"settle busy"`` ...), for diagnosis.
        self.counters: Counter[str] = Counter()
        self._bridge: _Bridge | None = None

    # --- status ---------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """Whether the store runs degraded now.

        True while Redis is unreachable or buffered updates are not yet written back: routing
        then uses the last known statistics. Put it on spans and health checks.
        """
        return any(link.degraded for link in list(self._links.values()))

    @property
    def dropped(self) -> int:
        """Updates dropped because the outage buffer was full (since the store was created)."""
        return self._dropped

    def note_drop(self, op: _Op) -> None:
        """Count an update that did not fit in the outage buffer (logged once per outage)."""
        self._dropped += 1
        if not self.drop_logged:
            self.drop_logged = True
            _LOG.warning(
                "outage buffer full (%d updates) for Redis at %s: dropping updates until it "
                "is back (see RedisStore.dropped)",
                self.buffer_size,
                self.masked_url,
            )
        _LOG.debug("dropped %s (%d dropped so far)", type(op).__name__, self._dropped)

    def note_rejected(self, namespace: str, op: _Op, code: str, how: str | None) -> None:
        """Count a buffered update that Redis refused on write-back (and log it)."""
        self.rejected += 1
        did = getattr(op, "did", None)
        _LOG.warning(
            "Redis at %s refused a buffered %s of namespace %r (decision %r): %s %s",
            self.masked_url,
            type(op).__name__.strip("_").lower(),
            namespace,
            did,
            code,
            how or "",
        )

    def unreachable(self, exc: BaseException) -> StoreError:
        """The error raised when Redis was never reached: names the URL, never the password."""
        return StoreError(
            f"cannot connect to Redis at {self.masked_url}: {type(exc).__name__}: {exc}"
        )

    # --- plumbing ---------------------------------------------------------------------------

    def _link(self) -> _Link | None:
        """This event loop's link, or None when not running on asyncio (use the bridge)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        link = self._links.get(loop)
        if link is None:
            with self._links_lock:
                if self.closed:
                    raise StoreError(f"{self!r} is closed")
                link = self._links.get(loop)
                if link is None:
                    link = self._links[loop] = _Link(self, loop)
        return link

    async def _bridged(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._links_lock:
            if self.closed:
                coro.close()
                raise StoreError(f"{self!r} is closed")
            if self._bridge is None:
                self._bridge = _Bridge()
            bridge = self._bridge
        return await bridge.run(coro)

    async def _read(self, link: _Link, coro: Coroutine[Any, Any, T]) -> T:
        """Run one plain read; connection errors become StoreError or an outage."""
        try:
            result = await coro
        except _DOWN as exc:
            if not self.ever_connected:
                raise self.unreachable(exc) from exc
            link.down(exc)
            raise
        except RedisError as exc:
            raise StoreError(f"Redis at {self.masked_url}: {exc}") from exc
        self.ever_connected = True
        return result

    # --- the StateStore protocol -----------------------------------------------------------

    async def load(
        self, namespace: str, context: str, arms: tuple[str, ...], rules: Rules
    ) -> BanditState:
        """See :meth:`StateStore.load`; during an outage, the last known state."""
        link = self._link()
        if link is None:
            return await self._bridged(self.load(namespace, context, arms, rules))
        lane = link.lane(namespace)
        if not link.degraded:
            key = lane.state_key(context)
            try:
                raw = await self._read(link, cast(Any, link.client.hgetall(key)))
            except _DOWN:
                pass
            else:
                fresh = _parse_hash(key, raw)
                lane.remember_state(context, fresh, authoritative=False)
                return _project(fresh.state, arms)
        snap = lane.cache.get(context)
        return BanditState(arms) if snap is None else _project(snap.state, arms)

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
        """See :meth:`StateStore.begin`; during an outage, chosen from the last known state."""
        link = self._link()
        if link is None:
            return await self._bridged(
                self.begin(namespace, context, arms, choose, decision_id, rules, now)
            )
        lane = link.lane(namespace)
        op = _Begin(lane.new_token(), context, arms, choose, decision_id, rules, now)
        try:
            return cast(str, await lane.submit(op))
        except asyncio.CancelledError:
            fut = op.fut
            if fut is not None and fut.done() and not fut.cancelled() and not fut.exception():
                # Applied, but the caller was cancelled before it could read the result:
                # nobody will settle this decision, so release its in-flight slot now.
                with contextlib.suppress(Exception):  # the cancellation must propagate
                    lane.post(lane.releaser(op))
            raise

    async def settle(
        self, namespace: str, decision_id: str, outcome: Outcome, rules: Rules, now: float
    ) -> PendingDecision:
        """See :meth:`StateStore.settle`; during an outage, buffered (decisions begun here)."""
        link = self._link()
        if link is None:
            return await self._bridged(self.settle(namespace, decision_id, outcome, rules, now))
        lane = link.lane(namespace)
        op: _Op
        if decision_id in lane.offline_only and not link.degraded:
            # Begun during an outage whose buffer was full: Redis never saw it.
            lane.offline_only.discard(decision_id)
            d = lane.records.pop(decision_id, None)
            if d is not None:
                await lane.submit(_Observe(lane.new_token(), d.context, d.arm, outcome, rules))
                return d
        op = _Settle(lane.new_token(), decision_id, outcome, rules, now)
        return cast(PendingDecision, await lane.submit(op))

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
        link = self._link()
        if link is None:
            return await self._bridged(
                self.reroute(namespace, decision_id, arms, choose, outcome, rules, now)
            )
        lane = link.lane(namespace)
        op = _Reroute(lane.new_token(), decision_id, arms, choose, outcome, rules, now)
        d = lane.records.get(decision_id)
        if d is not None:
            op.ctx, op.old = d.context, d.arm
        return cast(str, await lane.submit(op))

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
        link = self._link()
        if link is None:
            return await self._bridged(self.observe(namespace, context, arms, arm, outcome, rules))
        lane = link.lane(namespace)
        await lane.submit(_Observe(lane.new_token(), context, arm, outcome, rules))

    async def pending(self, namespace: str, decision_id: str) -> PendingDecision | None:
        """See :meth:`StateStore.pending`; during an outage, decisions begun here only."""
        link = self._link()
        if link is None:
            return await self._bridged(self.pending(namespace, decision_id))
        lane = link.lane(namespace)
        if not link.degraded:
            try:
                raw = await self._read(
                    link, cast(Any, link.client.hget(lane.key_pending, decision_id))
                )
            except _DOWN:
                pass
            else:
                if raw is None:
                    return None
                try:
                    d = json.loads(raw)
                    return PendingDecision(
                        decision_id, d["c"], d["a"], float(d["s"]), float(d["e"])
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    raise CorruptStateError(
                        f"pending decision {decision_id!r} in {lane.key_pending!r} is "
                        f"corrupt: {exc}"
                    ) from exc
        d = lane.records.get(decision_id)
        if d is not None:
            return d
        raise StoreError(
            f"Redis at {self.masked_url} is unreachable: cannot look up decision "
            f"{decision_id!r}, which this process did not begin"
        )

    async def expire(self, namespace: str, rules: Rules, now: float) -> int:
        """See :meth:`StateStore.expire`; raises :class:`StoreError` during an outage."""
        link = self._link()
        if link is None:
            return await self._bridged(self.expire(namespace, rules, now))
        lane = link.lane(namespace)
        return cast(int, await lane.submit(_Expire(lane.new_token(), rules, now)))

    async def contexts(self, namespace: str) -> list[str]:
        """See :meth:`StateStore.contexts`; raises :class:`StoreError` during an outage."""
        link = self._link()
        if link is None:
            return await self._bridged(self.contexts(namespace))
        lane = link.lane(namespace)
        if link.degraded:
            raise StoreError(f"Redis at {self.masked_url} is unreachable: contexts unknown")
        try:
            raw = await self._read(link, cast(Any, link.client.smembers(f"{lane.base}:contexts")))
        except _DOWN as exc:
            raise StoreError(
                f"Redis at {self.masked_url} is unreachable: contexts unknown"
            ) from exc
        return sorted(_text(c) for c in raw)

    async def ping(self) -> None:
        """Check that Redis answers.

        Raises:
            StoreError: If it cannot be reached; the message names the URL, never the
                password.
        """
        link = self._link()
        if link is None:
            return await self._bridged(self.ping())
        try:
            await cast(Any, link.client.ping())
        except (*_DOWN, RedisError) as exc:
            raise self.unreachable(exc) from exc
        self.ever_connected = True

    async def aclose(self) -> None:
        """Write back what is buffered if Redis answers, and close every connection."""
        with self._links_lock:
            self.closed = True
            links = list(self._links.items())
            self._links.clear()
            bridge, self._bridge = self._bridge, None
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, link in links:
            if loop is here:
                await link.close()
            elif bridge is not None and loop is bridge.loop:
                await bridge.run(link.close())
            elif loop.is_running():
                fut = asyncio.run_coroutine_threadsafe(link.close(), loop)
                await anyio.to_thread.run_sync(fut.result)
        if bridge is not None:
            await anyio.to_thread.run_sync(bridge.stop)

    def __repr__(self) -> str:
        return f"RedisStore({self.masked_url!r}, prefix={self.prefix!r})"
