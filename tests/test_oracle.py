"""h11 on both sides of the gateway: for each request shape, the upstream's h11 sees exactly the
admitted request framed as sent, the client's h11 exactly one answer per request, in order, and
neither refuses a byte (the rules: tests/support/oracle_rules.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.oracle import Plan, filler
from tests.support.oracle_rig import Ask, Rig, oracle_rig
from tests.support.oracle_rules import Talk, play


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with oracle_rig(Path(tmp_path_factory.mktemp("oracle"))) as started:
        yield started


POST = Ask("POST", size=3000)
SHAPES = {
    "get": [Ask()],
    "keyed get": [Ask(route="keyed")],
    "post with a length": [POST],
    "post chunked": [Ask("POST", size=5000, chunks=(1, 7, 300, 2000))],
    "post empty": [Ask("POST", size=0)],
    "head": [Ask("HEAD")],
    "head of a chunked answer": [Ask("HEAD", plan=Plan(framing="chunked"))],
    "pipelined pair": [Ask(), POST],
    "pipelined four, mixed": [Ask("HEAD"), POST, Ask(route="keyed"), Ask("PUT", size=10)],
    "request trailers dropped": [Ask("POST", size=50, chunks=(10,), trailers=True)],
    "expect 100-continue": [Ask("POST", size=100, expect=True)],
    "204": [Ask(plan=Plan(status=204))],
    "304": [Ask(plan=Plan(status=304))],
    "chunked answer": [Ask(plan=Plan(framing="chunked", size=3000, chunks=(1, 100)))],
    "chunked answer with trailers": [Ask(plan=Plan(framing="chunked", trailers=True))],
    "answer delimited by the close": [Ask(plan=Plan(framing="close", size=500)), Ask()],
    "interim answers": [Ask("POST", size=10, plan=Plan(interim=(100, 103))), Ask()],
    "upstream says close": [Ask(plan=Plan(close=True)), Ask()],
    "client says close": [Ask(close=True)],
    "no route": [Ask(route="unknown"), Ask()],
    "no key": [Ask(route="nokey"), Ask()],
    "a large answer": [Ask(plan=Plan(size=300_000))],
    "a large upload": [Ask("PUT", size=300_000, chunks=(65536, 1))],
}


@pytest.mark.parametrize("asks", SHAPES.values(), ids=SHAPES.keys())
def test_each_side_sees_exactly_the_exchange(rig: Rig, asks: list[Ask]) -> None:
    conversations, problems = play(rig, [Talk(tuple(asks))])
    assert not problems, "\n".join(problems)
    (conversation,) = conversations
    outcome = conversation.outcome
    assert outcome is not None
    assert len(outcome.answers) == len(asks)
    # The upstream got each admitted request once, whole, and nothing else.
    admitted = [m for a, m in zip(asks, conversation.markers, strict=True) if a.admitted]
    assert [s.marker for s in rig.upstream.seen] == admitted
    for request in rig.upstream.seen:
        ask = asks[conversation.markers.index(request.marker)]
        assert request.complete and bytes(request.body) == filler(request.marker, ask.length)


def test_a_pipeline_in_one_write_and_byte_by_byte(rig: Rig) -> None:
    asks = (Ask(), Ask("POST", size=40, chunks=(3, 3)), Ask("HEAD"))
    for pieces in ((), (1,) * 400):
        conversations, problems = play(rig, [Talk(asks, pieces)])
        assert not problems, "\n".join(problems)
        assert conversations[0].outcome is not None
        assert [a.status for a in conversations[0].outcome.answers] == [200, 200, 200]


def test_clients_one_after_another_share_the_pool_and_nothing_else(rig: Rig) -> None:
    talks = [Talk((POST, Ask())), Talk((Ask("PUT", size=700, chunks=(5,)),)), Talk((Ask(),))]
    _, problems = play(rig, talks)
    assert not problems, "\n".join(problems)
    connections = {s.connection for s in rig.upstream.seen}
    assert len(connections) == 1  # kept alive and reused: each exchange ended both ways
