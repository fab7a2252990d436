"""The router's arguments, declared once for both LangChain faces, and their validation.

:class:`RouterOptions` is a pydantic model that :class:`~bandit_router.BanditRouterRunnable`
and :class:`~bandit_router.ChatBanditRouter` both inherit: every argument is declared (with its
default and its check) here and nowhere else. It also builds the LangChain-free routing core
(:class:`~bandit_router.core.routing.Router`) from them.

Every bad argument raises :class:`~bandit_router.ConfigurationError` (a ``ValueError``) naming
it, before pydantic sees it: no lax coercion (``decay=True`` and ``timeout="5"`` are refused,
not converted) and no unknown keyword silently ignored (a misspelt one gets a did-you-mean).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from langchain_core.runnables import Runnable
from langchain_core.runnables.base import coerce_to_runnable
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from bandit_router._bandit import Bandit
from bandit_router._engine import DEFAULT_MAX_PENDING, DEFAULT_PENDING_TTL
from bandit_router._errors import ConfigurationError
from bandit_router._stats import Prior
from bandit_router.core.failures import is_transient
from bandit_router.core.routing import Cooldowns, Router, RouteSettings
from bandit_router.core.scoring import (
    DEFAULT_EVALUATOR_CONCURRENCY,
    DEFAULT_EVALUATOR_TIMEOUT,
    Scorer,
)
from bandit_router.rewards import Evaluator
from bandit_router.telemetry import Telemetry, evaluator_name

__all__ = ["DEFAULT_NAME", "Live", "RouterOptions"]

#: The default router name: its run name and its namespace in the store.
DEFAULT_NAME: Final = "bandit_router"


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _seconds(name: str, v: object, *, optional: bool, zero: bool = False) -> None:
    if v is None and optional:
        return
    ok = _number(v) and math.isfinite(v) and (v >= 0 if zero else v > 0)  # type: ignore[arg-type,operator]
    if not ok:
        what = "a number of seconds " + (">= 0" if zero else "> 0")
        raise ConfigurationError(
            f"{name} must be {'None or ' if optional else ''}{what}, got {v!r}"
        )


def _integer(name: str, v: object, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigurationError(f"{name} must be an integer >= {low}, got {v!r}")


def _reward_value(name: str, v: object) -> None:
    if v is None:
        return
    if not _number(v) or not 0.0 <= v <= 1.0:  # type: ignore[operator]
        raise ConfigurationError(f"{name} must be None or a number in [0, 1], got {v!r}")


def _flag(name: str, v: object) -> None:
    if not isinstance(v, bool):
        raise ConfigurationError(f"{name} must be True or False, got {v!r}")


def _callable(name: str, v: object, *, optional: bool) -> None:
    if v is None and optional:
        return
    if not callable(v):
        raise ConfigurationError(f"{name} must be a callable, got {v!r}")


def _check_name(v: object) -> None:
    if not isinstance(v, str) or not v.strip():
        raise ConfigurationError(
            f"name must be a non-empty string (it is the router's namespace in the store), "
            f"got {v!r}"
        )


def _check_decay(v: object) -> None:
    if v is None:
        return
    if not _number(v) or not 0.0 < v <= 1.0:  # type: ignore[operator]
        raise ConfigurationError(f"decay must be None or a number in (0, 1], got {v!r}")


def _check_retry_if(v: object) -> None:
    if isinstance(v, tuple):
        if not v or not all(isinstance(t, type) and issubclass(t, BaseException) for t in v):
            raise ConfigurationError(
                f"retry_if must be a predicate or a tuple of exception types, got {v!r}"
            )
    elif not callable(v):
        raise ConfigurationError(
            f"retry_if must be a predicate or a tuple of exception types, got {v!r}"
        )


def _check_mapping(name: str, v: object) -> None:
    if v is not None and not isinstance(v, Mapping):
        raise ConfigurationError(f"{name} must be None or a mapping of arm -> value, got {v!r}")


#: The checks of the arguments pydantic would coerce laxly (run before pydantic sees them).
_CHECKS: Final[Mapping[str, Callable[[object], None]]] = {
    "name": _check_name,
    "decay": _check_decay,
    "priors": lambda v: _check_mapping("priors", v),
    "costs": lambda v: _check_mapping("costs", v),
    "reward": lambda v: _callable("reward", v, optional=True),
    "context_key": lambda v: _callable("context_key", v, optional=True),
    "context_prior_weight": lambda v: (
        None if v is None else _seconds("context_prior_weight", v, optional=True, zero=True)
    ),
    "max_attempts": lambda v: _integer("max_attempts", v, 1),
    "timeout": lambda v: _seconds("timeout", v, optional=True),
    "stall_timeout": lambda v: _seconds("stall_timeout", v, optional=True),
    "retry_if": _check_retry_if,
    "retry_initial_wait": lambda v: _seconds("retry_initial_wait", v, optional=False, zero=True),
    "retry_max_wait": lambda v: _seconds("retry_max_wait", v, optional=False, zero=True),
    "rate_limit_cooldown": lambda v: _seconds("rate_limit_cooldown", v, optional=False, zero=True),
    "fallback": lambda v: _flag("fallback", v),
    "failure_reward": lambda v: _reward_value("failure_reward", v),
    "rate_limit_reward": lambda v: _reward_value("rate_limit_reward", v),
    "expired_reward": lambda v: _reward_value("expired_reward", v),
    "pending_ttl": lambda v: _seconds("pending_ttl", v, optional=False),
    "max_pending": lambda v: _integer("max_pending", v, 1),
    "seed": lambda v: None if v is None else _integer("seed", v, 0),
    "capture_content": lambda v: _flag("capture_content", v),
    "telemetry": lambda v: _flag("telemetry", v),
    "evaluator_timeout": lambda v: _seconds("evaluator_timeout", v, optional=True),
    "evaluator_concurrency": lambda v: _integer("evaluator_concurrency", v, 1),
}


class RouterOptions(BaseModel):
    """The arguments of a learning router (both faces), and the core they build.

    Args:
        arms: ``{name: runnable}``: chat models, chains, anything; the names are the arm ids.
        policy: The selection rule; default ``KLUCB()``.
        priors: Optional ``{arm: Prior}`` pseudo-observations.
        decay: Discount per observation of any arm, in (0, 1]; ``None`` is stationary.
        reward: Sync or async evaluator returning a score in [0, 1] (see
            :mod:`bandit_router.rewards`), run after the answer is returned; ``None`` waits for
            delayed feedback (:meth:`arecord_feedback`).
        store: Where the learning lives; default a new ``InMemoryStore``.
        name: The router's name: its run name and its namespace in the store (routers with the
            same name and store share their learning). A non-empty string.
        context_key: ``callable(input) -> str``: separate statistics per context.
        context_prior_weight: Seed each context from the global statistics as a prior worth
            at most this many observations (``None``: contexts start from zero).
        costs: ``{arm: cost}``: each arm's *known* cost per call, in the reward's units,
            subtracted from its policy index: cost is known, quality is learned.
        max_attempts: Requests per arm per routed call (the first and the retries), >= 1. An
            arm whose client retries by itself is sent at most this many requests in all:
            the router turns the client's retries off for its calls where it can (OpenAI
            clients), and otherwise makes one attempt and lets the client retry.
        timeout: Seconds of waiting for an arm per attempt, streams included (``None``: no
            limit). On the async faces a hard limit; on the sync faces checked as chunks
            arrive, and handed to the clients the router knows as their request timeout.
        stall_timeout: Seconds of any single wait for the arm: the first chunk, or the gap
            between two chunks (``None``: only ``timeout`` applies).
        retry_if: Which exceptions are retried on the same arm: a predicate or a tuple of
            exception types (default :func:`~bandit_router.core.failures.is_transient`).
        retry_initial_wait: First back-off in seconds (exponential with full jitter).
        retry_max_wait: Longest back-off in seconds; a ``Retry-After`` longer than this is not
            waited for (the call falls back).
        rate_limit_cooldown: Seconds a rate-limited arm (HTTP 429) is skipped when the server
            gave no ``Retry-After`` (with one, that long).
        fallback: Fall back to the next-best arm when an arm's attempts are exhausted.
        failure_reward: What a failed attempt teaches about its arm (``None``: nothing).
        rate_limit_reward: What a rate-limited attempt teaches (default ``None``: nothing; a
            rate limit is about capacity, not quality).
        expired_reward: What a decision whose reward never arrives counts as.
        pending_ttl: Seconds a decision waits for its reward.
        max_pending: Most decisions waiting at once.
        seed: Seed of the router's random generator.
        tracer_provider: OpenTelemetry tracer provider for the router's spans (``None``: the
            global one).
        meter_provider: OpenTelemetry meter provider for its metrics (``None``: the global one).
        capture_content: Put the (truncated) input and output text and exception messages in
            spans and logs. Off by default: they may contain personal data.
        telemetry: ``False`` turns spans and metrics off entirely.
        evaluator_timeout: Seconds the evaluator may take per answer before its decision is
            released unscored (``None``: no limit).
        evaluator_concurrency: Evaluations running at once (threads for sync evaluators).

    Raises:
        ConfigurationError: On any invalid or unknown argument; the message names it.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    arms: Mapping[str, Runnable[Any, Any]]
    policy: Any = None
    priors: dict[str, Prior] | None = None
    decay: float | None = None
    reward: Callable[..., Any] | None = None
    store: Any = None
    name: str | None = DEFAULT_NAME
    context_key: Callable[[Any], str] | None = None
    context_prior_weight: float | None = None
    costs: dict[str, float] | None = None
    max_attempts: int = 3
    timeout: float | None = 30.0
    stall_timeout: float | None = None
    retry_if: Callable[[BaseException], bool] | tuple[type[BaseException], ...] = Field(
        default=is_transient
    )
    retry_initial_wait: float = 0.5
    retry_max_wait: float = 8.0
    rate_limit_cooldown: float = 5.0
    fallback: bool = True
    failure_reward: float | None = 0.0
    rate_limit_reward: float | None = None
    expired_reward: float | None = None
    pending_ttl: float = DEFAULT_PENDING_TTL
    max_pending: int = DEFAULT_MAX_PENDING
    seed: int | None = None
    tracer_provider: Any = None
    meter_provider: Any = None
    capture_content: bool = False
    telemetry: bool = True
    evaluator_timeout: float | None = DEFAULT_EVALUATOR_TIMEOUT
    evaluator_concurrency: int = DEFAULT_EVALUATOR_CONCURRENCY

    #: The router's live parts (see :class:`Live`).
    _live: Live = PrivateAttr()

    #: Arguments that belong to these options (the rest are the face's own fields).
    OPTIONS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **kwargs: Any) -> None:
        known = set(type(self).model_fields)
        unknown = sorted(set(kwargs) - known)
        if unknown:
            bad = unknown[0]
            close = difflib.get_close_matches(bad, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"{type(self).__name__} got an unknown argument {bad!r}{hint}")
        if "arms" in kwargs:
            kwargs["arms"] = _coerce_arms(kwargs["arms"])
        for key, value in kwargs.items():
            check = _CHECKS.get(key)
            if check is not None:
                check(value)
        try:
            super().__init__(**kwargs)
        except ValidationError as exc:
            raise _configuration_error(exc) from None

    def _build_core(self) -> None:
        """Build the routing core from the validated options (called by the faces)."""
        retry_if = self.retry_if
        predicate: Callable[[BaseException], bool]
        if isinstance(retry_if, tuple):
            types = retry_if

            def predicate(exc: BaseException) -> bool:
                return isinstance(exc, types)

        else:
            predicate = retry_if
        bandit = Bandit(
            list(self.arms),
            name=self.name or DEFAULT_NAME,
            policy=self.policy,
            priors=self.priors,
            decay=self.decay,
            store=self.store,
            failure_reward=self.failure_reward,
            expired_reward=self.expired_reward,
            rate_limit_reward=self.rate_limit_reward,
            pending_ttl=self.pending_ttl,
            max_pending=self.max_pending,
            seed=self.seed,
            context_prior_weight=self.context_prior_weight,
            costs=self.costs,
        )
        telemetry = Telemetry(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            capture_content=self.capture_content,
            enabled=self.telemetry,
            arms=self.arms,
        )
        scorer = None
        if self.reward is not None:
            evaluator = (
                self.reward if isinstance(self.reward, Evaluator) else Evaluator(self.reward)
            )
            _check_prices(self.reward, self.arms)
            scorer = Scorer(
                evaluator,
                bandit,
                _settle_sync(bandit),
                timeout=self.evaluator_timeout,
                concurrency=self.evaluator_concurrency,
                name=evaluator_name(evaluator.fn),
            )
        from bandit_router.langchain.arms import client_attempts

        settings = RouteSettings(
            max_attempts=self.max_attempts,
            timeout=self.timeout,
            stall_timeout=self.stall_timeout,
            retry_if=predicate,
            retry_initial_wait=self.retry_initial_wait,
            retry_max_wait=self.retry_max_wait,
            fallback=self.fallback,
            rate_limit_cooldown=self.rate_limit_cooldown,
            attempts=client_attempts(self.arms, self.max_attempts),
        )
        core = Router(bandit, settings, scorer, cooldowns=Cooldowns(), seed=self.seed)
        self._live = Live.build(core, telemetry, self.name or DEFAULT_NAME, self.arms, self.timeout)

    @property
    def _core(self) -> Router:
        """The routing core (shared by the routers derived from this one)."""
        live: Live = self.__pydantic_private__["_live"]  # type: ignore[index]
        return live.core

    @property
    def _telemetry(self) -> Telemetry:
        live: Live = self.__pydantic_private__["_live"]  # type: ignore[index]
        return live.telemetry


