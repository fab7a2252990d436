"""What an arm's exception means: worth a retry, a rate limit, and for how long to back off.

Pure functions over exceptions, shared by the routing core and the users who write their own
``retry_if``. Providers' SDKs are not imported: errors are recognised by their HTTP status
(``status_code``, or ``response.status_code`` as httpx-based clients carry it) and, failing
that, by their class name (``RateLimitError``, ``APITimeoutError``, ``OverloadedError``).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from typing import Final

__all__ = ["is_rate_limit", "is_transient", "retry_after"]

#: HTTP statuses worth retrying: timeouts, conflicts, rate limits and server errors.
_TRANSIENT_STATUS: Final = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
_TRANSIENT_NAMES: Final = (
    "ratelimit",
    "timeout",
    "connection",
    "unavailable",
    "overloaded",
    "internalserver",
)
#: Longest Retry-After honoured, in seconds: a server asking for more is treated as asking
#: for this (a day-long cooldown from one bad header would silence an arm for good).
MAX_RETRY_AFTER: Final = 3600.0


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) and not isinstance(status, bool) else None


def is_rate_limit(exc: BaseException) -> bool:
    """Return whether ``exc`` says the arm is over its rate limit (HTTP 429, ``RateLimit...``).

    A rate limit is a statement about the arm's capacity, not about the quality of its
    answers: the router puts the arm on a cooldown and, by default, learns nothing from it.
    """
    status = _status(exc)
    if status is not None:
        return status == 429
    return "ratelimit" in type(exc).__name__.lower()


def is_transient(exc: BaseException) -> bool:
    """Return whether ``exc`` looks transient (worth retrying on the same arm).

    Timeouts, connection errors, and provider errors whose HTTP status or class name says
    rate limit, overload or server error (OpenAI's ``RateLimitError`` and
    ``InternalServerError``, Anthropic's ``OverloadedError``, status 429/5xx ...) are
    transient. Everything else (bad requests, authentication, validation errors) is not: the
    router falls back to another arm at once.
    """
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    status = _status(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS
    name = type(exc).__name__.lower()
    return any(part in name for part in _TRANSIENT_NAMES)


def retry_after(exc: BaseException, *, now: float | None = None) -> float | None:
    """Return the seconds the server asked to wait before the next request, or ``None``.

    Reads the ``Retry-After`` header of the error's HTTP response (seconds or an HTTP date,
    RFC 9110 section 10.2.3) and OpenAI's ``retry-after-ms``; a ``retry_after`` attribute of the
    exception itself is honoured too. Values are clamped to [0, :data:`MAX_RETRY_AFTER`].

    Args:
        exc: The arm's exception.
        now: The current wall-clock time (seconds since the epoch), for HTTP dates.
    """
    value = getattr(exc, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _clamp(float(value))
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        headers = getattr(exc, "headers", None)
    if headers is None or (not isinstance(headers, Mapping) and not hasattr(headers, "get")):
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return _clamp(float(ms) / 1000.0)
        raw = headers.get("retry-after")
    except (TypeError, ValueError, AttributeError):
        return None
    if raw is None:
        return None
    text = str(raw).strip()
    try:
        return _clamp(float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return _clamp(when.timestamp() - (time.time() if now is None else now))


def _clamp(seconds: float) -> float | None:
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
