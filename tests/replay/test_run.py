"""Replays: the router and the engine agree, baselines are exact, the policy learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from langchain_core.messages import AIMessage

from bandit_router import Prior
from bandit_router.policies import UCB1
from bandit_router.replay import (
    DatasetError,
    OutcomeTable,
    ReplayArm,
    known_costs,
    learned_values,
    load_dataset,
    load_priors,
    make_orders,
    make_policy,
    replay,
    replay_arms,
    save_priors,
)

from ._tables import bernoulli, tiny


def test_replay_arm_answers_with_the_logged_outcome() -> None:
    t = tiny()
    arms = replay_arms(t)
    msg = arms["dear"].invoke("q3")
    assert isinstance(msg, AIMessage)
    assert msg.content == "0"
    assert msg.response_metadata["score"] == 0.0
    assert msg.response_metadata["cost"] == 0.020
    assert msg.response_metadata["row"] == 2
    assert msg.response_metadata["model_name"] == "dear"
    with pytest.raises(ValueError, match="unknown prompt id 'q9'"):
        arms["dear"].invoke("q9")
    with pytest.raises(ValueError, match="no model 'other'"):
        ReplayArm(table=t, model="other")


def test_orders_are_numpys_permutations() -> None:
    t = bernoulli(50)
    shuffled = make_orders(t, [3], "shuffled")[0]
    assert shuffled == np.random.default_rng(3).permutation(50).tolist()
    blocked = make_orders(t, [3], "blocked")[0]
    assert [t.tasks[r] for r in blocked] == ["b"] * 25 + ["a"] * 25  # "b" appears first
    assert sorted(blocked) == list(range(50))
    assert make_orders(t, [0, 1], "table", limit=5) == [[0, 1, 2, 3, 4]] * 2
    with pytest.raises(ValueError, match="order must be"):
        make_orders(t, [0], "sorted")  # type: ignore[arg-type]


def test_baselines_by_hand() -> None:
    t = tiny()
    report = replay(t, ["klucb"], lam=0.0, seeds=1, order="table")
    lines = {line.label.split(":")[0]: line for line in report.lines()}
    # lam = 0: rewards are the scores. dear: 3/4, cheap: 2/4; the oracle gets 4/4.
    best = lines["best fixed arm"]
    assert report.table.models[report.best_fixed()] == "dear"
    assert best.mean_reward == 0.75
    assert best.pct_best == 100.0
    assert best.regret == 0.0
    assert best.total_cost == pytest.approx(0.05)
    assert best.cost_vs_top == pytest.approx(100.0)  # dear is also the top-quality model
    assert lines["uniform random (expected)"].mean_reward == pytest.approx(0.625)
    rr = lines["round-robin"]  # cheap, dear, cheap, dear: 1 + 1 + 1 + 1
    assert rr.mean_reward == 1.0
    assert rr.regret == pytest.approx(-1.0)
    oracle = lines["oracle (best arm per prompt)"]
    assert oracle.mean_reward == 1.0
    assert oracle.pct_oracle == 100.0
    assert oracle.total_cost == pytest.approx(0.001 + 0.010 + 0.002 + 0.010)  # cheap on ties
    assert "always" not in lines  # the top-quality model is the best fixed arm


def test_cost_aware_baselines() -> None:
    t = tiny()
    report = replay(t, ["ucb1"], lam=1.0, seeds=1, order="table")
    r = t.rewards(1.0)
    # cost_scale = dear's mean cost 0.0125; cheap costs 0.08-0.16 of it.
    assert r[0][1] == pytest.approx((1 - 0.8 + 1) / 2)
    assert r[2][1] == pytest.approx((0 - 1.6 + 1) / 2)  # below 0: reported as it is
    assert report.table.models[report.best_fixed()] == "cheap"  # mean 0.7 against 0.375
    lines = report.lines()
    assert [line.label for line in lines[:3]] == [
        "ucb1",
        "best fixed arm: cheap",
        "always dear (top quality)",
    ]
    assert lines[1].mean_reward == pytest.approx(0.7)
    assert lines[2].mean_reward == pytest.approx(0.375)
    assert lines[1].cost_vs_top == pytest.approx(100 * 0.005 / 0.05)


def test_router_and_engine_make_the_same_choices() -> None:
    t = bernoulli(300)
    kw = {"lam": 1.0, "seeds": [4, 5], "context": True, "context_prior_weight": 5.0}
    via_router = replay(t, ["klucb", "thompson"], path="router", **kw)  # type: ignore[arg-type]
    via_engine = replay(t, ["klucb", "thompson"], path="engine", **kw)  # type: ignore[arg-type]
    assert [r.choices for r in via_router.runs] == [r.choices for r in via_engine.runs]
    assert via_router.runs[0].label == "kl-ucb +context"
    assert via_router.lines() == via_engine.lines()


def test_the_policy_learns_and_the_figures_agree() -> None:
    t = bernoulli(600)
    report = replay(t, ["klucb"], lam=0.0, seeds=3, path="engine")
    line = report.lines()[0]
    assert line.pct_best > 90.0
    curve = report.regret_curve()
    assert len(curve) == 600
    assert curve[-1] == pytest.approx(line.regret)
    ratio = report.ratio_curve()
    assert ratio[-1] == pytest.approx(line.pct_best / 100, rel=1e-3)
    share = report.allocation(bins=10)
    assert len(share) == 10
    assert all(sum(row) == pytest.approx(1.0) for row in share)
    assert share[-1][0] > 0.8  # "big" (0.9) wins in the end


def test_known_costs() -> None:
    t = bernoulli(10)
    costs = known_costs(t, 2.0)
    assert costs == {"big": 2.0, "mid": pytest.approx(0.4), "small": pytest.approx(0.2)}
    assert learned_values(t, 2.0, prices=True) == [list(row) for row in t.scores]
    clipped = learned_values(tiny(), 5.0, prices=False)
    assert min(min(row) for row in clipped) >= 0.0  # reward below 0 clipped for learning
    assert min(min(row) for row in tiny().rewards(5.0)) < 0.0


@pytest.mark.parametrize("path", ["engine", "router"])
def test_prices_let_the_router_learn_quality_only(path: str) -> None:
    t = bernoulli(600)
    # lam = 1: big nets 0.9 - 1 = -0.1, mid 0.7 - 0.2 = 0.5, small 0.5 - 0.1 = 0.4.
    report = replay(t, ["klucb"], lam=1.0, seeds=2, prices=True, path=path)  # type: ignore[arg-type]
    assert report.runs[0].label == "kl-ucb +prices"
    assert t.models[report.best_fixed()] == "mid"
    assert report.lines()[0].pct_best > 95.0
    priors = report.priors()
    assert priors["mid"].mean == pytest.approx(0.7, abs=0.05)  # quality, not reward


def test_reduced_routerbench_replay_reaches_the_goal() -> None:
    """The real data, a few seeds through the engine: the default policy is near the best."""
    table = load_dataset("routerbench")
    report = replay(table, ["klucb"], lam=0.0, seeds=3, path="engine")
    line = report.lines()[0]
    assert line.pct_best >= 98.0  # 98.5 over 10 seeds
    assert line.pct_oracle > 85.0


def test_priors_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "priors.json"
    save_priors(path, {"a": Prior(0.5, 10.0)}, learned="quality", dataset="x")
    assert load_priors(path) == ({"a": Prior(0.5, 10.0)}, "quality")
    path.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="no 'arms' object"):
        load_priors(path)
    path.write_text('{"arms": {"a": {"mean": 2, "weight": 1}}}')
    with pytest.raises(DatasetError, match="bad prior for arm 'a'"):
        load_priors(path)
    path.write_text("{")
    with pytest.raises(DatasetError, match="is not a priors JSON file"):
        load_priors(path)
    with pytest.raises(DatasetError, match="no such file"):
        load_priors(tmp_path / "none.json")


def test_warm_start_uses_the_priors() -> None:
    t = bernoulli(200)
    first = replay(t, ["klucb"], seeds=2, path="engine")
    priors = first.priors(max_weight=50)
    assert max(p.weight for p in priors.values()) == 50
    warm = replay(t, ["klucb"], seeds=2, priors=priors, path="engine")
    assert warm.runs[0].label == "kl-ucb +priors"
    assert warm.lines()[0].regret < first.lines()[0].regret


def test_invalid_arguments() -> None:
    t = tiny()
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        make_policy("nope")
    with pytest.raises(ValueError, match="lam must be"):
        replay(t, lam=-1.0, order="table")
    with pytest.raises(ValueError, match="path must be"):
        replay(t, path="fast", order="table")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one seed"):
        replay(t, seeds=0, order="table")
    with pytest.raises(ValueError, match="limit must be"):
        replay(t, limit=0, order="table")
    assert replay(t, [UCB1(c=0.5)], seeds=1, order="table").runs[0].label == "ucb1"


@pytest.mark.anyio
async def test_replay_from_async_code() -> None:
    report = replay(tiny(), seeds=1, order="table")  # runs on the background loop
    assert len(report.runs[0].choices[0]) == 4


def test_outcome_table_is_usable_directly() -> None:
    t = OutcomeTable("one", ("m",), ("p",), ("",), ((0.5,),), ((0.0,),))
    assert replay(t, seeds=1, order="table").lines()[0].mean_reward == 0.5
