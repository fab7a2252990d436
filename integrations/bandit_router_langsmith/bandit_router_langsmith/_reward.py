"""LangSmith-style and openevals evaluators as a router's reward, unchanged.

The router calls its reward with ``inputs``, ``outputs``, ``arm``, ``run_id``, ``metadata`` and
``latency_s``. A LangSmith evaluator expects a ``Run`` and an ``Example`` (or the ``inputs``,
``outputs`` and ``reference_outputs`` dicts drawn from them). :class:`LangSmithReward` builds
that run and example from the router's call and runs the evaluator through LangSmith's own
wrapper (``DynamicRunEvaluator``, what ``langsmith.evaluate()`` uses), so an evaluator sees
exactly the arguments it would see in a LangSmith experiment.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import math
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import anyio.to_thread
from langchain_core.messages import BaseMessage
from langsmith import run_helpers
from langsmith.evaluation.evaluator import (
    DynamicRunEvaluator,
    EvaluationResult,
    RunEvaluator,
)
from langsmith.schemas import Example, Run

from bandit_router import ConfigurationError, InvalidRewardError
from bandit_router.rewards import coerce_score

if TYPE_CHECKING:
    from bandit_router_langsmith._feedback import LangSmithFeedback

__all__ = ["REFERENCE_KEY", "LangSmithReward", "langsmith_reward", "message_text"]

#: The key of a call's ``config["metadata"]`` read for reference outputs when ``reference``
#: is not given: ``router.invoke(q, config={"metadata": {"reference_outputs": ...}})``.
REFERENCE_KEY: Final = "reference_outputs"


class _FromMetadata:
    """The default ``reference``: read each call's ``config["metadata"]["reference_outputs"]``."""

    def __repr__(self) -> str:
        return f"<metadata[{REFERENCE_KEY!r}]>"


_NO_REFERENCE: Final = _FromMetadata()


def message_text(value: Any) -> Any:
    """Return a chat message's text (its string content, or its text blocks joined).

    Anything that is not a :class:`~langchain_core.messages.BaseMessage` is returned as it is.
    This is the default ``prepare_outputs`` of :func:`langsmith_reward`: evaluators compare
    and judge text, and a message object is not JSON (openevals' ``exact_match`` dumps both
    sides to JSON).
    """
    if not isinstance(value, BaseMessage):
        return value
    content = value.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, Mapping) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def _as_dict(value: Any, key: str) -> dict[str, Any]:
    """A mapping as a dict; anything else as ``{key: value}``.

    LangSmith keeps a run's inputs and outputs and an example's outputs as dicts, and
    ``evaluate()`` wraps a target's non-dict return value as ``{"output": value}``; doing
    the same here gives an evaluator the shapes it was written for.
    """
    if isinstance(value, Mapping):
        return dict(value)
    return {key: value}


def _run_uuid(run_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(run_id))
    except ValueError:
        # Not a UUID (a custom decision id): derive a stable one, LangSmith needs UUIDs.
        return uuid.uuid5(uuid.NAMESPACE_URL, f"bandit-router:{run_id}")


