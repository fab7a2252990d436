"""OpenTelemetry spans and metrics for routing decisions (``opentelemetry-api`` only).

One :class:`Telemetry` is built per router. Each routed call opens a :class:`RouteSpan` with
:meth:`Telemetry.start_route`; the router reports what happens to it (the decision, each arm
attempt, fallbacks, the reward) and ends it. Delayed feedback is a short span of its own,
linked to the decision's span (:meth:`Telemetry.feedback`).

What a trace shows::

    bandit_router.route       (INTERNAL)  the decision, its reasons, the reward
    ├── chat gpt-4o-mini      (CLIENT)    arm "mini", attempt 1: error.type=RateLimitError
    └── chat gpt-4o           (CLIENT)    arm "big", attempt 1, after the fallback
    bandit_router.feedback    (INTERNAL)  a delayed reward, linked to the route span

Design rules:

- **Never current across a yield.** Spans are started with ``tracer.start_span`` and their
  children get an explicit parent context, so a router that is an async generator (a stream)
  never leaves a context attached across a ``yield``. :meth:`AttemptSpan.activate` attaches
  the attempt's context only around a single ``await`` (so an instrumented HTTP client or a
  provider's own GenAI instrumentation nests under the attempt span) and detaches it before
  anything is yielded.
- **Free when off.** With no SDK configured the API's tracer returns a non-recording span;
  every method then skips all attribute work (metrics still go to the API's meter, itself a
  no-op without an SDK). ``Telemetry(enabled=False)`` skips even that.
- **Private by default.** No prompt or answer text, and no exception message (they often quote
  the prompt), goes into any span, event or metric unless ``capture_content=True``.
- **Finite numbers only.** Several tracing back ends reject NaN and infinity in attributes, so
  the per-arm arrays use documented sentinels: :data:`INDEX_UNTRIED`, :data:`INDEX_NONE` and
  :data:`MEAN_NONE`.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, cast

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)

from bandit_router._errors import ConfigurationError
from bandit_router._version import __version__

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.util.types import AttributeValue

    from bandit_router._engine import Selection

__all__ = [
    "DEFAULT_MAX_CONTENT_LENGTH",
    "DEFAULT_MAX_LINKS",
    "INDEX_NONE",
    "INDEX_UNTRIED",
    "MEAN_NONE",
    "ArmInfo",
    "AttemptSpan",
    "FeedbackSpan",
    "LinkCache",
    "RouteSpan",
    "Telemetry",
    "describe_arm",
    "error_type",
    "evaluator_name",
]

#: Index reported for an untried arm (the policy's ``+inf``: it must be tried): the largest double.
INDEX_UNTRIED: Final = sys.float_info.max
#: Index reported where the policy computed none (``nan``: an excluded arm, or a tried arm while
#: untried arms remain); also stands for ``-inf``: the lowest double.
INDEX_NONE: Final = -sys.float_info.max
#: Mean reported for an arm without an estimate (no data and no prior); real means lie in [0, 1].
MEAN_NONE: Final = -1.0
#: Characters of input or output text kept per attribute when ``capture_content=True``.
DEFAULT_MAX_CONTENT_LENGTH: Final = 2000
#: Decisions whose span context is remembered for linking delayed feedback.
DEFAULT_MAX_LINKS: Final = 10_000

_SCOPE: Final = "bandit_router"
_ROUTE_SPAN: Final = "bandit_router.route"
_FEEDBACK_SPAN: Final = "bandit_router.feedback"
_EVALUATION_EVENT: Final = "gen_ai.evaluation.result"
_FALLBACK_EVENT: Final = "bandit_router.fallback"
_DEGRADED_EVENT: Final = "bandit_router.degraded"
_COOLDOWN_EVENT: Final = "bandit_router.cooldown"
_REWARD_BUCKETS: Final = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_OVERHEAD_BUCKETS: Final = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
_MAX_ATTR_CACHE: Final = 4096
_TRUNCATED: Final = "…"

# LangChain's ``ls_provider`` -> the GenAI semantic conventions' ``gen_ai.provider.name``.
# Providers not listed are reported as LangChain names them.
_PROVIDERS: Final[Mapping[str, str]] = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "google_genai": "gcp.gen_ai",
    "google_vertexai": "gcp.vertex_ai",
    "google_anthropic_vertex": "gcp.vertex_ai",
    "amazon_bedrock": "aws.bedrock",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "cohere": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
    "ibm": "ibm.watsonx.ai",
}


# --- helpers ------------------------------------------------------------------------------


def error_type(exc: BaseException) -> str:
    """Return the ``error.type`` of an exception: its class's qualified name.

    Only the class name is recorded (never the message, which may quote the prompt), as the
    OpenTelemetry GenAI instrumentations do.
    """
    return type(exc).__qualname__


def _is_cancel(exc: BaseException) -> bool:
    """Whether ``exc`` ends a call without being its error.

    ``GeneratorExit`` (a consumer stopped reading a stream), cancellation (asyncio's and trio's)
    and ``KeyboardInterrupt``/``SystemExit`` all derive from ``BaseException`` only.
    """
    return not isinstance(exc, Exception)


def _finite_index(x: float) -> float:
    if x == x and x not in (math.inf, -math.inf):  # finite (the common case, tested cheaply)
        return x
    return INDEX_UNTRIED if x == math.inf else INDEX_NONE


def _text(value: object) -> str:
    """Best-effort plain text of a router input or output (used only with capture_content)."""
    if isinstance(value, str):
        return value
    content = getattr(value, "content", None)
    if content is not None and not isinstance(value, Mapping):
        role = getattr(value, "type", None)
        body = _content_text(content)
        return f"{role}: {body}" if isinstance(role, str) else body
    to_string = getattr(value, "to_string", None)
    if callable(to_string):  # a PromptValue
        try:
            out = to_string()
        except Exception:
            out = None
        if isinstance(out, str):
            return out
    if isinstance(value, list | tuple):
        if len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], str):
            return f"{value[0]}: {value[1]}"  # a ("role", "text") message
        return "\n".join(_text(v) for v in value)
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "".join(parts)
    return str(content)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + _TRUNCATED


@dataclass(frozen=True, slots=True)
class ArmInfo:
    """What the GenAI conventions want to know about an arm.

    Attributes:
        provider: ``gen_ai.provider.name`` (e.g. ``"openai"``), or ``None`` if unknown.
        model: ``gen_ai.request.model`` (e.g. ``"gpt-4o-mini"``), or ``None`` if unknown.
        operation: ``gen_ai.operation.name``: ``"chat"``, or ``"text_completion"`` for a
            LangChain ``LLM``.
    """

    provider: str | None = None
    model: str | None = None
    operation: str = "chat"


def describe_arm(runnable: object) -> ArmInfo:
    """Find an arm's provider and model name, best effort, from LangChain's tracing params.

    Looks through ``bind``/``bind_tools`` bindings (a bound ``model=`` wins) and into a
    sequence (``prompt | model | parser``: its first chat model), then asks the model's
    ``_get_ls_params()``. Anything else (a function, a custom chain) gives ``ArmInfo()``.

    Args:
        runnable: The arm.

    Returns:
        The provider (mapped to the GenAI conventions' names where known), model and operation.
    """
    obj: object = runnable
    bound_model: str | None = None
    for _ in range(16):  # bindings and sequences nest only a few levels
        inner = getattr(obj, "bound", None)
        if inner is not None:  # RunnableBinding (bind, bind_tools, with_config ...)
            kwargs = getattr(obj, "kwargs", None)
            if bound_model is None and isinstance(kwargs, Mapping):
                model = kwargs.get("model")
                bound_model = model if isinstance(model, str) else None
            obj = inner
            continue
        steps = getattr(obj, "steps", None)
        if isinstance(steps, list) and not callable(getattr(obj, "_get_ls_params", None)):
            for step in steps:
                info = describe_arm(step)
                if info.provider is not None or info.model is not None:
                    return info if bound_model is None else _with_model(info, bound_model)
            return ArmInfo(model=bound_model)
        break
    get_params = getattr(obj, "_get_ls_params", None)
    if not callable(get_params):
        return ArmInfo(model=bound_model)
    try:
        params = get_params(**({"model": bound_model} if bound_model else {}))
    except Exception:
        return ArmInfo(model=bound_model)
    if not isinstance(params, Mapping):
        return ArmInfo(model=bound_model)
    provider = params.get("ls_provider")
    model = bound_model or params.get("ls_model_name")
    kind = params.get("ls_model_type")
    return ArmInfo(
        provider=_PROVIDERS.get(provider, provider) if isinstance(provider, str) else None,
        model=model if isinstance(model, str) and model else None,
        operation="text_completion" if kind == "llm" else "chat",
    )


def evaluator_name(fn: object) -> str:
    """Return a name for an evaluator: its ``__name__``, else its class's name."""
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) and name else type(fn).__name__


