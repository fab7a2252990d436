"""The per-attempt time limits that share one timer per loop (bandit_router._deadline)."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from bandit_router._deadline import Deadlines

pytestmark = pytest.mark.anyio

LIMIT = 0.05


async def test_a_block_within_its_limit_ends_normally() -> None:
    deadlines = Deadlines(asyncio.get_running_loop(), LIMIT)
    d = deadlines.start()
    with d:
        await asyncio.sleep(0)
    assert not d.expired()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(LIMIT * 2)  # the armed timer fires later and cancels nothing
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert len(deadlines) == 0


async def test_an_overdue_block_raises_timeout_error_and_leaves_no_cancellation() -> None:
    deadlines = Deadlines(asyncio.get_running_loop(), LIMIT)
    d = deadlines.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(TimeoutError) as info, d:
        await asyncio.sleep(10)
    assert LIMIT <= loop.time() - t0 < 1.0
    assert isinstance(info.value.__cause__, asyncio.CancelledError)
    assert d.expired()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    await asyncio.sleep(0)  # the task goes on normally


async def test_concurrent_blocks_expire_exactly_when_overdue() -> None:
    """Blocks far below or far above the limit, interleaved: only the slow ones expire."""
    deadlines = Deadlines(asyncio.get_running_loop(), LIMIT)
    rng = random.Random(7)
    slow = [rng.random() < 0.4 for _ in range(60)]

    async def block(i: int) -> bool:
        await asyncio.sleep(rng.random() * LIMIT / 4)  # staggered starts
        try:
            with deadlines.start():
                await asyncio.sleep(LIMIT * 20 if slow[i] else LIMIT / 20)
        except TimeoutError:
            return True
        return False

    expired = await asyncio.gather(*(block(i) for i in range(60)))
    assert expired == slow
    assert len(deadlines) == 0


async def test_the_timer_is_shared_and_re_armed_for_the_next_block() -> None:
    """A long block behind a short one still expires on time."""
    deadlines = Deadlines(asyncio.get_running_loop(), LIMIT)
    loop = asyncio.get_running_loop()

    async def later_slow_block() -> float:
        await asyncio.sleep(LIMIT / 2)
        t0 = loop.time()
        with pytest.raises(TimeoutError), deadlines.start():
            await asyncio.sleep(10)
        return loop.time() - t0

    with deadlines.start():  # arms the timer for its own deadline, then finishes at once
        await asyncio.sleep(0)
    took = await later_slow_block()
    assert LIMIT <= took < LIMIT * 10


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines(asyncio.get_running_loop(), LIMIT)
    started = asyncio.Event()

    async def victim() -> None:
        with deadlines.start():
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(victim())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(LIMIT * 2)
    assert len(deadlines) == 0


async def test_an_outside_cancellation_after_the_expiry_is_not_a_timeout() -> None:
    """As asyncio.timeout: the caller's cancel wins over ours."""
    deadlines = Deadlines(asyncio.get_running_loop(), LIMIT)

    async def victim() -> None:
        with deadlines.start():
            try:
                await asyncio.sleep(10)
            finally:
                # cancelled by the deadline; the caller cancels too while it cleans up
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                await asyncio.sleep(0)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(victim())


async def test_a_block_that_swallows_the_cancellation_ends_normally() -> None:
    deadlines = Deadlines(asyncio.get_running_loop(), LIMIT)
    d = deadlines.start()
    with d, contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(10)
    assert d.expired()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_deadline_never_entered_cancels_nothing() -> None:
    deadlines = Deadlines(asyncio.get_running_loop(), LIMIT)
    with deadlines.start():  # arms the timer
        pass
    deadlines.start()  # made, never entered
    await asyncio.sleep(LIMIT * 3)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_no_limit_never_expires() -> None:
    deadlines = Deadlines(asyncio.get_running_loop(), None)
    d = deadlines.start()
    with d:
        await asyncio.sleep(LIMIT)
    assert not d.expired()
    assert len(deadlines) == 0
