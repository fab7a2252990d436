"""RedisStore beyond the store contract: exact Lua maths, keys, concurrency, replays, errors.

(The contract suite in tests/stores runs against RedisStore too, through its STORES table.)
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis
from bandit_router_redis import RedisStore, mask_url
from bandit_router_redis.testing import RedisServer, free_port

from bandit_router import (
    Bandit,
    ConfigurationError,
    StoreError,
    UnknownArmError,
    UnknownDecisionError,
)
from bandit_router.stores import BanditState, Outcome, Rules

pytestmark = pytest.mark.anyio

ARMS = ("a", "b", "c")
NOTHING = Outcome(None, None)


def rules(decay: float | None = None, max_pending: int = 100_000) -> Rules:
    return Rules(decay=decay, expired=NOTHING, pending_ttl=3600.0, max_pending=max_pending)


def pick(arm: str) -> Any:
    return lambda state: arm


# --- the statistics maths in Lua is BanditState.apply's ---------------------------------------


@pytest.mark.parametrize("decay", [None, 1.0, 0.999, 0.9, 0.5, 0.01])
async def test_lua_maths_equals_bandit_state_apply(store: RedisStore, decay: float | None) -> None:
    r = rules(decay)
    hand = BanditState(ARMS)
    rng = random.Random(hash(decay) & 0xFFFF)
    open_ids: list[tuple[str, str]] = []
    for step in range(400):
        arm = rng.choice(ARMS)
        # Arbitrary floats (not dyadic), failures, outcomes that only count or only learn.
        outcome = rng.choice(
            [
                Outcome(rng.random(), rng.random()),
                Outcome(rng.random(), None),
                Outcome(None, rng.random(), failure=True),
                Outcome(None, None, failure=True),
                Outcome(1.0, 1.0),
                Outcome(0.0, 0.0),
            ]
        )
        kind = rng.random()
        if kind < 0.3:
            did = f"d{step}"
            await store.begin("ns", "ctx", ARMS, pick(arm), did, r, 0.0)
            hand.in_flight[hand.index(arm)] += 1
            open_ids.append((did, arm))
        elif kind < 0.6 and open_ids:
            did, arm = open_ids.pop(rng.randrange(len(open_ids)))
            await store.settle("ns", did, outcome, r, 0.0)
            hand.in_flight[hand.index(arm)] -= 1
            hand.apply(hand.index(arm), outcome, decay)
        else:
            await store.observe("ns", "ctx", ARMS, arm, outcome, r)
            hand.apply(hand.index(arm), outcome, decay)
        if step % 7 == 0:  # a long quiet arm: a large exponent in decay ** (clock - stamp)
            for _ in range(rng.randrange(30)):
                await store.observe("ns", "ctx", ARMS, "a", Outcome(0.25, 0.25), r)
                hand.apply(0, Outcome(0.25, 0.25), decay)
    st = await store.load("ns", "ctx", ARMS, r)
    assert st.clock == hand.clock
    for i in range(len(ARMS)):
        assert st.arm_record(i) == hand.arm_record(i)  # bit for bit
    got, want = st.discounted(decay), hand.discounted(decay)
    for g, w in zip(got, want, strict=True):
        assert g == pytest.approx(w, rel=1e-12, abs=1e-12)


# --- keys and formats ---------------------------------------------------------------------------


async def test_keys_are_namespaced_with_a_hash_tag_and_hold_json(
    store: RedisStore, url: str, prefix: str
) -> None:
    await store.begin("router{1}", "ctx", ARMS, pick("b"), "d1", rules(), 0.0)
    await store.begin("router{1}", "ctx", ARMS, pick("a"), "d2", rules(), 0.0)
    await store.settle("router{1}", "d1", Outcome(0.5, 0.5), rules(), 1.0)
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        keys = sorted(client.scan_iter(match=f"{prefix}:*"))
        base = f"{prefix}:{{router%7B1%7D}}"
        assert keys, "nothing written"
        assert all(k.startswith(f"{base}:") for k in keys), keys
        assert f"{base}:state:ctx" in keys
        state = client.hgetall(f"{base}:state:ctx")
        assert state["clock"] == "1"
        assert json.loads(state["a:b"]) == [1, 0.5, 0.25, 1, 1, 0.5, 0, 0]
        assert json.loads(state["a:a"])[7] == 1  # in flight
        pending = json.loads(str(client.hget(f"{base}:pending", "d2")))
        assert (pending["c"], pending["a"]) == ("ctx", "a")
        finished = json.loads(str(client.hget(f"{base}:finished", "d1")))
        assert finished["h"] == "settled"
        # Every value is JSON or a plain number: no pickle anywhere.
        for key in keys:
            kind = client.type(key)
            values: list[str] = []
            if kind == "hash":
                values = [str(v) for v in client.hgetall(key).values()]
            elif kind == "list":
                values = [str(v) for v in client.lrange(key, 0, -1)]
            for v in values:
                if not v.replace("-", "").replace(".", "").isdigit() and key.endswith(
                    (":pending", ":finished", "ctx")
                ):
                    json.loads(v)
    finally:
        client.close()
    assert await store.contexts("router{1}") == ["ctx"]


# --- concurrency: every chooser sees every begin before it ----------------------------------------


async def test_two_stores_choose_on_every_earlier_begin(url: str, prefix: str) -> None:
    """Begins only (no settles): the k-th committed begin must have seen k-1 calls in flight.

    This is what the optimistic concurrency (and its leases) guarantee: the chooser's snapshot
    is exactly the state the begin is applied to, whichever replica wrote last.
    """
    stores = [RedisStore(url, prefix=prefix), RedisStore(url, prefix=prefix)]
    seen: dict[str, int] = {}
    per_store = 150
    try:

        async def one(s: int, i: int) -> None:
            did = f"s{s}-{i}"

            def choose(state: BanditState) -> str:
                seen[did] = sum(state.in_flight)  # the last call is the one that counted
                return ARMS[i % 3]

            await anyio.lowlevel.checkpoint()
            await stores[s].begin("ns", "ctx", ARMS, choose, did, rules(), 0.0)

        async with anyio.create_task_group() as tg:
            for i in range(per_store):
                for s in range(2):
                    tg.start_soon(one, s, i)
        n = 2 * per_store
        assert sorted(seen.values()) == list(range(n))
        st = await stores[0].load("ns", "ctx", ARMS, rules())
        assert sum(st.in_flight) == n
    finally:
        for opened in stores:
            await opened.aclose()


async def test_concurrent_bandits_on_two_stores_count_exactly(url: str, prefix: str) -> None:
    stores = [RedisStore(url, prefix=prefix), RedisStore(url, prefix=prefix)]
    rewards: dict[str, list[float]] = {a: [] for a in ARMS}
    try:
        bandits = [Bandit(ARMS, name="shared", store=s, seed=k) for k, s in enumerate(stores)]
        rng = random.Random(7)

        async def lane(k: int) -> None:
            for _ in range(60):
                d = await bandits[k % 2].choose()
                r = rng.randrange(1025) / 1024
                await bandits[(k + 1) % 2].reward(d.decision_id, r)  # feedback elsewhere
                rewards[d.arm].append(r)

        async with anyio.create_task_group() as tg:
            for k in range(10):
                tg.start_soon(lane, k)
        st = await bandits[0].state()
        assert st.pulls == [len(rewards[a]) for a in ARMS]
        assert st.reward_sum == [sum(rewards[a]) for a in ARMS]
        assert st.in_flight == [0, 0, 0]
        assert st.clock == 600
    finally:
        for opened in stores:
            await opened.aclose()


# --- reroute through the Bandit, from the process that began and from another -------------------


async def test_reroute_from_this_and_another_store(
    store: RedisStore, url: str, prefix: str
) -> None:
    bandit = Bandit(ARMS, name="r", store=store, seed=3)
    d = await bandit.choose()
    moved = await bandit.reroute(d)
    assert moved.arm != d.arm
    other = RedisStore(url, prefix=prefix)
    try:
        # Another replica reroutes the same decision (it learns the decision from Redis).
        elsewhere = Bandit(ARMS, name="r", store=other, seed=4)
        again = await elsewhere.reroute(moved)
        assert again.arm not in (moved.arm,)
        done = await bandit.reward(d.decision_id, 1.0)
        assert done.arm == again.arm
        with pytest.raises(UnknownDecisionError, match="already settled"):
            await elsewhere.reroute(again)
    finally:
        await other.aclose()
    stats = await bandit.statistics()
    assert sum(s.failures for s in stats.values()) == 2
    assert stats[again.arm].pulls == 1
    assert sum(s.in_flight for s in stats.values()) == 0


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_works_on_trio(url: str, prefix: str) -> None:
    store = RedisStore(url, prefix=prefix)
    try:
        bandit = Bandit(ARMS, name="t", store=store, seed=1)
        for _ in range(20):
            d = await bandit.choose()
            await bandit.reward(d.decision_id, 0.5)
        assert sum(s.pulls for s in (await bandit.statistics()).values()) == 20
        with pytest.raises(UnknownArmError):
            await store.observe("t", "", ARMS, "zzz", NOTHING, rules())
    finally:
        await store.aclose()


# --- a script whose reply is lost is sent again and applied once ----------------------------------


class _LoseReply:
    """Wraps a link's ``call``: run the script, then lose its reply ``times`` times."""

    def __init__(self, call: Any, times: int) -> None:
        self.call, self.times = call, times

    async def __call__(self, key: str, payload: dict[str, Any]) -> Any:
        reply = await self.call(key, payload)
        if self.times > 0:
            self.times -= 1
            raise redis.exceptions.ConnectionError("reply lost (test)")
        return reply


