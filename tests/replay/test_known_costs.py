"""Known costs in the engine: the index is the policy's quality index minus the arm's cost."""

from __future__ import annotations

import math

import pytest

from bandit_router import Bandit, ConfigurationError
from bandit_router._engine import Engine
from bandit_router._stats import BanditState
from bandit_router.policies import KLUCB, UCB1


def _state(engine: Engine, data: dict[str, list[float]]) -> BanditState:
    state = engine.new_state()
    for arm, rewards in data.items():
        i = state.index(arm)
        for r in rewards:
            state.apply(i, engine.reward_outcome(r), engine.decay)
    return state


def test_costs_are_subtracted_from_the_index() -> None:
    plain = Engine(["a", "b"], policy=UCB1(), seed=0)
    priced = Engine(["a", "b"], policy=UCB1(), seed=0, costs={"a": 0.5})
    data = {"a": [1.0] * 20, "b": [0.7] * 20}
    s1 = plain.select(_state(plain, data))
    s2 = priced.select(_state(priced, data))
    assert s1.arm == "a"
    assert s2.arm == "b"  # a's quality 1.0 less its cost 0.5 is below b's 0.7
    assert s2.indices[0] == pytest.approx(s1.indices[0] - 0.5)
    assert s2.indices[1] == s1.indices[1]
    assert s2.means == s1.means  # the means stay the quality learned
    assert not s2.explore  # b has the best mean net of cost


def test_costs_in_the_general_path_and_untried_arms() -> None:
    engine = Engine(["a", "b", "c"], policy=KLUCB(), seed=0, costs={"a": 0.9, "b": 0.0})
    state = _state(engine, {"a": [1.0] * 10, "b": [0.5] * 10})
    sel = engine.select(state)
    assert sel.arm == "c"  # untried arms first, whatever their cost
    state = _state(engine, {"a": [1.0] * 10, "b": [0.5] * 10, "c": [0.2] * 10})
    state.in_flight[2] = 1  # forces the general path
    sel = engine.select(state, exclude=["c"])
    assert sel.arm == "b"
    assert math.isnan(sel.indices[2])
    assert sel.indices[0] < 0.2  # 1.0 - 0.9 at most


@pytest.mark.parametrize(
    ("costs", "match"),
    [
        ({"z": 0.1}, "unknown arm 'z'"),
        ({"a": -0.1}, "must be a number >= 0"),
        ({"a": math.nan}, "must be a number >= 0"),
        ({"a": True}, "must be a number >= 0"),
        ([0.1, 0.2], "must be a mapping"),
    ],
)
def test_invalid_costs_are_refused(costs: object, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Engine(["a", "b"], costs=costs)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_bandit_passes_costs_to_its_engine() -> None:
    bandit = Bandit(["a", "b"], costs={"a": 0.25}, seed=1)
    assert bandit.engine.costs == (0.25, 0.0)
    assert Bandit(["a", "b"], costs={}).engine.costs is None


def test_router_routes_on_quality_less_known_cost() -> None:
    from bandit_router import BanditRouterRunnable
    from bandit_router.testing import FakeArm, is_right

    router = BanditRouterRunnable(
        arms={"dear": FakeArm(quality=0.95, seed=1), "cheap": FakeArm(quality=0.8, seed=2)},
        reward=is_right,
        costs={"dear": 0.5},  # quality 0.95 less 0.5 is worth less than 0.8 for free
        seed=3,
        telemetry=False,
    )
    for _ in range(200):
        router.invoke("2 + 2?")
    stats = router.statistics()
    assert stats["cheap"].pulls > 150
    assert stats["dear"].mean is not None
    assert stats["dear"].mean > 0.6  # the statistics are quality, not quality less cost
    # Raised in the pydantic model's validation: a ValueError naming the bad value.
    with pytest.raises(ValueError, match="cost for unknown arm 'other'"):
        BanditRouterRunnable(arms={"a": FakeArm()}, costs={"other": 0.1})