@dataclass(slots=True)
class Live:
    """A router's live parts, in one plain object.

    Read once per call straight from pydantic's private dict: pydantic serves each private
    attribute through ``BaseModel.__getattr__``, which a call would otherwise go through a
    dozen times.

    Attributes:
        core: The routing core: learning, retries, scoring (shared by derived routers).
        telemetry: Spans and metrics (shared by derived routers).
        name: The router's name.
        arms: The runnables called per arm (the arms, or their copies without client retries).
        quiet: Arms that report to no handler of their own (see ``arms.unobserved``).
        usage_streams: Arms asked for usage when they stream.
        post: Applied to every output inside its attempt (a derived structured router).
    """

    core: Router
    telemetry: Telemetry
    name: str
    arms: dict[str, Runnable[Any, Any]]
    quiet: frozenset[str]
    usage_streams: frozenset[str]
    post: Callable[[Any], Any] | None = None

    @classmethod
    def build(
        cls,
        core: Router,
        telemetry: Telemetry,
        name: str,
        arms: Mapping[str, Runnable[Any, Any]],
        timeout: float | None,
        post: Callable[[Any], Any] | None = None,
    ) -> Live:
        """The live parts of a router over ``arms`` (its own, or derived from another's)."""
        from bandit_router.langchain.arms import (
            callable_arms,
            streams_usage,
            unobserved,
        )

        return cls(
            core=core,
            telemetry=telemetry,
            name=name,
            arms=callable_arms(arms, timeout),
            quiet=frozenset(n for n, a in arms.items() if unobserved(a)),
            usage_streams=frozenset(n for n, a in arms.items() if streams_usage(a)),
            post=post,
        )