async def _recovered(store: RedisStore) -> None:
    with anyio.fail_after(10):
        while store.degraded:
            await anyio.sleep(0.01)


@pytest.mark.parametrize("lost", ["begin", "settle", "observe"])
async def test_a_lost_reply_is_never_counted_twice(url: str, prefix: str, lost: str) -> None:
    store = RedisStore(url, prefix=prefix, retry_interval=0.02)
    try:
        bandit = Bandit(ARMS, name="r", store=store, seed=2)
        warm = await bandit.choose()  # connects; the lane exists
        await bandit.reward(warm.decision_id, 0.25)
        link = next(iter(store._links.values()))
        real = link.call
        if lost == "begin":
            link.call = _LoseReply(real, 1)  # type: ignore[method-assign]
        d = await bandit.choose()
        if lost == "settle":
            link.call = _LoseReply(real, 1)  # type: ignore[method-assign]
        if lost == "observe":
            link.call = _LoseReply(real, 1)  # type: ignore[method-assign]
            await bandit.record_failure("c")
        await bandit.reward(d.decision_id, 0.75)
        assert store.degraded
        link.call = real  # type: ignore[method-assign]
        await _recovered(store)
        st = await bandit.state()
        assert sum(st.pulls) == 2
        assert sum(st.reward_sum) == 1.0
        assert st.in_flight == [0, 0, 0]
        assert st.failures == ([0, 0, 1] if lost == "observe" else [0, 0, 0])
        assert st.clock == (3 if lost == "observe" else 2)
        assert store.rejected == 0
        assert store.dropped == 0
        assert await store.pending("r", d.decision_id) is None
    finally:
        await store.aclose()


