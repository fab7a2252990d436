"""Test helpers: a real ``langsmith.Client`` that records its requests instead of sending them.

:class:`RecordingClient` subclasses ``langsmith.Client`` and replaces only its HTTP layer
(``request_with_retries``), so everything above it (argument checks, the feedback payload
LangSmith builds, project look-ups) is LangSmith's own code, and nothing leaves the process.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import langsmith
import requests
from langsmith import schemas
from langsmith import utils as ls_utils

__all__ = ["RecordedRequest", "RecordingClient"]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the client would have sent.

    Attributes:
        method: The HTTP method.
        path: The path under the API URL, e.g. ``/feedback``.
        params: The query parameters.
        body: The JSON body, decoded (``None`` without one).
    """

    method: str
    path: str
    params: dict[str, Any]
    body: Any


class RecordingClient(langsmith.Client):
    """A ``langsmith.Client`` whose requests are recorded and answered locally.

    Feedback posts are answered with success (or, for the next ``fail_next`` of them, with
    HTTP 500); project look-ups by name are answered from ``projects``.

    Args:
        projects: ``{name: project id}`` the fake LangSmith knows.
        **kwargs: More ``langsmith.Client`` arguments (the API URL and key default to
            placeholders never contacted).

    Attributes:
        requests: Every request, in order.
        feedback: The bodies of the feedback posts that succeeded, in order.
        fail_next: How many of the next feedback posts fail with HTTP 500.
    """

    def __init__(
        self, *, projects: Mapping[str, uuid.UUID | str] | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("api_url", "http://127.0.0.1:9")  # discard port; never contacted
        kwargs.setdefault("api_key", "lsv2-recording-client")
        kwargs.setdefault("auto_batch_tracing", False)
        kwargs.setdefault("info", schemas.LangSmithInfo())  # no GET /info
        super().__init__(**kwargs)
        self.requests: list[RecordedRequest] = []
        self.projects = {name: uuid.UUID(str(pid)) for name, pid in (projects or {}).items()}
        self.feedback: list[dict[str, Any]] = []
        self.fail_next = 0
        self._recording_lock = threading.Lock()

    def request_with_retries(
        self,
        /,
        method: str,
        pathname: str,
        *,
        request_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Record the request and answer it locally (the only method that would do I/O)."""
        rk = dict(request_kwargs or {})
        params = dict(kwargs.get("params") or rk.get("params") or {})
        data = kwargs.get("data", rk.get("data"))
        body = json.loads(data) if isinstance(data, str | bytes) and data else None
        with self._recording_lock:
            self.requests.append(RecordedRequest(method, pathname, params, body))
            if method == "POST" and pathname == "/feedback":
                if self.fail_next > 0:
                    self.fail_next -= 1
                    raise ls_utils.LangSmithAPIError("POST /feedback: 500 (recording client)")
                self.feedback.append(dict(body or {}))
        if method == "GET" and pathname == "/sessions":
            name = params.get("name")
            pid = self.projects.get(str(name))
            found = [] if pid is None else [_project(str(name), pid)]
            return _response(200, found)
        if method == "POST" and pathname == "/feedback":
            return _response(200, {})
        return _response(404, {"detail": f"{method} {pathname}: not faked"})


def _project(name: str, pid: uuid.UUID) -> dict[str, Any]:
    return {
        "id": str(pid),
        "name": name,
        "tenant_id": str(uuid.uuid5(pid, "tenant")),
        "reference_dataset_id": None,
        "start_time": "2026-01-01T00:00:00Z",
    }


def _response(status: int, payload: Any) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(payload).encode()
    resp.headers["Content-Type"] = "application/json"
    resp.url = "http://127.0.0.1:9/"
    return resp