def _requires_reference(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` takes ``reference_outputs`` without a default (it cannot do without)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    p = params.get("reference_outputs")
    return p is not None and p.default is p.empty


def _wrap(evaluator: object) -> tuple[RunEvaluator, str, bool]:
    """Return the evaluator as a ``RunEvaluator``, its name, and whether it needs a reference."""
    if isinstance(evaluator, RunEvaluator):
        name = getattr(evaluator, "_name", None) or type(evaluator).__name__
        return evaluator, str(name), False
    if not callable(evaluator):
        raise ConfigurationError(
            f"evaluator must be a LangSmith RunEvaluator or a callable, got {evaluator!r}"
        )
    try:
        wrapped = DynamicRunEvaluator(evaluator)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"{evaluator!r} is not a LangSmith evaluator: it must take (run, example) or "
            f"some of inputs, outputs, reference_outputs, run, example, attachments ({exc})"
        ) from exc
    name = getattr(evaluator, "__name__", None) or type(evaluator).__name__
    return wrapped, str(name), _requires_reference(evaluator)


def _results(raw: object) -> list[EvaluationResult]:
    """Flatten what a ``RunEvaluator`` returned into a list of ``EvaluationResult``."""
    if isinstance(raw, EvaluationResult):
        return [raw]
    if isinstance(raw, Mapping):
        if "results" in raw:
            items = raw["results"]
            if not isinstance(items, Sequence) or isinstance(items, str | bytes):
                raise InvalidRewardError(f"evaluator results {raw!r} are not a list")
            return [r if isinstance(r, EvaluationResult) else EvaluationResult(**r) for r in items]
        return [EvaluationResult(**raw)]
    raise InvalidRewardError(
        f"evaluator returned {raw!r}; expected an EvaluationResult or EvaluationResults"
    )


class LangSmithReward:
    """A LangSmith or openevals evaluator adapted to be a router's ``reward=``.

    Build it with :func:`langsmith_reward`; the arguments are documented there.

    Attributes:
        evaluator: The evaluator as a LangSmith ``RunEvaluator``.
        feedback: Where every result is forwarded as LangSmith feedback, or ``None``.
    """

    def __init__(
        self,
        evaluator: object,
        *,
        reference: Any = _NO_REFERENCE,
        key: str | None = None,
        scale: tuple[float, float] | None = None,
        feedback: LangSmithFeedback | None = None,
        prepare_outputs: Callable[[Any], Any] | None = message_text,
        trace: bool = False,
        name: str | None = None,
    ) -> None:
        self.evaluator, own_name, self._needs_reference = _wrap(evaluator)
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigurationError(f"name must be a non-empty string or None, got {name!r}")
        #: The name spans and logs give this reward (default: the evaluator's own name).
        self.__name__ = name or own_name
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigurationError(f"key must be a non-empty string or None, got {key!r}")
        self.key = key
        if scale is not None:
            lo, hi = _check_scale(scale)
            self._scale: tuple[float, float] | None = (lo, hi)
        else:
            self._scale = None
        if feedback is not None and not callable(getattr(feedback, "send", None)):
            raise ConfigurationError(f"feedback must be a LangSmithFeedback, got {feedback!r}")
        self.feedback = feedback
        if prepare_outputs is not None and not callable(prepare_outputs):
            raise ConfigurationError(
                f"prepare_outputs must be a callable or None, got {prepare_outputs!r}"
            )
        self._prepare = prepare_outputs
        self._reference = reference
        self._trace = bool(trace)

    def __repr__(self) -> str:
        return f"LangSmithReward({self.__name__!r}, key={self.key!r})"

    # --- building the run and the example ---------------------------------------------------

    def _reference_for(self, inputs: Any, metadata: Mapping[str, Any]) -> Any:
        ref = self._reference
        if ref is _NO_REFERENCE:
            return metadata.get(REFERENCE_KEY)
        if callable(ref):
            return ref(inputs)
        return ref

    def build(
        self,
        *,
        inputs: Any,
        outputs: Any,
        arm: str = "",
        run_id: str | uuid.UUID | None = None,
        metadata: Mapping[str, Any] | None = None,
        latency_s: float | None = None,
    ) -> tuple[Run, Example]:
        """Return the LangSmith ``Run`` and ``Example`` the evaluator is given for one call.

        ``run.inputs`` and ``example.inputs`` are the router's input (a mapping as a dict,
        anything else as ``{"input": value}``); ``run.outputs`` is the arm's output after
        ``prepare_outputs`` (as a dict, else ``{"output": value}``); ``example.outputs`` the
        reference outputs, wrapped the same way (``None`` when there is no reference).

        Raises:
            ValueError: If the evaluator requires ``reference_outputs`` and none was found.
        """
        meta = dict(metadata or {})
        rid = _run_uuid(str(run_id)) if run_id is not None else uuid.uuid4()
        ins = _as_dict(inputs, "input")
        out = self._prepare(outputs) if self._prepare is not None else outputs
        reference = self._reference_for(inputs, meta)
        if reference is None and self._needs_reference:
            raise ValueError(
                f"evaluator {self.__name__!r} needs reference outputs: pass reference= to "
                f"langsmith_reward(), or config={{'metadata': {{{REFERENCE_KEY!r}: ...}}}} "
                "to the call"
            )
        end = datetime.datetime.now(datetime.UTC)
        start = end - datetime.timedelta(seconds=latency_s or 0.0)
        run = Run(
            id=rid,
            trace_id=rid,
            name="bandit_router",
            run_type="chain",
            start_time=start,
            end_time=end,
            inputs=ins,
            outputs=_as_dict(out, "output"),
            tags=[f"bandit_router:arm:{arm}"] if arm else [],
            extra={"metadata": {**meta, "bandit_router_arm": arm}},
        )
        example = Example(
            id=uuid.uuid5(rid, "example"),
            inputs=ins,
            outputs=None if reference is None else _as_dict(reference, "output"),
            metadata=meta,
        )
        return run, example

    # --- evaluating ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tracing(self) -> Iterator[None]:
        if self._trace:
            yield
        else:
            # Evaluators are often @traceable (openevals' are): an online router would send
            # one extra trace per call. Off unless asked for.
            with run_helpers.tracing_context(enabled=False):
                yield

    async def evaluate(self, run: Run, example: Example) -> list[EvaluationResult]:
        """Run the evaluator on ``run`` and ``example`` and return its results."""
        ev = self.evaluator
        if isinstance(ev, DynamicRunEvaluator):
            native_async = ev.is_async
        else:
            native_async = type(ev).aevaluate_run is not RunEvaluator.aevaluate_run
        if native_async:
            with self._tracing():
                raw: object = await ev.aevaluate_run(run, example)
        else:

            def call() -> object:
                with self._tracing():
                    return ev.evaluate_run(run, example)

            # A sync judge (an LLM call) must not block the event loop; and the base class's
            # own async path is asyncio-only, while the router also runs on trio.
            raw = await anyio.to_thread.run_sync(call)
        return _results(raw)

    def score(self, results: Sequence[EvaluationResult]) -> float:
        """Pick the reward among ``results`` and return it in [0, 1].

        Raises:
            InvalidRewardError: If no result has the key asked for, several results and no
                ``key`` leave the choice open, or the score is missing or outside [0, 1]
                (after ``scale``).
        """
        if not results:
            raise InvalidRewardError(f"evaluator {self.__name__!r} returned no result")
        keys = [r.key for r in results]
        if self.key is not None:
            chosen = [r for r in results if r.key == self.key]
            if not chosen:
                raise InvalidRewardError(
                    f"evaluator {self.__name__!r} returned no result with key {self.key!r}; "
                    f"its keys are {keys}"
                )
            result = chosen[0]
        elif len(results) == 1:
            result = results[0]
        else:
            raise InvalidRewardError(
                f"evaluator {self.__name__!r} returned {len(results)} results ({keys}); pass "
                "key= to langsmith_reward() to say which one is the reward"
            )
        s = result.score
        if s is None:
            raise InvalidRewardError(
                f"evaluator result {result.key!r} has no numeric score (value={result.value!r})"
            )
        value = float(s)
        if self._scale is not None:
            lo, hi = self._scale
            value = (value - lo) / (hi - lo)
        return coerce_score(value)

    async def __call__(
        self,
        *,
        inputs: Any,
        outputs: Any,
        arm: str = "",
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        latency_s: float | None = None,
    ) -> float:
        """Evaluate one routed call and return its reward (the router calls this).

        Every result is forwarded to ``feedback`` (if set) on the call's run id, whether or
        not it makes a valid reward.

        Raises:
            InvalidRewardError: If the results make no valid reward (see :meth:`score`).
            ValueError: If a reference is required and missing.
            Exception: Whatever the evaluator raises (the router logs it and counts nothing).
        """
        run, example = self.build(
            inputs=inputs,
            outputs=outputs,
            arm=arm,
            run_id=run_id,
            metadata=metadata,
            latency_s=latency_s,
        )
        results = await self.evaluate(run, example)
        reward: float | None = None
        try:
            reward = self.score(results)
            return reward
        finally:
            if self.feedback is not None:
                for r in results:
                    self.feedback.send(
                        run.id,
                        r.key,
                        score=r.score,
                        value=r.value,
                        comment=r.comment,
                        correction=r.correction,
                        source_type="model",
                        source_run_id=r.source_run_id if self._trace else None,
                        source_info={"bandit_router": {"arm": arm, "reward": reward}},
                    )


def _check_scale(scale: object) -> tuple[float, float]:
    if (
        not isinstance(scale, tuple)
        or len(scale) != 2
        or not all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in scale
        )
        or not scale[0] < scale[1]
    ):
        raise ConfigurationError(f"scale must be a (low, high) pair with low < high, got {scale!r}")
    return float(scale[0]), float(scale[1])


def langsmith_reward(
    evaluator: object,
    *,
    reference: Any = _NO_REFERENCE,
    key: str | None = None,
    scale: tuple[float, float] | None = None,
    feedback: LangSmithFeedback | None = None,
    prepare_outputs: Callable[[Any], Any] | None = message_text,
    trace: bool = False,
    name: str | None = None,
) -> LangSmithReward:
    """Use a LangSmith or openevals evaluator, unchanged, as a router's reward.

    Accepted evaluators are those ``langsmith.evaluate()`` accepts: a function of
    ``(run, example)``, or of some of ``inputs``, ``outputs``, ``reference_outputs``, ``run``,
    ``example`` (sync or async; openevals evaluators such as ``exact_match`` or
    ``create_llm_as_judge(...)`` are such functions), or a ``RunEvaluator``. It may return a
    bool, a number, a dict (``{"key", "score", "comment"}``, or ``{"results": [...]}``), an
    ``EvaluationResult`` or ``EvaluationResults``.

    The evaluator sees what it would see in a LangSmith experiment: ``inputs`` is the router's
    input, ``outputs`` the answer and ``reference_outputs`` the reference, each as a dict
    (a non-dict value ``v`` becomes ``{"input": v}`` or ``{"output": v}``, as ``evaluate()``
    does for a target's return value). A chat message answer is first reduced to its text.

    Args:
        evaluator: The evaluator.
        reference: The reference outputs: a value shared by every call, or a callable
            ``reference(inputs)`` returning the call's reference (e.g. a lookup in your
            dataset). When omitted, each call's ``config["metadata"]["reference_outputs"]``
            is used, if present.
        key: Which result is the reward when the evaluator returns several (by its key).
        scale: ``(low, high)``: map scores from this range onto [0, 1] (e.g. ``(1, 5)`` for a
            five-point judge). Without it, scores must already lie in [0, 1].
        feedback: A :class:`~bandit_router_langsmith.LangSmithFeedback`: every result is also
            sent to LangSmith as feedback on the router's run id (in the background).
        prepare_outputs: Applied to the answer before it is wrapped; default
            :func:`message_text`; ``None`` passes the answer as it is.
        trace: Trace the evaluator's own runs to LangSmith (when tracing is on). Off by
            default, so an online router does not send one evaluator trace per call.
        name: The evaluator's name in spans and logs (default: its function's name; give
            one for evaluators made by factories, such as openevals' ``create_llm_as_judge``).

    Returns:
        An async reward to pass as ``BanditRouterRunnable(reward=...)``.

    Raises:
        ConfigurationError: If the evaluator's signature is not one LangSmith accepts, or an
            argument is invalid.

    Example::

        from openevals import exact_match
        reward = langsmith_reward(exact_match, reference=lambda q: ANSWERS[q])
        router = BanditRouterRunnable(arms=..., reward=reward)
    """
    return LangSmithReward(
        evaluator,
        reference=reference,
        key=key,
        scale=scale,
        feedback=feedback,
        prepare_outputs=prepare_outputs,
        trace=trace,
        name=name,
    )
