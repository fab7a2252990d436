"""LangSmithFeedback: rewards forwarded to LangSmith, through a real langsmith.Client whose
HTTP layer records instead of sending (no network here)."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import pytest

pytest.importorskip("bandit_router_langsmith")

import langsmith
from bandit_router_langsmith import FeedbackTarget, LangSmithFeedback
from bandit_router_langsmith.testing import RecordingClient

from bandit_router import (
    BanditRouterRunnable,
    ConfigurationError,
    InvalidRewardError,
    UnknownDecisionError,
)
from bandit_router.testing import FakeArm

PROJECT = uuid.UUID("0b5e6a2c-1f7d-4c1e-9a51-4f1f5f8f6a01")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client() -> RecordingClient:
    return RecordingClient(projects={"default": PROJECT, "support-bot": PROJECT})


def router() -> BanditRouterRunnable:
    return BanditRouterRunnable(arms={"a": FakeArm(seed=1), "b": FakeArm(seed=2)}, seed=1)


def test_recording_client_is_a_real_langsmith_client(client: RecordingClient) -> None:
    assert isinstance(client, langsmith.Client)
    run_id = uuid.uuid4()
    client.create_feedback(run_id, "direct", score=0.5, session_id=PROJECT)
    assert client.feedback[0]["run_id"] == str(run_id)
    assert client.feedback[0]["score"] == 0.5
    assert client.feedback[0]["session_id"] == str(PROJECT)


@pytest.mark.anyio
async def test_delayed_reward_is_recorded_then_forwarded(client: RecordingClient) -> None:
    r = router()
    assert isinstance(r, FeedbackTarget)
    run_id = uuid.uuid4()
    await r.ainvoke("q", config={"run_id": run_id})
    fb = LangSmithFeedback(client, project_name="support-bot")
    await fb.arecord(r, run_id, 0.75, key="thumbs", comment="helpful")
    assert await fb.aflush(10)
    stats = await r.astatistics()
    assert sum(s.pulls for s in stats.values()) == 1
    assert sum(s.reward_sum for s in stats.values()) == 0.75
    (sent,) = client.feedback
    assert sent["run_id"] == str(run_id)
    assert sent["key"] == "thumbs"
    assert sent["score"] == 0.75
    assert sent["comment"] == "helpful"
    assert sent["session_id"] == str(PROJECT)  # resolved from the project's name
    assert sent["feedback_source"]["type"] == "api"
    # The project is looked up once, not per record.
    run_2 = uuid.uuid4()
    await r.ainvoke("q", config={"run_id": run_2})
    await fb.arecord(r, run_2, True)
    await fb.aflush(10)
    assert [q.path for q in client.requests].count("/sessions") == 1
    assert client.feedback[-1]["key"] == "user_feedback"
    assert client.feedback[-1]["score"] == 1.0
    fb.close()


def test_sync_record(client: RecordingClient) -> None:
    r = router()
    run_id = uuid.uuid4()
    r.invoke("q", config={"run_id": run_id})
    with LangSmithFeedback(client, project_id=PROJECT) as fb:
        fb.record(r, run_id, {"score": 1.0}, key="accepted")
    assert client.feedback[0]["key"] == "accepted"
    assert [q.path for q in client.requests] == ["/feedback"]  # project id given: no look-up


@pytest.mark.anyio
async def test_rejected_rewards_are_not_forwarded(client: RecordingClient) -> None:
    r = router()
    run_id = uuid.uuid4()
    await r.ainvoke("q", config={"run_id": run_id})
    fb = LangSmithFeedback(client, project_id=PROJECT)
    with pytest.raises(InvalidRewardError):
        await fb.arecord(r, run_id, 1.5)
    with pytest.raises(UnknownDecisionError):
        await fb.arecord(r, uuid.uuid4(), 1.0)
    await fb.arecord(r, run_id, 0.0)
    with pytest.raises(UnknownDecisionError):  # already scored
        await fb.arecord(r, run_id, 1.0)
    await fb.aflush(10)
    assert [f["score"] for f in client.feedback] == [0.0]
    fb.close()


def test_failures_are_counted_and_logged_not_raised(
    client: RecordingClient, caplog: pytest.LogCaptureFixture
) -> None:
    client.fail_next = 1
    fb = LangSmithFeedback(client, project_id=PROJECT, stop_after_attempt=1)
    with caplog.at_level(logging.WARNING, logger="bandit_router_langsmith"):
        fb.send(uuid.uuid4(), "k", score=1.0)
        fb.send(uuid.uuid4(), "k", score=0.0)
        assert fb.flush(10)
    assert (fb.sent, fb.failed) == (1, 1)
    assert "LangSmith feedback 'k'" in caplog.text
    assert "LangSmithAPIError" in caplog.text
    assert len(client.feedback) == 1
    fb.close()


@pytest.mark.filterwarnings("ignore::langsmith.utils.LangSmithWarning")
def test_unknown_project_is_logged_and_feedback_still_sent(
    client: RecordingClient, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="bandit_router_langsmith"),
        LangSmithFeedback(client, project_name="nowhere") as fb,
    ):
        fb.send(uuid.uuid4(), "k", score=1.0)
    assert "LangSmith project 'nowhere' not found" in caplog.text
    assert fb.sent == 1
    assert "session_id" not in client.feedback[0]


def test_bounded_queue_drops_and_counts() -> None:
    gate = threading.Event()

    class Slow(RecordingClient):
        def request_with_retries(self, /, method: str, pathname: str, **kw: Any) -> Any:
            gate.wait(10)
            return super().request_with_retries(method, pathname, **kw)

    slow = Slow()
    fb = LangSmithFeedback(slow, project_id=PROJECT, max_pending=2)
    for _ in range(5):
        fb.send(uuid.uuid4(), "k", score=1.0)
    assert fb.dropped == 3
    gate.set()
    assert fb.flush(10)
    assert fb.sent == 2
    fb.close()
    with pytest.raises(ConfigurationError, match="closed"):
        fb.send(uuid.uuid4(), "k", score=1.0)


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"langsmith\.Client"):
        LangSmithFeedback(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_pending"):
        LangSmithFeedback(max_pending=0)
    fb = LangSmithFeedback(RecordingClient())
    with pytest.raises(ConfigurationError, match="key"):
        fb.send(uuid.uuid4(), "")
    assert fb.flush() is True  # nothing queued
    fb.close()
    assert "sent=0" in repr(fb)
