"""``bandit-router stats``: the live statistics of the routers in a store, as a table.

The store keeps, per router name and context, each arm's raw counts and its decayed sums; it
does not keep the router's configuration. So the estimates that depend on it (``mean``: decayed
and blended with the priors; ``index``: the policy's) are computed here with the ``--policy``,
``--decay`` and ``--prior`` given, which should be the router's own. ``pulls``, ``failures``
and ``in_flight`` are read as they are.

Arm names are read from the store: an arm appears once it has been chosen at least once in
that context. ``--arms`` lists them explicitly (arms never chosen then show as untried).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TextIO

from bandit_router._bandit import context_seed
from bandit_router._cli_args import decay_arg, nonneg_float
from bandit_router._engine import Engine
from bandit_router._errors import BanditRouterError, ConfigurationError
from bandit_router._stats import Prior
from bandit_router.policies import KLUCB, UCB1, Policy, ThompsonSampling, UCBTuned
from bandit_router.stores import SQLiteStore, StateStore

__all__ = ["ArmRow", "collect", "open_store", "register", "stats_command"]

#: ``--policy`` choices, by the names the policies give themselves (as in spans).
POLICIES: Final[dict[str, Callable[[], Policy]]] = {
    "kl-ucb": lambda: KLUCB(),
    "kl-ucb-log": lambda: KLUCB(rate="log"),
    "kl-ucb-bernoulli": lambda: KLUCB(variance=False),
    "kl-ucb-log-bernoulli": lambda: KLUCB(rate="log", variance=False),
    "ucb1": lambda: UCB1(),
    "ucb-tuned": lambda: UCBTuned(),
    "thompson": lambda: ThompsonSampling(),
}
_REDIS_SCHEMES: Final = ("redis://", "rediss://", "unix://")

DESCRIPTION: Final = """\
Print the live statistics of the routers kept in a store: per router name, context and arm,
the completed pulls, the estimated mean reward, the policy's index, the failed attempts and
the calls in flight. The arm marked * is the one the policy would choose next (in the
table; "next" in JSON).

The store keeps raw counts and decayed sums, not the router's configuration: give the
router's own --policy, --decay, --prior, --cost and --context-prior-weight for the mean and
index to be the ones it sees.
Pulls, failures and in-flight calls are read as they are."""

EPILOG: Final = """\
store URLs:
  sqlite:///state.db          a SQLite file, path relative to the current directory
  sqlite:////var/lib/r.db     a SQLite file, absolute path (four slashes)
  state.db, /var/lib/r.db     a plain path is a SQLite file too (it must exist)
  redis://[[user]:password@]host[:port][/db], rediss://..., unix:///path.sock
                              Redis (needs bandit-router-redis); see --prefix

columns:
  pulls      completed calls that received a reward (raw count, never decayed)
  mean       the reward estimate the policy sees (decayed, with priors); - : no data
  index      the policy's index (less the arm's --cost): inf = untried, tried first;
             - = no index yet (untried arms remain); thompson's index is a random draw
  failures   failed attempts (every retry counts)
  in_flight  calls begun and still waiting for their reward

examples:
  bandit-router stats --store router.db
  bandit-router stats --store redis://localhost:6379/0 --name support --context billing
  bandit-router stats --store router.db --decay 0.999 --prior gpt-4o=0.8:10 --format json

exit status: 0 on success; 1 if the store cannot be read or holds nothing to show."""


@dataclass(frozen=True, slots=True)
class ArmRow:
    """One arm of one router's context, as ``bandit-router stats`` reports it.

    Attributes:
        router: The router's name (its namespace in the store).
        context: The context (``""``: the global bandit).
        arm: The arm's name.
        pulls: Completed pulls (raw).
        failures: Failed attempts (raw).
        in_flight: Calls waiting for their reward.
        mean: The policy's estimate (decayed, with priors), or ``None``.
        raw_mean: ``reward_sum / pulls``, or ``None``.
        weight: Observations the estimate is worth (decayed count plus prior weight).
        index: The policy's index (``inf``: untried; ``nan``: none yet).
        next: Whether the policy would choose this arm next.
    """

    router: str
    context: str
    arm: str
    pulls: int
    failures: int
    in_flight: int
    mean: float | None
    raw_mean: float | None
    weight: float
    index: float
    next: bool


class _Catalog(Protocol):
    """What the store's own API does not tell: which routers and arms it holds."""

    async def namespaces(self) -> list[str]: ...

    async def arms(self, namespace: str, context: str) -> list[str]: ...

    async def aclose(self) -> None: ...