def _with_model(info: ArmInfo, model: str) -> ArmInfo:
    return ArmInfo(provider=info.provider, model=model, operation=info.operation)


# --- the bounded map decision_id -> span context -----------------------------------------


@dataclass(frozen=True, slots=True)
class _LinkEntry:
    span_context: SpanContext
    started: float  # wall clock (time.time()) when the route started


class LinkCache:
    """A thread-safe LRU map ``decision_id -> (SpanContext, start time)``, bounded in size.

    The router's :class:`Telemetry` remembers each pending decision's route span here, so a
    delayed feedback can link to it. Entries leave when the decision is settled during the call
    (inline reward, failure, cancellation), when its feedback is recorded, or, oldest first,
    when more than ``maxsize`` are waiting.

    Args:
        maxsize: Most entries kept (>= 0; 0 keeps none).

    Raises:
        ConfigurationError: If ``maxsize`` is negative or not an int (a ``ValueError``).
    """

    __slots__ = ("_data", "_lock", "maxsize")

    def __init__(self, maxsize: int = DEFAULT_MAX_LINKS) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ConfigurationError(f"maxsize must be an integer >= 0, got {maxsize!r}")
        self.maxsize = maxsize
        self._data: OrderedDict[str, _LinkEntry] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, decision_id: str, span_context: SpanContext, started: float) -> None:
        """Remember ``decision_id``'s span context (evicting the oldest beyond ``maxsize``)."""
        if self.maxsize == 0:
            return
        with self._lock:
            data = self._data
            data[decision_id] = _LinkEntry(span_context, started)
            data.move_to_end(decision_id)
            while len(data) > self.maxsize:
                data.popitem(last=False)

    def get(self, decision_id: str) -> SpanContext | None:
        """Return ``decision_id``'s span context (marking it recently used), or ``None``."""
        entry = self._entry(decision_id)
        return None if entry is None else entry.span_context

    def started(self, decision_id: str) -> float | None:
        """Return when ``decision_id``'s route started (``time.time()``), or ``None``."""
        entry = self._entry(decision_id)
        return None if entry is None else entry.started

    def _entry(self, decision_id: str) -> _LinkEntry | None:
        with self._lock:
            entry = self._data.get(decision_id)
            if entry is not None:
                self._data.move_to_end(decision_id)
            return entry

    def pop(self, decision_id: str) -> SpanContext | None:
        """Forget ``decision_id``; return its span context, or ``None`` if it was not kept."""
        with self._lock:
            entry = self._data.pop(decision_id, None)
        return None if entry is None else entry.span_context

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, decision_id: object) -> bool:
        return decision_id in self._data


