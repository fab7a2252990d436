"""Bad input, fuzzed with hypothesis: rewards, feedback ids, constructor arguments and the
bytes of a SQLite state file.

Every rejected input raises a ``ValueError`` (or, for a state file, a ``StoreError``) that
names the problem, and leaves the state exactly as it was; every accepted input leaves a
valid state. Never a crash of another kind, never silent corruption.
"""

from __future__ import annotations

import math
import numbers
import os
import random
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandit_router import (
    Bandit,
    BanditRouterRunnable,
    DecisionError,
    InvalidRewardError,
    Prior,
    StoreError,
    UnknownDecisionError,
)
from bandit_router._engine import Rules
from bandit_router._stats import BanditState, Outcome
from bandit_router.core._loops import run_on_portal as run_sync
from bandit_router.stores import SQLiteStore, StateStore
from bandit_router.testing import FakeArm

from ._support import STORE_KINDS, Stores

ARMS = ("a", "b")


@pytest.fixture(params=STORE_KINDS)
def sync_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Stores of one kind for sync tests (hypothesis drives the router's sync faces)."""
    made = Stores(request.param, tmp_path)
    try:
        yield made
    finally:
        run_sync(made.close())


def router_on(store: StateStore) -> BanditRouterRunnable:
    return BanditRouterRunnable(
        arms={"a": FakeArm(seed=1, model="a"), "b": FakeArm(seed=2, model="b")},
        store=store,
        name=f"fuzz-{uuid.uuid4().hex[:8]}",
    )


def snapshot(router: BanditRouterRunnable) -> dict[str, Any]:
    return dict(router.statistics())


def new_decision(router: BanditRouterRunnable) -> str:
    out = router.invoke("q")
    did: str = out.response_metadata["bandit_router"]["decision_id"]
    return did


# --- rewards ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """An evaluation result with a ``.score`` (LangSmith's ``EvaluationResult`` shape)."""

    score: Any


SCALARS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=1.0),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-1, max_value=2),
    st.booleans(),
    st.fractions(min_value=-2, max_value=2, max_denominator=10**6),
    st.builds(Fraction, st.integers(min_value=10**309, max_value=10**400), st.integers(1, 9)),
    st.decimals(allow_nan=True),
    st.complex_numbers(max_magnitude=2),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.none(),
    st.sampled_from(
        [np.float64(0.25), np.float32(1.5), np.int64(1), np.bool_(True), np.float64("nan")]
    ),
)
REWARDS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2),
        st.dictionaries(st.sampled_from(["score", "value", "Score"]), inner, max_size=2),
        st.builds(Scored, inner),
    ),
    max_leaves=4,
)


def expected_reward(value: object, depth: int = 0) -> float | None:
    """The reward the docs say ``value`` stands for, or None if it must be refused.

    An independent reading of docs/router.md: a bool, a real number in [0, 1], a mapping with a
    ``"score"`` key or an object with ``.score`` (unwrapped a few levels); nothing else.
    """
    if depth > 4:
        return None
    if isinstance(value, Mapping):
        return expected_reward(value["score"], depth + 1) if "score" in value else None
    if isinstance(value, bool | np.bool_):
        return 1.0 if value else 0.0
    if isinstance(value, numbers.Real):
        try:
            x = float(value)
        except OverflowError:
            return None
        return x if math.isfinite(x) and 0.0 <= x <= 1.0 else None
    if isinstance(value, Scored):
        return expected_reward(value.score, depth + 1)
    return None


def test_rewards_are_accepted_or_refused_as_documented(sync_stores: Stores) -> None:
    router = router_on(sync_stores.new())
    outcomes: Counter[str] = Counter()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(value=REWARDS)
    def check(value: object) -> None:
        did = new_decision(router)
        before = snapshot(router)
        want = expected_reward(value)
        if want is None:
            with pytest.raises(InvalidRewardError) as info:
                router.record_feedback(did, value)
            assert isinstance(info.value, ValueError)
            assert "score" in str(info.value)  # names what was wrong: the score it was given
            assert snapshot(router) == before  # refused: nothing changed ...
            router.record_feedback(did, 1.0)  # ... and the decision still takes its reward
            outcomes["refused"] += 1
        else:
            router.record_feedback(did, value)
            after = snapshot(router)
            arm = next(a for a in ARMS if after[a].pulls == before[a].pulls + 1)
            assert after[arm].reward_sum == pytest.approx(before[arm].reward_sum + want)
            outcomes["accepted"] += 1
        stats = snapshot(router)
        assert sum(s.in_flight for s in stats.values()) == 0

    check()
    print(f"\nREWARDS {sync_stores.kind}: {dict(outcomes)}")


