"""The route timeout's watchdog: what it cancels, when, and that it never swallows a cancellation
that is not its own."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.http.watchdog import Watchdog


async def exchange(dog: Watchdog, timeout: float, started: asyncio.Event) -> str:
    """What the proxy does around one upstream exchange, reduced to a wait."""
    watch = dog.watch(timeout)
    started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        if not dog.ours(watch):
            raise
        return "timed out"
    finally:
        dog.done(watch)
    return "answered"


async def start(dog: Watchdog, timeout: float = 1.0) -> asyncio.Task[str]:
    started = asyncio.Event()
    task = asyncio.ensure_future(exchange(dog, timeout, started))
    await started.wait()
    return task


def test_only_exchanges_past_their_timeout_are_cancelled() -> None:
    async def scenario() -> None:
        dog = Watchdog()
        slow, fresh = await start(dog, 1.0), await start(dog, 1.0)
        loop = asyncio.get_running_loop()
        assert dog.expire(loop.time() + 0.5) == 0
        fresh_watch = list(dog._active.values())[1]
        fresh_watch.last = loop.time() + 0.9  # the upstream just sent bytes on this one
        assert dog.expire(loop.time() + 1.5) == 1
        assert await slow == "timed out" and not fresh.done()
        fresh.cancel()
        with pytest.raises(asyncio.CancelledError):
            await fresh
        await dog.close()

    asyncio.run(scenario())


def test_a_paused_exchange_waits_on_the_client_and_never_expires() -> None:
    async def scenario() -> None:
        dog = Watchdog()
        task = await start(dog, 0.01)
        Watchdog.pause(next(iter(dog._active.values())))
        assert dog.expire(asyncio.get_running_loop().time() + 3600) == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await dog.close()

    asyncio.run(scenario())


def test_the_ticker_enforces_the_timeout_in_real_time() -> None:
    async def scenario() -> None:
        dog = Watchdog()
        task = await start(dog, 0.05)
        assert await asyncio.wait_for(task, 2) == "timed out"
        await asyncio.sleep(dog.tick * 2)
        assert dog._ticker is None  # it sleeps when nothing is in flight

    asyncio.run(scenario())


def test_a_cancellation_from_outside_at_the_moment_of_a_timeout_is_not_swallowed() -> None:
    async def scenario() -> None:
        dog = Watchdog()
        task = await start(dog, 1.0)
        dog.expire(asyncio.get_running_loop().time() + 10)  # the watchdog cancels ...
        task.cancel()  # ... and so does a shutdown, in the same loop iteration
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        await dog.close()

    asyncio.run(scenario())


def test_an_outside_cancellation_already_pending_is_counted_from_the_start() -> None:
    """A task cancelled (and still cancelling) before its exchange began: a timeout inside must
    not turn that earlier request into a clean answer either."""

    async def scenario() -> str:
        dog = Watchdog()
        me = asyncio.current_task()
        assert me is not None
        me.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)  # caught, but the request is still counted by cancelling()
        assert me.cancelling() == 1
        watch = dog.watch(1.0)
        assert watch.cancelling == 1
        dog.expire(asyncio.get_running_loop().time() + 10)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            assert dog.ours(watch)  # ours alone: the count is back to where it began
            me.uncancel()
            return "timed out"
        finally:
            dog.done(watch)
            await dog.close()
        return "answered"

    assert asyncio.run(scenario()) == "timed out"


def test_a_watchdog_still_times_out_exchanges_on_a_later_event_loop() -> None:
    """The watchdog keeps the loop it first ran on (asking for the running loop costs a system
    call per request on Python 3.11); on a new loop it must take that one, not the closed one."""
    dog = Watchdog()

    async def one_exchange() -> str:
        task = await start(dog, timeout=0.05)
        return await asyncio.wait_for(task, 5)

    assert asyncio.run(one_exchange()) == "timed out"
    assert asyncio.run(one_exchange()) == "timed out"


def test_an_exchange_run_by_callbacks_is_called_back_and_a_failing_one_stops_no_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A relayed exchange (no task) is told by its callback; one whose callback fails is logged
    and the others still expire: the ticker is shared by every exchange in flight."""
    told: list[str] = []

    def failing() -> None:
        told.append("failing")
        raise RuntimeError("the relay broke")

    async def scenario() -> None:
        dog = Watchdog()
        loop = asyncio.get_running_loop()
        first = dog.watch(1.0, failing)
        second = dog.watch(1.0, lambda: told.append("second"))
        assert first.task is None and second.task is None
        assert dog.expire(loop.time() + 2.0) == 2
        await dog.close()

    asyncio.run(scenario())
    assert told == ["failing", "second"]
    assert "an exchange's timeout failed" in caplog.text