# --- connection errors name the URL, never the password ----------------------------------------


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
async def test_an_unreachable_redis_raises_store_error_without_the_password(scheme: str) -> None:
    port = free_port()
    url = f"{scheme}://admin:s3cr3t-pw@127.0.0.1:{port}/0"
    store = RedisStore(url, connect_timeout=1.0)
    try:
        bandit = Bandit(ARMS, name="r", store=store)
        for call in (bandit.choose(), store.ping(), bandit.state()):
            with pytest.raises(StoreError) as info:
                await call
            text = f"{info.value} {info.value!r} {info.value.__cause__!r}"
            assert f"{scheme}://admin:***@127.0.0.1:{port}/0" in str(info.value)
            assert "s3cr3t" not in text
        assert not store.degraded  # never reached: an error, not an outage
        assert "s3cr3t" not in repr(store)
    finally:
        await store.aclose()


async def test_a_password_protected_redis(tmp_path: Any) -> None:
    try:
        server = RedisServer(password="pw-1234")
    except FileNotFoundError:
        pytest.skip("redis-server is not installed")
    with server:
        store = RedisStore(server.url)
        try:
            bandit = Bandit(ARMS, name="r", store=store)
            d = await bandit.choose()
            await bandit.reward(d.decision_id, 1.0)
        finally:
            await store.aclose()
        wrong = RedisStore(server.url.replace("pw-1234", "wrong-pw"))
        try:
            with pytest.raises(StoreError) as info:
                await wrong.ping()
            assert "wrong-pw" not in str(info.value)
            assert f"127.0.0.1:{server.port}" in str(info.value)
        finally:
            await wrong.aclose()


def test_mask_url() -> None:
    assert mask_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert mask_url("rediss://user:pw@h/2") == "rediss://user:***@h/2"
    assert mask_url("redis://user@h") == "redis://user@h"
    assert mask_url("redis://h:6379/0?password=pw&ssl_cert_reqs=none") == (
        "redis://h:6379/0?password=***&ssl_cert_reqs=none"
    )
    assert mask_url("unix:///tmp/r.sock?db=1") == "unix:///tmp/r.sock?db=1"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"url": "http://:pw@h:1"}, "redis://, rediss:// or unix://"),
        ({"url": "h:1"}, "redis://"),
        ({"url": "redis://h", "prefix": "a{b}"}, "prefix"),
        ({"url": "redis://h", "prefix": ""}, "prefix"),
        ({"url": "redis://h", "buffer_size": -1}, "buffer_size"),
        ({"url": "redis://h", "lease": 0}, "lease"),
        ({"url": "redis://h", "retry_interval": math.inf * 0}, "retry_interval"),
        ({"url": "redis://h", "max_batch": 0}, "max_batch"),
        ({"url": "redis://h", "hold": 1.0}, "hold"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any], match: str) -> None:
    url = kwargs.pop("url")
    with pytest.raises(ConfigurationError, match=match) as info:
        RedisStore(url, **kwargs)
    assert "pw" not in str(info.value).replace("***", "")