# --- the telemetry of one router ---------------------------------------------------------


class Telemetry:
    """The tracer, the meter and the instruments of one router.

    Args:
        tracer_provider: Where spans go; ``None`` uses the global provider (set by the
            application, e.g. with ``trace.set_tracer_provider``; without one, spans are no-ops).
        meter_provider: Where metrics go; ``None`` uses the global provider.
        capture_content: Record the router's input and output text (truncated) and exception
            messages. Off by default: they may contain personal data.
        max_content_length: Characters kept per captured text.
        enabled: ``False`` turns every call into a no-op (no spans, no metrics).
        max_links: Most pending decisions remembered for linking delayed feedback.
        arms: ``{name: runnable}``: the arms, described once with :func:`describe_arm` for the
            GenAI attributes of their attempt spans (see :meth:`register_arms`).

    Raises:
        ConfigurationError: If ``max_content_length`` or ``max_links`` is negative or not an
            int (a ``ValueError``).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_content: bool = False,
        max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH,
        enabled: bool = True,
        max_links: int = DEFAULT_MAX_LINKS,
        arms: Mapping[str, object] | None = None,
    ) -> None:
        if (
            isinstance(max_content_length, bool)
            or not isinstance(max_content_length, int)
            or max_content_length < 0
        ):
            raise ConfigurationError(
                f"max_content_length must be an integer >= 0, got {max_content_length!r}"
            )
        self.enabled = bool(enabled)
        # Follows the global providers: while neither has an SDK behind it, every span and
        # metric is a no-op, and a call can skip them all (see ``_inert``).
        self._global = tracer_provider is None and meter_provider is None
        self.capture_content = bool(capture_content)
        self.max_content_length = max_content_length
        self.links = LinkCache(max_links)
        self.tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._pulls = meter.create_counter(
            "bandit_router.pulls",
            unit="{pull}",
            description="Calls routed to an arm: one per decision and one per fallback.",
        )
        self._failures = meter.create_counter(
            "bandit_router.failures",
            unit="{failure}",
            description="Failed attempts per arm and error type (every retry counts).",
        )
        self._rewards = _histogram(
            meter,
            "bandit_router.reward",
            unit="1",
            description="Rewards per arm, inline and by delayed feedback, in [0, 1].",
            buckets=_REWARD_BUCKETS,
        )
        self._overhead = _histogram(
            meter,
            "bandit_router.overhead.duration",
            unit="s",
            description="The router's own time per call: its duration minus the time spent "
            "in the arms (attempts and retry back-off) and in the inline evaluator.",
            buckets=_OVERHEAD_BUCKETS,
        )
        self._arm_info: dict[str, ArmInfo] = {}
        self._arm_attrs: dict[tuple[str, str], Mapping[str, str]] = {}
        self._fail_attrs: dict[tuple[str, str, str], Mapping[str, str]] = {}
        self._name_attrs: dict[str, Mapping[str, str]] = {}
        if arms is not None:
            self.register_arms(arms)

    def register_arms(self, arms: Mapping[str, object]) -> None:
        """Describe each arm once (provider, model) for its attempt spans.

        Args:
            arms: ``{name: runnable}``.
        """
        for name, runnable in arms.items():
            try:
                self._arm_info[name] = describe_arm(runnable)
            except Exception:  # an exotic runnable: no GenAI details for it
                self._arm_info[name] = ArmInfo()

    def arm_info(self, arm: str) -> ArmInfo:
        """Return what is known about ``arm`` (``ArmInfo()`` if it was never registered)."""
        return self._arm_info.get(arm) or ArmInfo()

    # -- per call --

    def start_route(
        self,
        router_name: str,
        context: str | None = None,
        run_id: str | None = None,
        *,
        input: object = None,
    ) -> RouteSpan:
        """Start the span of one routed call (not made current: safe across ``yield``).

        Its parent is the caller's current span, read now.

        Args:
            router_name: The router's name (``bandit_router.name``).
            context: The bandit context of the call (``bandit_router.context``), if known
                yet; else given to :meth:`RouteSpan.decision`.
            run_id: The call's run id, recorded as ``bandit_router.decision_id`` until
                :meth:`RouteSpan.decision` says otherwise.
            input: The router's input; recorded (as truncated text) only with
                ``capture_content=True``.

        Returns:
            The call's :class:`RouteSpan`; end it with :meth:`RouteSpan.end`.
        """
        if not self.enabled or (self._global and _inert()):
            return _NULL_ROUTE
        span = self.tracer.start_span(_ROUTE_SPAN, kind=SpanKind.INTERNAL)
        if span.is_recording():  # else skip all attribute work: tracing is off or sampled out
            attrs: dict[str, AttributeValue] = {"bandit_router.name": router_name}
            if context is not None:
                attrs["bandit_router.context"] = context
            if run_id is not None:
                attrs["bandit_router.decision_id"] = run_id
            if self.capture_content and input is not None:
                attrs["bandit_router.input"] = self._content(input)
            span.set_attributes(attrs)
        return RouteSpan(self, router_name, span)

    def feedback(
        self,
        decision_id: str,
        router_name: str = "bandit_router",
        *,
        link: SpanContext | None = None,
        evaluation_name: str = "feedback",
    ) -> FeedbackSpan:
        """Start the short span of a delayed reward, linked to its decision's route span.

        Use it as a context manager around the store update; an exception leaving the block
        (an invalid score, an unknown decision) is recorded as the span's error::

            with telemetry.feedback(run_id, "my_router") as fb:
                done = await bandit.reward(run_id, score)
                fb.settled(score, arm=done.arm, context=done.context)

        Its parent is the caller's current span (e.g. the HTTP request that carried the
        feedback); the link points at the decision's route span.

        Args:
            decision_id: The decision (run id) the feedback is for.
            router_name: The router's name.
            link: The route span to link to; default: the one remembered in :attr:`links`
                (decisions made by this process and still pending).
            evaluation_name: ``gen_ai.evaluation.name`` of the evaluation event.

        Returns:
            The :class:`FeedbackSpan`.
        """
        if not self.enabled:
            return _NULL_FEEDBACK
        return FeedbackSpan(self, decision_id, router_name, link, evaluation_name)

    # -- metric attribute sets, built once --

    def _arm_attributes(self, name: str, arm: str) -> Mapping[str, str]:
        key = (name, arm)
        attrs = self._arm_attrs.get(key)
        if attrs is None:
            attrs = {"bandit_router.name": name, "bandit_router.arm": arm}
            if len(self._arm_attrs) < _MAX_ATTR_CACHE:
                self._arm_attrs[key] = attrs
        return attrs

    def _failure_attributes(self, name: str, arm: str, etype: str) -> Mapping[str, str]:
        key = (name, arm, etype)
        attrs = self._fail_attrs.get(key)
        if attrs is None:
            attrs = {"bandit_router.name": name, "bandit_router.arm": arm, "error.type": etype}
            if len(self._fail_attrs) < _MAX_ATTR_CACHE:
                self._fail_attrs[key] = attrs
        return attrs

    def _name_attributes(self, name: str) -> Mapping[str, str]:
        attrs = self._name_attrs.get(name)
        if attrs is None:
            attrs = {"bandit_router.name": name}
            if len(self._name_attrs) < _MAX_ATTR_CACHE:
                self._name_attrs[name] = attrs
        return attrs

    def _content(self, value: object) -> str:
        """``value`` as truncated text (only called with ``capture_content=True``)."""
        try:
            text = _text(value)
        except Exception:  # never fail the user's call over telemetry
            text = f"<unprintable {type(value).__name__}>"
        return _truncate(text, self.max_content_length)

    def _record_error(self, span: trace.Span, exc: BaseException) -> None:
        """Mark ``span`` failed: status ERROR, ``error.type``; the message only with capture."""
        etype = error_type(exc)
        span.set_attribute("error.type", etype)
        if self.capture_content:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, _truncate(str(exc), self.max_content_length)))
        else:
            span.set_status(Status(StatusCode.ERROR, etype))


def _histogram(
    meter: metrics.Meter, name: str, *, unit: str, description: str, buckets: Sequence[float]
) -> metrics.Histogram:
    try:
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:  # opentelemetry-api < 1.30: no advisory boundaries
        return meter.create_histogram(name, unit=unit, description=description)


# --- the span of one routed call ---------------------------------------------------------


class RouteSpan:
    """The telemetry of one routed call: the ``bandit_router.route`` span and its children.

    Made by :meth:`Telemetry.start_route`. Every method is cheap when the span is not
    recording (no SDK, or sampled out) and never raises on repeated or late calls.
    """

    __slots__ = (
        "_arm",
        "_attempts",
        "_ctx",
        "_decision_id",
        "_ended",
        "_excluded",
        "_fallbacks",
        "_last_arm",
        "_last_end",
        "_last_failed",
        "_name",
        "_recording",
        "_span",
        "_t0",
        "_tel",
        "_wall0",
    )

    def __init__(self, telemetry: Telemetry, router_name: str, span: trace.Span) -> None:
        self._tel = telemetry
        self._name = router_name
        self._span = span
        self._recording = span.is_recording()
        # Children get this as their parent explicitly: nothing is ever attached for them.
        self._ctx: Context | None = (
            trace.set_span_in_context(span) if span.get_span_context().is_valid else None
        )
        self._arm: str | None = None
        self._decision_id: str | None = None
        self._attempts = 0
        self._fallbacks = 0
        self._excluded = 0.0  # seconds in arms and in the evaluator
        self._last_arm: str | None = None
        self._last_end: float | None = None
        self._last_failed = False
        self._ended = False
        self._wall0 = time.time() if self._recording else 0.0
        self._t0 = time.perf_counter()

    @property
    def span_context(self) -> SpanContext:
        """The route span's context (invalid without an SDK): what feedback links to."""
        return self._span.get_span_context()

    @property
    def recording(self) -> bool:
        """Whether the route span records (an SDK is configured and sampled it)."""
        return self._recording

    @property
    def arm(self) -> str | None:
        """The arm the call is on now (after fallbacks), or ``None`` before the decision."""
        return self._arm

    def decision(self, selection: Selection, decision_id: str, context: str | None = None) -> None:
        """Record the bandit's decision and why it was made.

        Sets ``bandit_router.arm``, ``.policy``, ``.explore``, ``.decision_id`` (and
        ``.context`` if given) and the aligned per-arm arrays ``.arms``, ``.indices``,
        ``.means``, ``.pulls``, ``.in_flight``; counts a pull of the chosen arm; remembers the
        span for linking delayed feedback.

        Args:
            selection: The figures the policy chose from (``Decision.selection``).
            decision_id: The decision's id (``Decision.decision_id``).
            context: The decision's context (``Decision.context``).
        """
        tel = self._tel
        arm = selection.arm
        self._arm = arm
        self._decision_id = decision_id
        tel._pulls.add(1, tel._arm_attributes(self._name, arm))
        if not self._recording:
            return
        if context is not None:
            self._span.set_attribute("bandit_router.context", context)
        self._span.set_attributes(
            {
                "bandit_router.arm": arm,
                "bandit_router.policy": selection.policy,
                "bandit_router.explore": selection.explore,
                "bandit_router.decision_id": decision_id,
                "bandit_router.arms": selection.arms,
                "bandit_router.indices": [_finite_index(x) for x in selection.indices],
                "bandit_router.means": [MEAN_NONE if m is None else m for m in selection.means],
                "bandit_router.pulls": selection.pulls,
                "bandit_router.in_flight": selection.in_flight,
            }
        )
        tel.links.put(decision_id, self._span.get_span_context(), self._wall0)

    def attempt(
        self, arm: str, n: int, model: str | None = None, *, provider: str | None = None
    ) -> AttemptSpan:
        """Start the span of one attempt on ``arm`` (a child CLIENT span ``chat {model}``).

        The span is named ``{operation} {model}`` (``chat gpt-4o-mini``); when the model is not
        known, ``{operation} {arm}``. End it with :meth:`AttemptSpan.ok` or
        :meth:`AttemptSpan.failed`.

        Args:
            arm: The arm called.
            n: The attempt's number on this arm, from 1 (retries count up).
            model: ``gen_ai.request.model``; default: the model :func:`describe_arm` found.
            provider: ``gen_ai.provider.name``; default: the provider :func:`describe_arm` found.

        Returns:
            The attempt's :class:`AttemptSpan`.
        """
        now = time.perf_counter()
        if self._last_failed and self._last_arm == arm and self._last_end is not None:
            self._excluded += now - self._last_end  # retry back-off on the same arm
        self._attempts += 1
        if self._arm is None:
            self._arm = arm
        if not self._recording:
            return AttemptSpan(self, arm, INVALID_SPAN, now)
        info = self._tel.arm_info(arm)
        model = model or info.model
        provider = provider or info.provider
        attrs: dict[str, AttributeValue] = {
            "gen_ai.operation.name": info.operation,
            "bandit_router.arm": arm,
            "bandit_router.attempt": n,
        }
        if provider:
            attrs["gen_ai.provider.name"] = provider
        if model:
            attrs["gen_ai.request.model"] = model
        span = self._tel.tracer.start_span(
            f"{info.operation} {model or arm}",
            context=self._ctx,
            kind=SpanKind.CLIENT,
            attributes=attrs,
        )
        return AttemptSpan(self, arm, span, now)

    def fallback(self, from_arm: str, to_arm: str, exc: BaseException | None = None) -> None:
        """Record a fallback from ``from_arm`` (exhausted) to ``to_arm``.

        Adds a ``bandit_router.fallback`` event, moves ``bandit_router.arm`` to ``to_arm`` and
        counts a pull of it.

        Args:
            from_arm: The arm that failed.
            to_arm: The arm the call moves to.
            exc: The failed arm's last error (its type is recorded).
        """
        tel = self._tel
        self._fallbacks += 1
        self._arm = to_arm
        tel._pulls.add(1, tel._arm_attributes(self._name, to_arm))
        if not self._recording:
            return
        attrs: dict[str, AttributeValue] = {
            "bandit_router.fallback.from": from_arm,
            "bandit_router.fallback.to": to_arm,
        }
        if exc is not None:
            attrs["error.type"] = error_type(exc)
        self._span.add_event(_FALLBACK_EVENT, attrs)
        self._span.set_attribute("bandit_router.arm", to_arm)

    def reward(
        self, score: float, evaluator_name: str = "reward", *, elapsed_s: float | None = None
    ) -> None:
        """Record the inline reward of the call.

        While the route span is open: sets ``bandit_router.reward`` and adds a
        ``gen_ai.evaluation.result`` event (``gen_ai.evaluation.name``,
        ``gen_ai.evaluation.score.value``). Once it has ended (the evaluator runs after the
        answer is returned), the reward is a ``bandit_router.feedback`` span of its own,
        linked to the route span, as a delayed reward is. Either way the reward histogram is
        recorded for the arm.

        Args:
            score: The reward in [0, 1].
            evaluator_name: ``gen_ai.evaluation.name``: the evaluator's name.
            elapsed_s: Seconds the evaluator took (excluded from the router's overhead).
        """
        tel = self._tel
        score = float(score)
        if self._ended:
            self._feedback(evaluator_name, None, score)
            return
        self._settle(elapsed_s)
        if self._arm is not None:
            tel._rewards.record(score, tel._arm_attributes(self._name, self._arm))
        if not self._recording:
            return
        span = self._span
        span.set_attribute("bandit_router.reward", score)
        span.add_event(
            _EVALUATION_EVENT,
            {"gen_ai.evaluation.name": evaluator_name, "gen_ai.evaluation.score.value": score},
        )

    def evaluator_error(
        self,
        exc: BaseException,
        evaluator_name: str = "reward",
        *,
        elapsed_s: float | None = None,
    ) -> None:
        """Record that the inline evaluator failed (the call itself did not).

        Sets ``bandit_router.evaluator_error`` to the error type and adds a
        ``gen_ai.evaluation.result`` event with ``error.type`` and no score (on a linked
        ``bandit_router.feedback`` span once the route span has ended). The route span's
        status is left alone: the user's call succeeded.

        Args:
            exc: What the evaluator raised.
            evaluator_name: ``gen_ai.evaluation.name``.
            elapsed_s: Seconds the evaluator took (excluded from the router's overhead).
        """
        if self._ended:
            self._feedback(evaluator_name, exc, None)
            return
        self._settle(elapsed_s)
        if not self._recording:
            return
        etype = error_type(exc)
        self._span.set_attribute("bandit_router.evaluator_error", etype)
        self._span.add_event(
            _EVALUATION_EVENT, {"gen_ai.evaluation.name": evaluator_name, "error.type": etype}
        )

    def _feedback(
        self, evaluator_name: str, exc: BaseException | None, score: float | None
    ) -> None:
        """An inline evaluation that ended after the route span: a linked feedback span."""
        tel = self._tel
        if self._decision_id is None:
            return
        fb = tel.feedback(
            self._decision_id,
            self._name,
            link=self._span.get_span_context(),
            evaluation_name=evaluator_name,
        )
        if exc is not None:
            if fb._span.is_recording():
                etype = error_type(exc)
                fb._span.set_attribute("bandit_router.evaluator_error", etype)
                fb._span.add_event(
                    _EVALUATION_EVENT,
                    {"gen_ai.evaluation.name": evaluator_name, "error.type": etype},
                )
            tel.links.pop(self._decision_id)
            fb.end()
            return
        assert score is not None
        fb.settled(score, arm=self._arm, delay_s=max(time.time() - self._wall0, 0.0))
        fb.end()

    def cooldown(self, arm: str, seconds: float) -> None:
        """Record that ``arm`` was rate-limited and is skipped for ``seconds``.

        Adds a ``bandit_router.cooldown`` event (``bandit_router.arm``,
        ``bandit_router.cooldown_s``).
        """
        if not self._recording:
            return
        self._span.add_event(
            _COOLDOWN_EVENT,
            {"bandit_router.arm": arm, "bandit_router.cooldown_s": float(seconds)},
        )

    def _settle(self, elapsed_s: float | None) -> None:
        if elapsed_s is not None and elapsed_s > 0:
            self._excluded += elapsed_s
        if self._decision_id is not None and self._recording:
            self._tel.links.pop(self._decision_id)

    def degraded(self, reason: str, exc: BaseException | None = None) -> None:
        """Record that the router degraded (e.g. its store is down) but kept routing.

        Sets ``bandit_router.degraded`` to ``reason`` and adds a ``bandit_router.degraded``
        event (with ``error.type`` when ``exc`` is given). ``reason`` must be the router's own
        words, never user text.

        Args:
            reason: What degraded, e.g. ``"store unavailable: routing on cached statistics"``.
            exc: The error that caused it.
        """
        if not self._recording:
            return
        self._span.set_attribute("bandit_router.degraded", reason)
        attrs: dict[str, AttributeValue] = {"bandit_router.degraded.reason": reason}
        if exc is not None:
            attrs["error.type"] = error_type(exc)
        self._span.add_event(_DEGRADED_EVENT, attrs)

    def end(self, exc: BaseException | None = None, *, output: object = None) -> None:
        """End the call's span and record the router's overhead.

        Sets ``bandit_router.attempts`` and ``bandit_router.fallbacks``. On an error: status
        ERROR and ``error.type``. On ``GeneratorExit`` or cancellation (a consumer stopped
        early): ``bandit_router.cancelled=true`` and no error. Idempotent.

        Args:
            exc: What ended the call, or ``None`` on success.
            output: The router's output; recorded (truncated text) only with
                ``capture_content=True``.
        """
        if self._ended:
            return
        self._ended = True
        tel = self._tel
        overhead = time.perf_counter() - self._t0 - self._excluded
        tel._overhead.record(max(overhead, 0.0), tel._name_attributes(self._name))
        if not self._recording:
            return
        span = self._span
        if exc is not None and self._decision_id is not None:
            tel.links.pop(self._decision_id)  # failed or released: no feedback will count
        span.set_attributes(
            {"bandit_router.attempts": self._attempts, "bandit_router.fallbacks": self._fallbacks}
        )
        if exc is None:
            if tel.capture_content and output is not None:
                span.set_attribute("bandit_router.output", tel._content(output))
        elif _is_cancel(exc):
            span.set_attribute("bandit_router.cancelled", True)
        else:
            tel._record_error(span, exc)
        span.end()

    # -- called by AttemptSpan --

    def _attempt_done(self, arm: str, started: float, failed: bool) -> None:
        now = time.perf_counter()
        self._excluded += now - started
        self._last_arm = arm
        self._last_end = now
        self._last_failed = failed