def test_a_huge_fraction_is_an_invalid_reward() -> None:
    """Regression: coerce_score called float() on a Fraction beyond any float and raised
    OverflowError instead of InvalidRewardError."""
    router = router_on(Stores("memory", Path(".")).new())
    did = new_decision(router)
    before = snapshot(router)
    for huge in (Fraction(10**400, 3), {"score": Fraction(-(10**400), 3)}):
        with pytest.raises(InvalidRewardError, match="finite"):
            router.record_feedback(did, huge)
    assert snapshot(router) == before


# --- feedback ids -------------------------------------------------------------------------------

IDS = st.one_of(
    st.text(max_size=40),
    st.text(min_size=500, max_size=600),
    st.uuids(),
    st.integers(),
    st.floats(allow_nan=True),
    st.none(),
    st.binary(max_size=20),
    st.just(""),
    st.just("\x00"),
)


def test_unknown_feedback_ids_are_refused_and_change_nothing(sync_stores: Stores) -> None:
    store = sync_stores.new()
    router = router_on(store)
    other = router_on(store)  # another router (name) on the same store
    pending = new_decision(router)
    foreign = new_decision(other)
    settled = new_decision(router)
    router.record_feedback(settled, 0.5)

    # Known ids in the wrong place: a decision of another router, a settled one.
    with pytest.raises(UnknownDecisionError, match="unknown decision id"):
        router.record_feedback(foreign, 1.0)
    with pytest.raises(UnknownDecisionError, match="already settled"):
        router.record_feedback(settled, 1.0)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(run_id=IDS)
    def check(run_id: Any) -> None:
        before = snapshot(router), snapshot(other)
        with pytest.raises(DecisionError) as info:
            router.record_feedback(run_id, 1.0)
        assert isinstance(info.value, ValueError)
        assert "decision id" in str(info.value)
        assert (snapshot(router), snapshot(other)) == before

    check()
    # The real decisions are still waiting, each for its own router.
    assert run_sync(store.pending(router.name or "", pending)) is not None
    assert run_sync(store.pending(other.name or "", foreign)) is not None
    router.record_feedback(pending, 1.0)
    other.record_feedback(foreign, 1.0)


# --- constructor arguments ----------------------------------------------------------------------

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=-2, max_value=3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=1.0),
    st.text(max_size=4),
    st.sampled_from(["3", "0.5", "1e400", "nan"]),
    st.just([]),
)


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


#: What each argument may hold once accepted (docs/router.md and the Bandit docstring).
VALID: dict[str, Any] = {
    "decay": lambda v: v is None or (_finite(v) and 0 < v <= 1),
    "max_attempts": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "timeout": lambda v: v is None or (_finite(v) and v > 0),
    "retry_initial_wait": lambda v: _finite(v) and v >= 0,
    "retry_max_wait": lambda v: _finite(v) and v >= 0,
    "failure_reward": lambda v: v is None or (_finite(v) and 0 <= v <= 1),
    "expired_reward": lambda v: v is None or (_finite(v) and 0 <= v <= 1),
    "pending_ttl": lambda v: _finite(v) and v > 0,
    "max_pending": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "context_prior_weight": lambda v: v is None or (_finite(v) and v >= 0),
}


