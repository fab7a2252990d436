"""Metrics: pulls, failures, rewards per arm, and the router's own overhead."""

from __future__ import annotations

import time

from bandit_router._engine import Selection
from bandit_router.telemetry import Telemetry

from ._otel import Otel, attrs


def sel(arm: str) -> Selection:
    return Selection(arm, ("a", "b"), (0.5, 0.4), (0.5, 0.4), (1, 1), (0, 0), False, "UCB1")


def arm_key(arm: str, name: str = "r") -> frozenset[tuple[str, object]]:
    return attrs(bandit_router__name=name, bandit_router__arm=arm)


def test_pulls_failures_and_rewards_per_arm(otel: Otel) -> None:
    tel = otel.telemetry()
    # call 1: "a" fails twice (a retry, then exhausted), falls back to "b", reward 1
    route = tel.start_route("r")
    route.decision(sel("a"), "1")
    route.attempt("a", 1).failed(ConnectionError())
    route.attempt("a", 2).failed(TimeoutError())
    route.fallback("a", "b", TimeoutError())
    route.attempt("b", 1).ok()
    route.reward(1.0)
    route.end()
    # call 2: "a", reward 0.25; call 3: "a", reward 0.5; call 4 on another router: "a"
    for score in (0.25, 0.5):
        route = tel.start_route("r")
        route.decision(sel("a"), "x")
        route.attempt("a", 1).ok()
        route.reward(score)
        route.end()
    other = tel.start_route("other")
    other.decision(sel("a"), "y")
    other.attempt("a", 1).failed(ConnectionError())
    other.end(ConnectionError())

    assert otel.counts("bandit_router.pulls") == {
        arm_key("a"): 3,
        arm_key("b"): 1,
        arm_key("a", "other"): 1,
    }
    assert otel.counts("bandit_router.failures") == {
        attrs(bandit_router__name="r", bandit_router__arm="a", error__type="ConnectionError"): 1,
        attrs(bandit_router__name="r", bandit_router__arm="a", error__type="TimeoutError"): 1,
        attrs(
            bandit_router__name="other", bandit_router__arm="a", error__type="ConnectionError"
        ): 1,
    }
    rewards = otel.histograms("bandit_router.reward")
    assert set(rewards) == {arm_key("a"), arm_key("b")}  # rewarded arms only
    assert (rewards[arm_key("a")].count, rewards[arm_key("a")].sum) == (2, 0.75)
    assert (rewards[arm_key("b")].count, rewards[arm_key("b")].sum) == (1, 1.0)
    assert rewards[arm_key("a")].min == 0.25
    assert rewards[arm_key("a")].max == 0.5
    # Advisory buckets: tenths of [0, 1].
    assert tuple(rewards[arm_key("a")].explicit_bounds) == (
        0.0,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
        1.0,
    )
    overhead = otel.histograms("bandit_router.overhead.duration")
    assert overhead[attrs(bandit_router__name="r")].count == 3
    assert overhead[attrs(bandit_router__name="other")].count == 1
    assert min(overhead[attrs(bandit_router__name="r")].explicit_bounds) <= 1e-5


def test_instruments_are_named_with_units_and_descriptions(otel: Otel) -> None:
    tel = otel.telemetry()
    route = tel.start_route("r")
    route.decision(sel("a"), "1")
    route.attempt("a", 1).failed(ValueError())
    route.reward(0.5)
    route.end()
    expected = {
        "bandit_router.pulls": "{pull}",
        "bandit_router.failures": "{failure}",
        "bandit_router.reward": "1",
        "bandit_router.overhead.duration": "s",
    }
    for name, unit in expected.items():
        metric = otel.metric(name)
        assert metric is not None, name
        assert metric.unit == unit
        assert metric.description
    data = otel.reader.get_metrics_data()
    assert data is not None
    scopes = {sm.scope.name for rm in data.resource_metrics for sm in rm.scope_metrics}
    assert scopes == {"bandit_router"}


def test_overhead_excludes_arms_backoff_and_evaluator_but_not_the_router(otel: Otel) -> None:
    tel = otel.telemetry()
    route = tel.start_route("r")
    time.sleep(0.05)  # the router's own work: counted
    route.decision(sel("a"), "1")
    attempt = route.attempt("a", 1)
    time.sleep(0.2)  # inside the arm
    attempt.failed(ConnectionError())
    time.sleep(0.2)  # retry back-off on the same arm
    attempt = route.attempt("a", 2)
    time.sleep(0.2)
    attempt.ok()
    t = time.perf_counter()
    time.sleep(0.2)  # the inline evaluator
    route.reward(1.0, elapsed_s=time.perf_counter() - t)
    route.end()
    point = otel.histograms("bandit_router.overhead.duration")[attrs(bandit_router__name="r")]
    assert point.count == 1
    assert 0.05 <= point.sum < 0.4, point.sum  # of a wall time above 0.85 s


def test_a_gap_before_a_fallback_counts_as_the_routers_time(otel: Otel) -> None:
    tel = otel.telemetry()
    route = tel.start_route("r")
    route.decision(sel("a"), "1")
    route.attempt("a", 1).failed(ValueError())
    time.sleep(0.1)  # rerouting (store work) is the router's, not a back-off
    route.fallback("a", "b")
    route.attempt("b", 1).ok()
    route.end()
    point = otel.histograms("bandit_router.overhead.duration")[attrs(bandit_router__name="r")]
    assert point.sum >= 0.1


def test_feedback_rewards_land_in_the_same_histogram(otel: Otel) -> None:
    tel = otel.telemetry()
    with tel.feedback("d1", "r") as fb:
        fb.settled(True, arm="b")
    with tel.feedback("d2", "r") as fb:
        fb.settled(0.0)  # arm unknown: no metric point can be attributed
    point = otel.histograms("bandit_router.reward")[arm_key("b")]
    assert (point.count, point.sum) == (1, 1.0)
    assert len(otel.histograms("bandit_router.reward")) == 1


def test_disabled_telemetry_records_no_metrics(otel: Otel) -> None:
    tel = otel.telemetry(enabled=False)
    assert isinstance(tel, Telemetry)
    route = tel.start_route("r")
    route.decision(sel("a"), "1")
    route.attempt("a", 1).failed(ValueError())
    route.reward(1.0)
    route.end()
    data = otel.reader.get_metrics_data()
    assert data is None or all(
        not sm.metrics for rm in data.resource_metrics for sm in rm.scope_metrics
    )
    assert otel.spans() == []