class _NullRoute(RouteSpan):
    """The route of a disabled :class:`Telemetry`: every method does nothing."""

    __slots__ = ()

    def __init__(self) -> None:
        self._span = INVALID_SPAN
        self._recording = False
        self._ctx = None
        self._arm = None

    def decision(self, selection: Selection, decision_id: str, context: str | None = None) -> None:
        pass

    def attempt(
        self, arm: str, n: int, model: str | None = None, *, provider: str | None = None
    ) -> AttemptSpan:
        return _NULL_ATTEMPT

    def fallback(self, from_arm: str, to_arm: str, exc: BaseException | None = None) -> None:
        pass

    def reward(
        self, score: float, evaluator_name: str = "reward", *, elapsed_s: float | None = None
    ) -> None:
        pass

    def evaluator_error(
        self,
        exc: BaseException,
        evaluator_name: str = "reward",
        *,
        elapsed_s: float | None = None,
    ) -> None:
        pass

    def degraded(self, reason: str, exc: BaseException | None = None) -> None:
        pass

    def cooldown(self, arm: str, seconds: float) -> None:
        pass

    def end(self, exc: BaseException | None = None, *, output: object = None) -> None:
        pass


# --- the span of one attempt -------------------------------------------------------------


class AttemptSpan:
    """One attempt on one arm: a CLIENT span named by the GenAI conventions.

    Made by :meth:`RouteSpan.attempt`. For a stream, keep it open while the chunks flow:
    feed each chunk to :meth:`chunk` (token usage and the response model are read from them)
    and call :meth:`ok` when the stream ends, or :meth:`failed` with whatever stopped it.
    """

    __slots__ = (
        "_arm",
        "_done",
        "_in",
        "_model",
        "_out",
        "_recording",
        "_route",
        "_span",
        "_started",
        "_usage",
    )

    def __init__(self, route: RouteSpan, arm: str, span: trace.Span, started: float) -> None:
        self._route = route
        self._arm = arm
        self._span = span
        self._recording = span.is_recording()
        self._started = started
        self._done = False
        if self._recording:
            self._usage = False
            self._in = 0
            self._out = 0
            self._model: str | None = None

    @property
    def span_context(self) -> SpanContext:
        """The attempt span's context (invalid when not recording)."""
        return self._span.get_span_context()

    def activate(self) -> AbstractContextManager[None]:
        """Make this attempt's span (else the route's) current around ONE ``await``.

        Instrumented clients called inside (HTTP, a provider's GenAI instrumentation) then
        nest under the attempt. Never hold it across a ``yield``::

            with attempt.activate():
                out = await runnable.ainvoke(input, config)

        Returns:
            A context manager that attaches the context and detaches it on exit.
        """
        span = self._span
        if span.get_span_context().is_valid:
            return _attached(trace.set_span_in_context(span, self._route._ctx))
        ctx = self._route._ctx
        return _attached(ctx) if ctx is not None else _NOTHING_ATTACHED

    def chunk(self, chunk: object) -> None:
        """Read token usage and the response model from one streamed chunk (cheap)."""
        if self._recording:
            self._absorb(chunk)

    def _absorb(self, message: object) -> None:
        usage = getattr(message, "usage_metadata", None)
        if isinstance(usage, Mapping):
            self._usage = True
            self._in += _token_count(usage.get("input_tokens"))
            self._out += _token_count(usage.get("output_tokens"))
        meta = getattr(message, "response_metadata", None)
        if isinstance(meta, Mapping) and meta:
            model = meta.get("model_name") or meta.get("model")
            if isinstance(model, str) and model:
                self._model = model

    def ok(self, output: object = None) -> None:
        """End the attempt as successful.

        Sets ``gen_ai.response.model`` and ``gen_ai.usage.input_tokens``/``output_tokens``
        from the output's ``response_metadata`` and ``usage_metadata`` (or from the chunks
        given to :meth:`chunk`). Idempotent.

        Args:
            output: The arm's output (a non-streamed call); ``None`` for a stream.
        """
        if self._done:
            return
        self._done = True
        self._route._attempt_done(self._arm, self._started, failed=False)
        if not self._recording:
            return
        if output is not None:
            self._absorb(output)
        span = self._span
        attrs: dict[str, AttributeValue] = {}
        if self._model is not None:
            attrs["gen_ai.response.model"] = self._model
        if self._usage:
            attrs["gen_ai.usage.input_tokens"] = self._in
            attrs["gen_ai.usage.output_tokens"] = self._out
        if attrs:
            span.set_attributes(attrs)
        span.end()

    def failed(self, exc: BaseException) -> None:
        """End the attempt with ``exc``.

        An error: status ERROR, ``error.type``, and the failure counter for the arm and error
        type. ``GeneratorExit`` or cancellation (the consumer stopped, the caller was
        cancelled): ``bandit_router.cancelled=true``, no error, nothing counted. Idempotent.

        Args:
            exc: What ended the attempt.
        """
        if self._done:
            return
        self._done = True
        cancelled = _is_cancel(exc)
        route = self._route
        route._attempt_done(self._arm, self._started, failed=not cancelled)
        tel = route._tel
        if not cancelled:
            tel._failures.add(1, tel._failure_attributes(route._name, self._arm, error_type(exc)))
        if not self._recording:
            return
        span = self._span
        if cancelled:
            span.set_attribute("bandit_router.cancelled", True)
        else:
            tel._record_error(span, exc)
        span.end()