@settings(max_examples=150, deadline=None)
@given(kwargs=st.dictionaries(st.sampled_from(sorted(VALID)), ANY_VALUE, min_size=1, max_size=3))
def test_router_arguments_are_valid_or_refused_by_name(kwargs: dict[str, Any]) -> None:
    try:
        router = BanditRouterRunnable(arms={"a": FakeArm()}, **kwargs)
    except ValueError as exc:  # ConfigurationError, or pydantic's ValidationError
        message = str(exc)
    else:
        message = ""
    if message:
        assert any(name in message for name in kwargs), (kwargs, message)
        return
    for name in kwargs:
        assert VALID[name](getattr(router, name)), (name, kwargs[name], getattr(router, name))


@settings(max_examples=100, deadline=None)
@given(mean=ANY_VALUE, weight=ANY_VALUE)
def test_priors_are_valid_or_refused_by_name(mean: Any, weight: Any) -> None:
    try:
        prior = Prior(mean=mean, weight=weight)
    except ValueError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert "Prior mean" in message or "Prior weight" in message, message
        return
    assert _finite(prior.mean)
    assert 0 <= prior.mean <= 1
    assert _finite(prior.weight)
    assert prior.weight >= 0


def test_sqlite_store_arguments_are_valid_or_refused_by_name(tmp_path: Path) -> None:
    """Regression: ``timeout`` was not checked (a TypeError not naming it, or a NaN deadline)."""

    @settings(max_examples=60, deadline=None)
    @given(timeout=ANY_VALUE, synchronous=st.sampled_from(["NORMAL", "FULL", "OFF", "", None]))
    def check(timeout: Any, synchronous: Any) -> None:
        path = tmp_path / f"{uuid.uuid4().hex}.db"
        try:
            store = SQLiteStore(path, timeout=timeout, synchronous=synchronous)
        except ValueError as exc:
            message = str(exc)
        else:
            anyio.run(store.aclose)
            message = ""
        if message:
            assert "timeout" in message or "synchronous" in message, message
            return
        assert _finite(timeout)
        assert timeout >= 0
        assert synchronous in ("NORMAL", "FULL")

    check()


def test_sqlite_store_takes_any_valid_max_pending(tmp_path: Path) -> None:
    """Regression: a max_pending beyond SQLite's 64-bit integers (valid: any int >= 1) made
    every 256th settle fail with OverflowError, losing its reward."""

    async def run() -> None:
        store = SQLiteStore(tmp_path / "state.db")
        bandit = Bandit(ARMS, store=store, max_pending=2**64)
        try:
            for _ in range(300):
                d = await bandit.choose()
                await bandit.reward(d.decision_id, 1.0)
            stats = await bandit.statistics()
            assert sum(s.pulls for s in stats.values()) == 300
        finally:
            await store.aclose()

    anyio.run(run)


# --- the bytes of a SQLite state file -----------------------------------------------------------

RULES = Rules(decay=0.99, expired=Outcome(None, None), pending_ttl=3600.0, max_pending=1000)
CONTEXTS = ("", "code", "prose")


def _pick(i: int) -> Any:
    return lambda state: ARMS[i % 2]


@pytest.fixture(scope="module")
def state_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, Any]]:
    """A real state file (contexts, arms, pending and finished decisions) and its state."""
    path = tmp_path_factory.mktemp("state") / "state.db"

    async def build() -> dict[str, Any]:
        store = SQLiteStore(path)
        try:
            for i in range(120):
                ctx = CONTEXTS[i % 3]
                await store.begin("ns", ctx, ARMS, _pick(i), f"d{i}", RULES, 0.0)
                if i % 4:
                    await store.settle("ns", f"d{i}", Outcome(i % 5 / 4, i % 5 / 4), RULES, 0.0)
            return {ctx: await records(store, ctx) for ctx in CONTEXTS}
        finally:
            await store.aclose()

    state = anyio.run(build)
    return path.read_bytes(), state


async def records(store: SQLiteStore, ctx: str) -> list[dict[str, Any]]:
    st_ = await store.load("ns", ctx, ARMS, RULES)
    return [{"clock": st_.clock, **st_.arm_record(i)} for i in range(len(ARMS))]


def plausible(state: BanditState) -> bool:
    """What every state the library writes satisfies (rewards and learned values in [0, 1])."""
    eps = 1e-9
    for i in range(len(state.arms)):
        r = state.arm_record(i)
        if not (
            r["reward_sum"] <= r["pulls"] + eps
            and r["total"] <= r["n"] + eps
            and r["total_sq"] <= r["total"] + eps
            and r["stamp"] <= state.clock
        ):
            return False
    return True


