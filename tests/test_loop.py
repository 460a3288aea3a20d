"""The running loop held by what asks for it per request (gateway.http.loop)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.http.loop import RunningLoop


def test_the_running_loop_is_asked_for_once_per_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[asyncio.AbstractEventLoop] = []
    real = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        asked.append(real())
        return asked[-1]

    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    running = RunningLoop()

    async def three_requests() -> asyncio.AbstractEventLoop:
        held = {running(), running(), running()}
        assert held == {real()}
        return real()

    first = asyncio.run(three_requests())
    assert asked == [first]
    # A later loop (the one held is closed): that one is taken, not the closed one.
    second = asyncio.run(three_requests())
    assert asked == [first, second]