def _token_count(value: object) -> int:
    """A token count from ``usage_metadata``; 0 for anything that is not one.

    A malformed usage report (a provider integration's bug) must not fail the call whose
    answer it describes: this runs inside the attempt, where an exception is the arm's failure.
    """
    try:
        return int(cast(Any, value) or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


class _NullAttempt(AttemptSpan):
    """The attempt of a disabled :class:`Telemetry`: every method does nothing."""

    __slots__ = ()

    def __init__(self) -> None:
        self._span = INVALID_SPAN
        self._recording = False

    def activate(self) -> AbstractContextManager[None]:
        return _NOTHING_ATTACHED

    def chunk(self, chunk: object) -> None:
        pass

    def ok(self, output: object = None) -> None:
        pass

    def failed(self, exc: BaseException) -> None:
        pass


class _attached(AbstractContextManager[None]):  # noqa: N801 (used like a function)
    """Attach a context on entry, detach it on exit (in the same task: no yield between)."""

    __slots__ = ("_ctx", "_token")

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def __enter__(self) -> None:
        self._token = otel_context.attach(self._ctx)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self._token)


class _Nothing(AbstractContextManager[None]):
    """A reusable context manager that does nothing (cheaper than ``nullcontext()``)."""

    __slots__ = ()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


_NOTHING_ATTACHED: Final = _Nothing()