MUTATIONS = st.one_of(
    st.tuples(
        st.just("bytes"),
        st.lists(st.tuples(st.integers(0), st.integers(0, 255)), min_size=1, max_size=8),
    ),
    st.tuples(st.just("truncate"), st.integers(0)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=5000)),
    st.tuples(st.just("zero-range"), st.tuples(st.integers(0), st.integers(1, 4096))),
)


def mutate(data: bytes, mutation: tuple[str, Any]) -> bytes:
    kind, arg = mutation
    buf = bytearray(data)
    if kind == "bytes":
        for pos, value in arg:
            buf[pos % len(buf)] = value
    elif kind == "truncate":
        del buf[arg % len(buf) :]
    elif kind == "append":
        buf += arg
    else:
        start, length = arg
        start %= len(buf)
        buf[start : start + length] = bytes(len(buf[start : start + length]))
    return bytes(buf)


def test_damaged_state_files_are_refused_untouched_or_read_as_valid_state(
    state_file: tuple[bytes, dict[str, Any]],
) -> None:
    original, reference = state_file
    outcomes: Counter[str] = Counter()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutation=MUTATIONS)
    def check(mutation: tuple[str, Any]) -> None:
        folder = Path(tempfile.mkdtemp(prefix="bandit-router-fuzz-"))
        try:
            path = folder / "state.db"
            data = mutate(original, mutation)
            path.write_bytes(data)
            outcomes[open_damaged(path, data, reference)] += 1
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    check()
    print(f"\nSTATE FILE bytes fuzzed: {dict(outcomes)}")


def open_damaged(path: Path, data: bytes, reference: dict[str, Any]) -> str:
    """Open a damaged copy; return how it went (asserting it went acceptably)."""
    listing = sorted(os.listdir(path.parent))
    try:
        store = SQLiteStore(path)
    except StoreError as exc:  # CorruptStateError is one
        refusal = str(exc)
    else:
        refusal = ""
    if refusal:
        assert str(path) in refusal, refusal
        assert path.read_bytes() == data, "a refused file was modified"
        assert sorted(os.listdir(path.parent)) == listing, "a refused file grew sidecars"
        return "refused at open, untouched"

    async def use() -> str:
        try:
            got = {}
            for ctx in CONTEXTS:
                state = await store.load("ns", ctx, ARMS, RULES)
                assert plausible(state), (ctx, state)
                got[ctx] = [{"clock": state.clock, **state.arm_record(i)} for i in range(2)]
            # And it still takes a whole write, or refuses it with a StoreError.
            await store.begin("ns", "new", ARMS, _pick(0), f"x-{uuid.uuid4()}", RULES, 0.0)
        except StoreError as exc:
            return f"refused at read or write: {exc}"
        finally:
            await store.aclose()
        return "opened, same state" if got == reference else "opened, other valid state"

    outcome = anyio.run(use)
    if outcome.startswith("refused"):
        assert str(path) in outcome, outcome  # the error names the file
        return "refused at read or write"
    return outcome


@pytest.mark.slow
def test_three_thousand_single_byte_flips(state_file: tuple[bytes, dict[str, Any]]) -> None:
    """Every byte position is as likely: the figures of docs/reliability.md (seeded)."""
    original, reference = state_file
    rng = random.Random(0)
    outcomes: Counter[str] = Counter()
    folder = Path(tempfile.mkdtemp(prefix="bandit-router-flips-"))
    try:
        for k in range(3_000):
            data = mutate(original, ("bytes", [(rng.randrange(len(original)), rng.randrange(256))]))
            if data == original:
                outcomes["unchanged bytes"] += 1
                continue
            path = folder / f"{k}" / "state.db"
            path.parent.mkdir()
            path.write_bytes(data)
            outcomes[open_damaged(path, data, reference)] += 1
            shutil.rmtree(path.parent)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\nSTATE FILE {len(original)} bytes, 3,000 single-byte flips: {dict(outcomes)}")