class _SQLiteCatalog:
    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def namespaces(self) -> list[str]:
        rows = await self.store._run(
            lambda cur: cur.execute(
                "SELECT namespace FROM clocks UNION SELECT namespace FROM arms ORDER BY 1"
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    async def arms(self, namespace: str, context: str) -> list[str]:
        rows = await self.store._run(
            lambda cur: cur.execute(
                "SELECT arm FROM arms WHERE namespace=? AND context=? ORDER BY arm",
                (namespace, context),
            ).fetchall()
        )
        return [str(r[0]) for r in rows]

    async def aclose(self) -> None:
        """The store is closed by its owner."""


class _RedisCatalog:
    """Reads the key layout documented in docs/redis.md (``<prefix>:{<namespace>}:...``)."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis

        self.prefix = prefix
        self.client: Any = aioredis.Redis.from_url(
            url, socket_connect_timeout=2.0, socket_timeout=5.0
        )

    async def namespaces(self) -> list[str]:
        found: set[str] = set()
        head, tail = f"{self.prefix}:{{", "}:contexts"
        async for key in self.client.scan_iter(match=f"{_glob(self.prefix)}:{{*}}:contexts"):
            text = key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else key
            if text.startswith(head) and text.endswith(tail):
                found.add(_untag(text[len(head) : -len(tail)]))
        return sorted(found)

    async def arms(self, namespace: str, context: str) -> list[str]:
        key = f"{self.prefix}:{{{_tag(namespace)}}}:state:{context}"
        fields = await self.client.hkeys(key)
        names = []
        for f in fields:
            text = f.decode("utf-8", "surrogateescape") if isinstance(f, bytes) else str(f)
            if text.startswith("a:"):
                names.append(text[2:])
        return sorted(names)

    async def aclose(self) -> None:
        await self.client.aclose()


def _tag(namespace: str) -> str:
    # The same escaping as RedisStore's: braces and % inside the hash tag.
    return namespace.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def _untag(tag: str) -> str:
    return tag.replace("%7B", "{").replace("%7D", "}").replace("%25", "%")


def _glob(text: str) -> str:
    """Escape Redis glob metacharacters in a literal key part."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _sqlite_path(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    if "://" in url:
        raise ConfigurationError(
            f"unsupported store URL {url!r}: use sqlite:///path.db, a file path, or redis://..."
        )
    return Path(url)


def open_store(url: str, *, prefix: str = "bandit_router") -> tuple[StateStore, _Catalog]:
    """Open the store a URL names, for reading, and the catalog of what it holds.

    Args:
        url: ``sqlite:///path.db`` (SQLAlchemy's convention: a fourth slash makes the path
            absolute), a plain file path, or a Redis URL (``redis://``, ``rediss://``,
            ``unix://``).
        prefix: The RedisStore key prefix.

    Returns:
        The store and its catalog; close both (``aclose``) when done.

    Raises:
        ConfigurationError: If the URL is not supported, the SQLite file does not exist
            (it is never created here), or bandit-router-redis is not installed.
        CorruptStateError: If the file is not a bandit-router database.
    """
    if url.startswith(_REDIS_SCHEMES):
        try:
            from bandit_router_redis import RedisStore
        except ImportError:
            raise ConfigurationError(
                "a Redis store needs bandit-router-redis: pip install bandit-router-redis "
                "(from a clone: pip install -e integrations/bandit_router_redis)"
            ) from None
        return RedisStore(url, prefix=prefix), _RedisCatalog(url, prefix)
    path = _sqlite_path(url)
    if not path.is_file():
        raise ConfigurationError(f"no SQLite store at {str(path)!r}: the file does not exist")
    store = SQLiteStore(path)
    return store, _SQLiteCatalog(store)


async def collect(
    store: StateStore,
    catalog: _Catalog,
    *,
    name: str | None = None,
    context: str | None = None,
    arms: Sequence[str] | None = None,
    policy: Policy | None = None,
    decay: float | None = None,
    priors: dict[str, Prior] | None = None,
    costs: dict[str, float] | None = None,
    context_prior_weight: float | None = None,
) -> list[ArmRow]:
    """Read the statistics of every router (or ``name``) and context (or ``context``).

    Raises:
        ConfigurationError: If ``name`` or ``context`` is not in the store, or a prior or
            cost names an arm that is not listed.
        StoreError: If the store cannot be read.
    """
    names = await catalog.namespaces()
    if name is not None:
        if name not in names:
            raise ConfigurationError(
                f"no router named {name!r} in the store; it holds {names or 'nothing'}"
            )
        names = [name]
    rows: list[ArmRow] = []
    for ns in names:
        contexts = await store.contexts(ns)
        if context is not None:
            if context not in contexts:
                raise ConfigurationError(
                    f"router {ns!r} has no context {context!r}; its contexts are {contexts}"
                )
            contexts = [context]
        for ctx in contexts:
            listed = list(arms) if arms else await catalog.arms(ns, ctx)
            if not listed:
                continue
            own = {a: p for a, p in (priors or {}).items() if a in listed}
            priced = {a: c for a, c in (costs or {}).items() if a in listed}
            engine = Engine(
                listed, policy=policy, priors=own, decay=decay, seed=0, costs=priced or None
            )
            state = await store.load(ns, ctx, engine.arms, engine.rules)
            stats = state.statistics(engine.decay, engine.priors)
            seeded = None
            if ctx and context_prior_weight:
                # What the router selects a named context with: the global statistics as a
                # prior, capped at context_prior_weight observations (Bandit's own rule).
                glob = await store.load(ns, "", engine.arms, engine.rules)
                n, total, sq = glob.discounted(engine.decay, engine.priors)
                seeded = tuple(
                    context_seed(n[i], total[i], sq[i], context_prior_weight) if n[i] > 0 else None
                    for i in range(len(n))
                )
            selection = (
                engine.select(state) if seeded is None else engine.select(state, priors=seeded)
            )
            for i, arm in enumerate(engine.arms):
                s = stats[arm]
                rows.append(
                    ArmRow(
                        router=ns,
                        context=ctx,
                        arm=arm,
                        pulls=s.pulls,
                        failures=s.failures,
                        in_flight=s.in_flight,
                        mean=s.mean,
                        raw_mean=s.raw_mean,
                        weight=s.weight,
                        index=float(selection.indices[i]),
                        next=arm == selection.arm,
                    )
                )
    seen = {r.arm for r in rows}
    for flag, given in (("--prior", priors), ("--cost", costs)):
        unknown = sorted(set(given or {}) - seen)
        if unknown and rows:
            raise ConfigurationError(f"{flag} for unknown arm(s) {unknown}")
    return rows


# --- output -------------------------------------------------------------------------------------


def _num(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3f}"


def write_table(rows: Sequence[ArmRow], out: TextIO) -> None:
    """Write one table per router and context."""
    groups: dict[tuple[str, str], list[ArmRow]] = {}
    for r in rows:
        groups.setdefault((r.router, r.context), []).append(r)
    first = True
    for (router, ctx), group in groups.items():
        if not first:
            out.write("\n")
        first = False
        label = "'' (global)" if ctx == "" else repr(ctx)
        out.write(f"router {router!r}  context {label}\n")
        width = max(len("arm"), *(len(r.arm) for r in group))
        out.write(
            f"  {'arm':<{width}}  {'pulls':>8}  {'mean':>6}  {'index':>6}  "
            f"{'failures':>8}  {'in_flight':>9}\n"
        )
        for r in group:
            mark = "*" if r.next else " "
            out.write(
                f"{mark} {r.arm:<{width}}  {r.pulls:>8}  {_num(r.mean):>6}  {_num(r.index):>6}  "
                f"{r.failures:>8}  {r.in_flight:>9}\n"
            )


def _json_number(x: float | None) -> float | str | None:
    if x is None:
        return None
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"  # JSON has no infinity
    return x


def write_json(rows: Sequence[ArmRow], out: TextIO) -> None:
    """Write the rows as a JSON list of objects (``index``: a number, ``"inf"`` or null)."""
    data = []
    for r in rows:
        d: dict[str, Any] = asdict(r)
        for k in ("mean", "raw_mean", "index"):
            d[k] = _json_number(d[k])
        data.append(d)
    json.dump(data, out, indent=2)
    out.write("\n")


# --- the command --------------------------------------------------------------------------------


def _prior(text: str) -> tuple[str, Prior]:
    arm, eq, rest = text.rpartition("=")
    mean, colon, weight = rest.partition(":")
    if not eq or not arm or not colon:
        raise argparse.ArgumentTypeError(f"expected ARM=MEAN:WEIGHT, got {text!r}")
    try:
        return arm, Prior(mean=float(mean), weight=float(weight))
    except (ValueError, ConfigurationError) as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _cost(text: str) -> tuple[str, float]:
    arm, eq, value = text.rpartition("=")
    if not eq or not arm:
        raise argparse.ArgumentTypeError(f"expected ARM=COST, got {text!r}")
    try:
        cost = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: not a number") from None
    if not math.isfinite(cost) or cost < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a cost must be a finite number >= 0")
    return arm, cost


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``stats`` subcommand to an ``argparse`` subparsers object.

    The parser's default ``func`` is :func:`stats_command`.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``stats`` parser.
    """
    p: argparse.ArgumentParser = subparsers.add_parser(
        "stats",
        help="print the live statistics of the routers in a store",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--store",
        required=True,
        metavar="URL",
        help="the store: sqlite:///path.db, a SQLite file path, or redis://host:port/db",
    )
    p.add_argument(
        "--name",
        metavar="ROUTER",
        help="only the router with this name (its name= argument); default: every router",
    )
    p.add_argument(
        "--context",
        metavar="CTX",
        help="only this context (what context_key returned; '' is the global bandit); "
        "default: every context",
    )
    p.add_argument(
        "--arms",
        metavar="A,B,...",
        type=lambda s: [a for a in s.split(",") if a],
        help="the arms to show, comma-separated (arms never chosen show as untried); "
        "default: the arms the store has seen",
    )
    p.add_argument(
        "--policy",
        choices=sorted(POLICIES),
        default="kl-ucb",
        help="the router's policy, for the index column (default: kl-ucb, the router's default)",
    )
    p.add_argument(
        "--decay",
        type=decay_arg,
        default=None,
        metavar="D",
        help="the router's decay= (default: none, stationary)",
    )
    p.add_argument(
        "--prior",
        type=_prior,
        action="append",
        default=[],
        metavar="ARM=MEAN:WEIGHT",
        help="one of the router's priors, e.g. gpt-4o=0.8:10 (repeatable)",
    )
    p.add_argument(
        "--cost",
        type=_cost,
        action="append",
        default=[],
        metavar="ARM=COST",
        help="one of the router's known per-call costs (costs=, in reward units), "
        "subtracted from the index (repeatable)",
    )
    p.add_argument(
        "--context-prior-weight",
        type=nonneg_float,
        default=None,
        metavar="W",
        help="the router's context_prior_weight= (named contexts select with the global "
        "statistics as a prior worth at most W observations; changes their index only)",
    )
    p.add_argument(
        "--prefix",
        default="bandit_router",
        help="the RedisStore key prefix (default: bandit_router)",
    )
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="output format (default: table)",
    )
    p.set_defaults(func=stats_command)
    return p


async def _run(args: argparse.Namespace, out: TextIO) -> int:
    store, catalog = open_store(args.store, prefix=args.prefix)
    try:
        ping = getattr(store, "ping", None)
        if ping is not None:
            await ping()  # a Redis that cannot be reached: one clear error, now
        rows = await collect(
            store,
            catalog,
            name=args.name,
            context=args.context,
            arms=args.arms,
            policy=POLICIES[args.policy](),
            decay=args.decay,
            priors=dict(args.prior),
            costs=dict(args.cost),
            context_prior_weight=args.context_prior_weight,
        )
    finally:
        await catalog.aclose()
        await store.aclose()
    if not rows:
        where = f"router {args.name!r}" if args.name else "the store"
        sys.stderr.write(f"bandit-router stats: no statistics in {where} ({args.store})\n")
        return 1
    if args.format == "json":
        write_json(rows, out)
    else:
        write_table(rows, out)
    return 0


def stats_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``bandit-router stats`` with parsed arguments; return the exit status.

    Args:
        args: The parsed arguments of the parser :func:`register` made.
        out: Where to write (default: standard output). Errors go to standard error.

    Returns:
        0 on success, 1 if the store cannot be read or holds nothing to show.
    """
    try:
        return asyncio.run(_run(args, sys.stdout if out is None else out))
    except BrokenPipeError:
        # The reader went away (`... | head`): not an error worth a message. Point stdout at
        # devnull so that the interpreter's final flush does not complain either.
        if out is None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (BanditRouterError, ValueError, OSError) as exc:
        sys.stderr.write(f"bandit-router stats: {exc}\n")
        return 1