# --- delayed feedback --------------------------------------------------------------------


class FeedbackSpan:
    """The ``bandit_router.feedback`` span of one delayed reward, linked to its decision.

    Made by :meth:`Telemetry.feedback`; a context manager: an exception leaving the block is
    recorded as the span's error (and re-raised).
    """

    __slots__ = ("_decision_id", "_done", "_eval_name", "_link", "_name", "_span", "_tel")

    def __init__(
        self,
        telemetry: Telemetry,
        decision_id: str,
        router_name: str,
        link: SpanContext | None,
        evaluation_name: str,
    ) -> None:
        self._tel = telemetry
        self._decision_id = decision_id
        self._name = router_name
        self._eval_name = evaluation_name
        self._done = False
        if link is None:
            link = telemetry.links.get(decision_id)
        self._link = link
        links = [Link(link)] if link is not None and link.is_valid else None
        self._span = telemetry.tracer.start_span(
            _FEEDBACK_SPAN,
            kind=SpanKind.INTERNAL,
            attributes={
                "bandit_router.name": router_name,
                "bandit_router.decision_id": decision_id,
            },
            links=links,
        )

    @property
    def span_context(self) -> SpanContext:
        """The feedback span's context."""
        return self._span.get_span_context()

    @property
    def linked(self) -> SpanContext | None:
        """The route span this feedback links to, or ``None``."""
        return self._link if self._link is not None and self._link.is_valid else None

    def settled(
        self,
        score: float,
        *,
        arm: str | None = None,
        context: str | None = None,
        delay_s: float | None = None,
    ) -> None:
        """Record the accepted reward.

        Sets ``bandit_router.reward``, ``.arm``, ``.context`` and ``.feedback.delay_s``, adds a
        ``gen_ai.evaluation.result`` event and records the reward histogram for the arm.

        Args:
            score: The reward in [0, 1].
            arm: The arm the decision was on (``PendingDecision.arm``).
            context: The decision's context (``PendingDecision.context``).
            delay_s: Seconds since the decision; default: since its route span started, if this
                process made it.
        """
        tel = self._tel
        score = float(score)
        if delay_s is None:
            started = tel.links.started(self._decision_id)
            delay_s = None if started is None else max(time.time() - started, 0.0)
        tel.links.pop(self._decision_id)
        if arm is not None:
            tel._rewards.record(score, tel._arm_attributes(self._name, arm))
        span = self._span
        if not span.is_recording():
            return
        attrs: dict[str, AttributeValue] = {"bandit_router.reward": score}
        if arm is not None:
            attrs["bandit_router.arm"] = arm
        if context is not None:
            attrs["bandit_router.context"] = context
        if delay_s is not None and math.isfinite(delay_s):
            attrs["bandit_router.feedback.delay_s"] = float(delay_s)
        span.set_attributes(attrs)
        span.add_event(
            _EVALUATION_EVENT,
            {"gen_ai.evaluation.name": self._eval_name, "gen_ai.evaluation.score.value": score},
        )

    def end(self, exc: BaseException | None = None) -> None:
        """End the span; ``exc`` (if any) is recorded as its error. Idempotent."""
        if self._done:
            return
        self._done = True
        span = self._span
        if exc is not None and span.is_recording():
            if _is_cancel(exc):
                span.set_attribute("bandit_router.cancelled", True)
            else:
                self._tel._record_error(span, exc)
        span.end()

    def __enter__(self) -> FeedbackSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end(exc)


