"""Rewards: calling evaluators, coercing their scores, and cost/latency-aware trade-offs.

An evaluator is any sync or async callable. It is called with the keyword arguments it names
among ``inputs``, ``outputs``, ``arm``, ``run_id``, ``metadata``, ``latency_s`` and ``usage``
(or all of them if it takes ``**kwargs``), and may return a float or bool, a mapping with a
``"score"`` key (openevals), or an object with a ``.score`` attribute (LangSmith's
``EvaluationResult``). The score must lie in [0, 1].
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import numbers
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import anyio.to_thread
from opentelemetry import metrics

from bandit_router._errors import ConfigurationError, InvalidRewardError
from bandit_router._stats import check_reward

__all__ = [
    "REWARD_ARGUMENTS",
    "CostAwareReward",
    "Evaluator",
    "Price",
    "coerce_score",
    "cost_aware",
    "inline",
]

logger = logging.getLogger("bandit_router")

#: The keyword arguments an evaluator may ask for by naming them.
REWARD_ARGUMENTS: Final = frozenset(
    {"inputs", "outputs", "arm", "run_id", "metadata", "latency_s", "usage"}
)


def coerce_score(result: object) -> float:
    """Turn an evaluator's result into a reward in [0, 1].

    Accepts a bool, a real number (numpy scalars included), a mapping with a ``"score"`` key,
    or an object with a ``score`` attribute (nested shapes are unwrapped once per level).

    Raises:
        InvalidRewardError: If no score can be found or it is not a finite number in [0, 1];
            the message names the result.
    """
    cls = result.__class__
    # The common case first: a plain bool or number in range, without the ABC checks and the
    # error message built below (an f-string with the result's repr, on every call).
    if (cls is bool or cls is float or cls is int) and 0.0 <= result <= 1.0:  # type: ignore[operator]
        return float(result)  # type: ignore[arg-type]
    value: object = result
    for _ in range(4):  # unwrap at most a few levels: {"score": EvaluationResult(...)} etc.
        if isinstance(value, Mapping):
            if "score" not in value:
                raise InvalidRewardError(f"evaluator result {result!r} has no 'score' key")
            value = value["score"]
        elif not isinstance(value, bool | numbers.Real) and hasattr(value, "score"):
            value = value.score
        else:
            break
    dtype = getattr(value, "dtype", None)
    if dtype is not None and getattr(dtype, "kind", "") in "biuf":  # numpy scalars
        value = value.item()  # type: ignore[attr-defined]
    if isinstance(value, numbers.Real) and not isinstance(value, bool | int | float):
        try:
            value = float(value)
        except OverflowError:  # a Fraction beyond any float: out of range, refused below
            value = math.inf if value > 0 else -math.inf  # type: ignore[operator]
    return check_reward(value, what=f"evaluator score (from {result!r})")


_F = TypeVar("_F", bound=Callable[..., Any])

#: Attribute set by :func:`inline` on evaluators cheap enough to run on the event loop.
_INLINE_ATTR: Final = "__bandit_router_inline__"


def inline(fn: _F) -> _F:
    """Mark a cheap sync evaluator to be called on the event loop, without a worker thread.

    By default the router runs a sync evaluator in a worker thread, so a slow judge (an LLM
    call, a database lookup) cannot stall every other call on the event loop. For a function
    that takes microseconds (a string comparison, a regex) the thread hop costs far more than
    the function; mark it with ``@inline`` (or pass ``Evaluator(fn, run_sync_in_thread=False)``
    as the reward).

    Args:
        fn: A sync callable that returns quickly and never blocks.

    Returns:
        ``fn`` itself, marked.

    Raises:
        ConfigurationError: If ``fn`` is not callable.

    Example:
        >>> @inline
        ... def exact(outputs: str) -> bool:
        ...     return outputs == "42"
    """
    if not callable(fn):
        raise ConfigurationError(f"inline() needs a callable, got {fn!r}")
    setattr(fn, _INLINE_ATTR, True)
    return fn


@dataclass(frozen=True, slots=True)
class Evaluator:
    """A reward function wrapped so the router can call it uniformly.

    Pass an ``Evaluator`` as a router's ``reward`` to choose how a sync function runs.

    Args:
        fn: The sync or async callable.
        run_sync_in_thread: How a sync ``fn`` runs. ``None`` (the default): timed in a worker
            thread at first, then called directly once it proved quick (see
            :mod:`bandit_router.core.scoring`), unless it is marked with :func:`inline`
            (always direct). ``True``: always in a worker thread (a judge that may block on
            I/O). ``False``: always direct.

    Raises:
        ConfigurationError: If ``fn`` is not callable or requires an argument it cannot be given.
    """

    fn: Callable[..., Any]
    run_sync_in_thread: bool | None = None
    # Worked out once: inspecting a signature on every call costs more than many evaluators.
    _wanted: frozenset[str] | None = field(init=False, repr=False, compare=False, default=None)
    _mode: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigurationError(f"reward must be a callable, got {self.fn!r}")
        if self.run_sync_in_thread not in (None, True, False):
            raise ConfigurationError(
                f"run_sync_in_thread must be None, True or False, got {self.run_sync_in_thread!r}"
            )
        object.__setattr__(self, "_wanted", self.wanted())  # validates the signature now
        if self._is_async():
            mode = "async"
        elif self.run_sync_in_thread is None:
            mode = "inline" if getattr(self.fn, _INLINE_ATTR, False) else "auto"
        else:
            mode = "thread" if self.run_sync_in_thread else "inline"
        object.__setattr__(self, "_mode", mode)

    @property
    def mode(self) -> str:
        """How ``fn`` runs.

        ``"async"``, ``"inline"`` (sync, always direct), ``"thread"`` (sync, always in a worker
        thread) or ``"auto"`` (sync: timed, then direct if quick).
        """
        return self._mode

    def wanted(self) -> frozenset[str] | None:
        """Return the argument names ``fn`` takes (``None`` when it takes ``**kwargs``)."""
        try:
            sig = inspect.signature(self.fn)
        except (TypeError, ValueError):  # builtins without a signature: give everything
            return None
        names = set()
        for p in sig.parameters.values():
            if p.kind is p.VAR_KEYWORD:
                return None
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                if p.name in REWARD_ARGUMENTS:
                    names.add(p.name)
                elif p.default is p.empty:
                    raise ConfigurationError(
                        f"reward function {self.fn!r} requires argument {p.name!r}; it may only "
                        f"require {sorted(REWARD_ARGUMENTS)}"
                    )
            elif p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
                raise ConfigurationError(
                    f"reward function {self.fn!r} has a positional-only argument {p.name!r}; "
                    "evaluators are called with keyword arguments"
                )
        return frozenset(names)

    def _is_async(self) -> bool:
        fn = self.fn
        return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 (async callable objects)
        )

    async def __call__(self, **available: Any) -> float:
        """Call the evaluator with the arguments it names and return its coerced score.

        Raises:
            InvalidRewardError: If the result is not a valid score.
            Exception: Whatever the evaluator raises.
        """
        wanted = self._wanted
        kwargs = available if wanted is None else {k: available[k] for k in wanted}
        mode = self._mode
        if mode == "async":
            result = await self.fn(**kwargs)
        elif mode == "inline":
            result = self.fn(**kwargs)
        else:
            result = await anyio.to_thread.run_sync(lambda: self.fn(**kwargs))
        cls = result.__class__
        if cls is not bool and cls is not float and inspect.isawaitable(result):
            result = await _await(result)
        return coerce_score(result)

    def call_sync(self, available: Mapping[str, Any]) -> float:
        """Call a sync evaluator here, with the arguments it names; return its coerced score.

        Raises:
            InvalidRewardError: If the result is not a valid score (an awaitable included).
            Exception: Whatever the evaluator raises.
        """
        wanted = self._wanted
        kwargs = available if wanted is None else {k: available[k] for k in wanted}
        result = self.fn(**kwargs)
        if inspect.isawaitable(result):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # a coroutine never awaited would warn
            raise InvalidRewardError(
                f"evaluator {self.fn!r} returned an awaitable from a sync call; make it async"
            )
        return coerce_score(result)


async def _await(result: Awaitable[Any]) -> Any:
    return await result


@dataclass(frozen=True, slots=True)
class Price:
    """An arm's price in USD per million tokens.

    Attributes:
        input_per_million: Price of a million input (prompt) tokens.
        output_per_million: Price of a million output (completion) tokens.
    """

    input_per_million: float
    output_per_million: float

    def __post_init__(self) -> None:
        _check_nonneg("Price.input_per_million", self.input_per_million)
        _check_nonneg("Price.output_per_million", self.output_per_million)

    def cost(self, usage: Mapping[str, Any] | None) -> float:
        """Return the USD cost of one call from its ``usage_metadata`` (0 without usage)."""
        if not usage:
            return 0.0
        tokens_in = usage.get("input_tokens") or 0
        tokens_out = usage.get("output_tokens") or 0
        return (tokens_in * self.input_per_million + tokens_out * self.output_per_million) / 1e6


def cost_aware(
    quality: Callable[..., Any],
    *,
    prices: Mapping[str, Price] | None = None,
    lam: float = 1.0,
    max_cost: float | None = None,
    latency_weight: float = 0.0,
    max_latency_s: float | None = None,
) -> CostAwareReward:
    """Combine an evaluator's quality with the call's cost and latency into one reward.

    The trade-off, with ``q`` the quality in [0, 1], ``c = min(cost / max_cost, 1)`` and
    ``l = min(latency_s / max_latency_s, 1)``::

        reward = (q - lam * c - latency_weight * l + lam + latency_weight)
                 / (1 + lam + latency_weight)

    i.e. ``q - lam * c - latency_weight * l``, mapped linearly from its range
    ``[-lam - latency_weight, 1]`` onto [0, 1] (the normalisation of the replay benchmarks).
    ``lam = 1`` means a call costing ``max_cost`` is worth one unit of quality: a perfect
    answer at ``max_cost`` scores the same as a useless free one. The cost is the call's
    token usage (``usage_metadata``, read where LangChain puts it: the message, the ``raw``
    message of structured output, a stream's chunks) times the arm's :class:`Price`; the
    latency is the call's (time to the first chunk for streams).

    **Usage that is missing is never priced at $0.** When a priced arm's answer carries no
    usage, its cost is estimated: the arm's mean cost over its calls that did report usage (in
    this process), or, before any did, its price times the text's length in tokens (about 4
    characters a token, input and output). Each such call is counted in the
    ``bandit_router.cost.unknown_usage`` metric, and a warning is logged once per arm.

    Args:
        quality: The quality evaluator (any shape :class:`Evaluator` accepts).
        prices: ``{arm: Price}``. A router refuses a price for a name that is not one of its
            arms (a typo would otherwise price nothing); arms without a price cost 0.
        lam: Weight of cost, >= 0.
        max_cost: The cost (USD per call) that counts as 1, e.g. the most expensive model's
            typical call; required when ``lam > 0``.
        latency_weight: Weight of latency, >= 0.
        max_latency_s: The latency that counts as 1; required when ``latency_weight > 0``.

    Returns:
        An async evaluator to pass as ``reward=``.

    Raises:
        ConfigurationError: On a negative weight, or a missing or non-positive scale.
    """
    lam = _check_nonneg("lam", lam)
    mu = _check_nonneg("latency_weight", latency_weight)
    if prices is not None and not isinstance(prices, Mapping):
        raise ConfigurationError(f"prices must be a mapping of arm -> Price, got {prices!r}")
    price_map = dict(prices or {})
    for arm, p in price_map.items():
        if not isinstance(p, Price):
            raise ConfigurationError(f"price for arm {arm!r} must be a Price, got {p!r}")
    if lam > 0 and (max_cost is None or _check_nonneg("max_cost", max_cost) <= 0):
        raise ConfigurationError(f"max_cost must be a cost > 0 when lam > 0, got {max_cost!r}")
    if mu > 0 and (max_latency_s is None or _check_nonneg("max_latency_s", max_latency_s) <= 0):
        raise ConfigurationError(
            f"max_latency_s must be > 0 when latency_weight > 0, got {max_latency_s!r}"
        )
    judge = quality if isinstance(quality, Evaluator) else Evaluator(quality)
    return CostAwareReward(judge, price_map, lam, float(max_cost or 1.0), mu, max_latency_s)


class CostAwareReward:
    """The evaluator :func:`cost_aware` returns: quality less cost and latency, in [0, 1].

    Attributes:
        prices: ``{arm: Price}``.
        unknown_usage: Calls priced without usage, per arm (their cost was estimated).
    """

    def __init__(
        self,
        judge: Evaluator,
        prices: dict[str, Price],
        lam: float,
        max_cost: float,
        latency_weight: float,
        max_latency_s: float | None,
    ) -> None:
        self._judge = judge
        self.prices: Mapping[str, Price] = prices
        self._lam = lam
        self._max_cost = max_cost
        self._mu = latency_weight
        self._max_latency = max_latency_s or 1.0
        self.unknown_usage: dict[str, int] = {}
        self._known: dict[str, tuple[float, int]] = {}  # arm -> (cost sum, calls) with usage
        self._lock = threading.Lock()
        self.__name__ = f"cost_aware({evaluator_label(judge.fn)})"
        self._counter = metrics.get_meter("bandit_router").create_counter(
            "bandit_router.cost.unknown_usage",
            unit="{call}",
            description="Priced calls whose answer carried no token usage (cost estimated).",
        )

    async def __call__(self, **available: Any) -> float:
        """Score one answer (the arguments of any evaluator)."""
        q = await self._judge(**available)
        arm = str(available.get("arm", ""))
        c = 0.0
        price = self.prices.get(arm)
        if self._lam > 0 and price is not None:
            c = min(self.cost(arm, price, available) / self._max_cost, 1.0)
        lat = 0.0
        if self._mu > 0:
            lat = min(float(available.get("latency_s") or 0.0) / self._max_latency, 1.0)
        lam, mu = self._lam, self._mu
        r = (q - lam * c - mu * lat + lam + mu) / (1.0 + lam + mu)
        return min(max(r, 0.0), 1.0)  # guard against float rounding at the ends

    def cost(self, arm: str, price: Price, available: Mapping[str, Any]) -> float:
        """The call's USD cost: from its usage, or estimated when it reported none."""
        usage = available.get("usage")
        if isinstance(usage, Mapping) and (
            usage.get("input_tokens") is not None or usage.get("output_tokens") is not None
        ):
            cost = price.cost(usage)
            with self._lock:
                total, n = self._known.get(arm, (0.0, 0))
                self._known[arm] = (total + cost, n + 1)
            return cost
        with self._lock:
            first = arm not in self.unknown_usage
            self.unknown_usage[arm] = self.unknown_usage.get(arm, 0) + 1
            total, n = self._known.get(arm, (0.0, 0))
        self._counter.add(1, {"bandit_router.arm": arm})
        if first:
            logger.warning(
                "bandit_router: arm %r answered without token usage; its cost is estimated "
                "(its mean cost so far, or the text's length). Ask the arm for usage (e.g. "
                "stream_usage=True) for exact costs.",
                arm,
            )
        if n:
            return total / n
        tokens_in = _tokens(available.get("inputs"))
        tokens_out = _tokens(available.get("outputs"))
        return price.cost({"input_tokens": tokens_in, "output_tokens": tokens_out})


def _tokens(value: object) -> int:
    """About how many tokens ``value``'s text is (4 characters a token)."""
    return -(-len(_text(value)) // 4)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    content = getattr(value, "content", None)
    if content is not None:
        return _text(content)
    messages = getattr(value, "messages", None)  # a PromptValue
    if isinstance(messages, list):
        return _text(messages)
    if isinstance(value, list | tuple):
        return "".join(_text(v) for v in value)
    if isinstance(value, Mapping):
        text = value.get("text")
        if isinstance(text, str):
            return text
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def evaluator_label(fn: object) -> str:
    """A name for an evaluator: its ``__name__``, else its class's name."""
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) and name else type(fn).__name__


def _check_nonneg(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
