"""Rewards: calling evaluators, coercing their scores, and cost/latency-aware trade-offs.

An evaluator is any sync or async callable. It is called with the keyword arguments it names
among ``inputs``, ``outputs``, ``arm``, ``run_id``, ``metadata``, ``latency_s`` and ``usage``
(or all of them if it takes ``**kwargs``), and may return a float or bool, a mapping with a
``"score"`` key (openevals), or an object with a ``.score`` attribute (LangSmith's
``EvaluationResult``). The score must lie in [0, 1].
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import anyio.to_thread

from bandit_router._errors import ConfigurationError, InvalidRewardError
from bandit_router._stats import check_reward

__all__ = ["REWARD_ARGUMENTS", "Evaluator", "coerce_score"]

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
        value = float(value)
    return check_reward(value, what=f"evaluator score (from {result!r})")


@dataclass(frozen=True, slots=True)
class Evaluator:
    """A reward function wrapped so the router can call it uniformly.

    Args:
        fn: The sync or async callable.
        run_sync_in_thread: Run a sync ``fn`` in a worker thread (default), so a slow judge
            does not block the event loop; set False for cheap functions.

    Raises:
        ConfigurationError: If ``fn`` is not callable or requires an argument it cannot be given.
    """

    fn: Callable[..., Any]
    run_sync_in_thread: bool = True

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigurationError(f"reward must be a callable, got {self.fn!r}")
        self.wanted()  # validate the signature now, not on the first call

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
        wanted = self.wanted()
        kwargs = available if wanted is None else {k: available[k] for k in wanted}
        if self._is_async():
            result = await self.fn(**kwargs)
        elif self.run_sync_in_thread:
            result = await anyio.to_thread.run_sync(lambda: self.fn(**kwargs))
        else:
            result = self.fn(**kwargs)
        if inspect.isawaitable(result):
            result = await _await(result)
        return coerce_score(result)


async def _await(result: Awaitable[Any]) -> Any:
    return await result


def _check_nonneg(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