class _NullFeedback(FeedbackSpan):
    """The feedback span of a disabled :class:`Telemetry`."""

    __slots__ = ()

    def __init__(self) -> None:
        self._span = INVALID_SPAN
        self._link = None

    def settled(
        self,
        score: float,
        *,
        arm: str | None = None,
        context: str | None = None,
        delay_s: float | None = None,
    ) -> None:
        pass

    def end(self, exc: BaseException | None = None) -> None:
        pass


_NULL_ROUTE: Final = _NullRoute()
_NULL_ATTEMPT: Final = _NullAttempt()
_NULL_FEEDBACK: Final = _NullFeedback()


#: Where the OpenTelemetry API's own providers live: stand-ins (proxies until an SDK is set,
#: or the explicit no-op ones) whose spans and metrics do nothing.
_API_MODULES: Final = ("opentelemetry.trace", "opentelemetry.metrics")


def _inert() -> bool:
    """Whether no SDK stands behind either global provider (all spans and metrics are no-ops).

    Until ``set_tracer_provider`` / ``set_meter_provider`` is called (or an
    ``OTEL_PYTHON_*_PROVIDER`` variable names a provider), the API hands out its own proxies;
    an SDK's or a vendor's provider is a class from another package.
    """
    tracing = type(trace.get_tracer_provider())
    meters = type(metrics.get_meter_provider())
    answer = _INERT_BY_TYPES.get((tracing, meters))
    if answer is None:
        answer = tracing.__module__.startswith(_API_MODULES) and meters.__module__.startswith(
            _API_MODULES
        )
        _INERT_BY_TYPES[(tracing, meters)] = answer
    return answer


# The answer depends on the providers' classes only, which are few: remembered per pair.
_INERT_BY_TYPES: dict[tuple[type, type], bool] = {}