def _settle_sync(bandit: Bandit) -> Callable[[str, float | None], None]:
    def settle(decision_id: str, score: float | None) -> None:
        if score is None:
            bandit.release_sync(decision_id)
        else:
            bandit.reward_sync(decision_id, score)

    return settle


def _coerce_arms(value: object) -> dict[str, Runnable[Any, Any]]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"arms must be a mapping of name -> Runnable, got {value!r}")
    out: dict[str, Runnable[Any, Any]] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise ConfigurationError(f"arm names must be non-empty strings, got {k!r}")
        try:
            out[k] = coerce_to_runnable(v)
        except TypeError as exc:
            raise ConfigurationError(f"arm {k!r} is not a Runnable or callable: {v!r}") from exc
    return out


def _check_prices(reward: object, arms: Mapping[str, object]) -> None:
    """A price table keyed by a name that is no arm is a typo: refuse it, as ``costs=`` does."""
    prices = getattr(reward, "prices", None)
    if isinstance(reward, Evaluator):
        prices = getattr(reward.fn, "prices", prices)
    if isinstance(prices, Mapping):
        unknown = sorted(k for k in prices if k not in arms)
        if unknown:
            raise ConfigurationError(
                f"price for unknown arm {unknown[0]!r}; the arms are {list(arms)}"
            )


def _configuration_error(exc: ValidationError) -> ConfigurationError:
    """Name the first bad argument pydantic found (or unwrap our own error)."""
    errors = exc.errors()
    first: Mapping[str, Any] = errors[0] if errors else {}
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, ConfigurationError):
        return cause
    loc = ".".join(str(p) for p in first.get("loc", ())) or "argument"
    got = first.get("input")
    return ConfigurationError(f"{loc} is invalid ({first.get('msg', 'invalid')}), got {got!r}")
