"""The property-based campaign: random request sequences through the gateway between the two h11
sides of the oracle, held to its rules (tests/support/oracle_rules.py) after every example.

Each family draws one kind of trouble, so a fault found in one does not hide the others behind
it. The budget is ``CAMPAIGN_EXAMPLES`` examples a family (``make fuzz`` raises it);
``CAMPAIGN_DERANDOMIZE=1`` makes a run repeatable, ``CAMPAIGN_SHRINK=1`` shrinks a failure to its
smallest form. The failures the campaign found are kept in ``FOUND``, each a test of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.oracle import Plan
from tests.support.oracle_rig import MALFORMED, Ask, Rig, oracle_rig
from tests.support.oracle_rules import Talk, play

EXAMPLES = int(os.environ.get("CAMPAIGN_EXAMPLES", "30"))
# Shrinking a failure replays it many times, each hang a WAIT: `make test` reports the failing
# example as drawn, `make fuzz` (CAMPAIGN_SHRINK=1) its smallest form.
SHRINK = os.environ.get("CAMPAIGN_SHRINK", "") not in ("", "0")
CAMPAIGN = settings(
    max_examples=EXAMPLES,
    phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if SHRINK else [])],
    deadline=None,
    database=None,  # nothing written to the tree
    derandomize=os.environ.get("CAMPAIGN_DERANDOMIZE", "") not in ("", "0"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with oracle_rig(Path(tmp_path_factory.mktemp("campaign"))) as started:
        yield started


# -- what is drawn


SIZES = st.one_of(st.integers(0, 300), st.integers(300, 20_000), st.just(150_000))
WITH_BODY = ("POST", "PUT", "PATCH")


@st.composite
def plans(draw: st.DrawFn, body: int | None, trouble: frozenset[str]) -> Plan:
    size = draw(SIZES)
    framing = draw(st.sampled_from(("length", "chunked", "close")))
    plan = Plan(
        status=draw(st.sampled_from((200, 200, 201, 204, 304, 404, 500))),
        size=size,
        framing=framing,
        chunks=tuple(draw(st.lists(st.integers(1, max(size, 1)), max_size=3))),
        interim=tuple(draw(st.lists(st.sampled_from((100, 103)), max_size=2))),
        close=draw(st.integers(0, 4)) == 4,  # each drawn so that it shrinks to False
        trailers="trailers" in trouble and framing == "chunked" and draw(st.booleans()),
    )
    changes: dict[str, object] = {}
    if "early" in trouble and body is not None:
        changes["early"] = draw(st.integers(0, body))
    if "upstream faults" in trouble:
        changes["fault"] = draw(st.sampled_from(("close", "reset")))
        if body is not None and draw(st.booleans()):
            changes["fault_body"] = draw(st.integers(0, body))
        else:
            changes["fault_answer"] = draw(st.integers(0, max(size - 1, 0)))
    if "extra" in trouble:
        changes["extra"] = draw(st.booleans())
    return Plan(**{**plan.__dict__, **changes})  # type: ignore[arg-type]


@st.composite
def asks(draw: st.DrawFn, trouble: frozenset[str]) -> Ask:
    method = draw(st.sampled_from(("GET", "GET", "HEAD", "DELETE", *WITH_BODY)))
    size = draw(SIZES) if method in WITH_BODY or draw(st.integers(0, 5)) == 5 else None
    chunks = None
    if size is not None and draw(st.booleans()):
        chunks = tuple(draw(st.lists(st.integers(1, max(size, 1)), max_size=4)))
    return Ask(
        method=method,
        route=draw(st.sampled_from(("open", "open", "open", "keyed", "nokey", "unknown"))),
        size=size,
        chunks=chunks,
        trailers=chunks is not None and draw(st.booleans()),
        expect=size is not None and draw(st.integers(0, 3)) == 3,
        close=draw(st.integers(0, 7)) == 7,
        plan=draw(plans(size, trouble)),
    )


@st.composite
def talks(draw: st.DrawFn, trouble: frozenset[str]) -> list[Talk]:
    """1-3 client connections, one after another, each 1-4 pipelined requests written in
    random pieces (and, with "client cuts", cut off part way)."""
    played = []
    for _ in range(draw(st.integers(1, 3))):
        requests = tuple(draw(st.lists(asks(trouble), min_size=1, max_size=4)))
        if "malformed bodies" in trouble:
            # The last request's body turns out broken after its head (the connection ends).
            broken = Ask(
                "POST",
                route=draw(st.sampled_from(("open", "open", "keyed", "unknown"))),
                size=3,
                chunks=(),
                malformed=draw(st.sampled_from(sorted(MALFORMED))),
                plan=Plan(early=draw(st.sampled_from((None, 0)))),
            )
            requests = (*requests[:-1], broken)
        if "long pipelines" in trouble:
            # Many refused requests behind the drawn ones, all in one write.
            refused = Ask(route=draw(st.sampled_from(("unknown", "nokey"))))
            requests += (refused,) * draw(st.integers(0, 300))
        pieces = tuple(draw(st.lists(st.integers(1, 4096), max_size=6)))
        stop_after = None
        reset = False
        if "client cuts" in trouble and draw(st.booleans()):
            stop_after = draw(st.integers(0, 30_000))
            reset = draw(st.booleans())
        # The client waits for an early answer before sending the rest (drawn to shrink to
        # that, the deterministic case), or writes everything at once.
        duplex = not draw(st.booleans())
        played.append(Talk(requests, pieces, stop_after, reset, duplex))
    return played


FAMILIES = {
    "framing": frozenset(),
    "answer trailers": frozenset({"trailers"}),
    "early answers": frozenset({"early"}),
    "upstream faults": frozenset({"upstream faults"}),
    "two answers at once": frozenset({"extra"}),
    "client cuts": frozenset({"client cuts"}),
    "long pipelines": frozenset({"long pipelines"}),
    "malformed bodies": frozenset({"malformed bodies"}),
}


@pytest.mark.parametrize("trouble", FAMILIES.values(), ids=FAMILIES.keys())
def test_campaign(rig: Rig, trouble: frozenset[str]) -> None:
    @CAMPAIGN
    @given(played=talks(trouble))
    def hold(played: list[Talk]) -> None:
        _, problems = play(rig, played)
        assert not problems, "\n".join([*problems, f"played: {played!r}"])

    hold()


# -- what the campaign found, kept as cases

# Each with how many times it is played: a race is played until it shows almost surely.
FOUND: dict[str, tuple[list[Talk], int]] = {
    # A chunked answer's trailer fields (x-trailer, set-cookie) reached the client as headers.
    "upstream trailers become headers": (
        [Talk((Ask(plan=Plan(size=0, framing="chunked", trailers=True)),))],
        1,
    ),
    # The upstream answers 200 before reading a byte of a 1-byte body and keeps reading: the
    # gateway stops sending and the upstream never gets the body.
    "an early answer ends the upload": (
        [Talk((Ask("POST", size=1, plan=Plan(size=0, early=0)),))],
        1,
    ),
    # Two answers in one segment: the client got both Content-Length headers (h11: conflicting).
    "two answers in one segment are merged": ([Talk((Ask(plan=Plan(size=0, extra=True)),))], 1),
    # ... and the connection that sent the second answer is pooled and reused for the next client.
    "a connection out of step is reused": (
        [Talk((Ask(plan=Plan(extra=True)),)), Talk((Ask(),))],
        1,
    ),
    # A chunked answer and a second one in the same segment: "RuntimeError: response body
    # longer than its Content-Length" with its traceback, and the client's answer cut short.
    "a chunked answer then a second one raises": (
        [Talk((Ask(plan=Plan(framing="chunked", extra=True)),))],
        1,
    ),
    # A GET and 300 refused requests in one write: a RecursionError at the 141st, then a hang.
    "a long pipeline of refusals recurses": ([Talk((Ask(), *(Ask(route="unknown"),) * 300))], 1),
    # The upstream resets the connection after 10 bytes of a 4 MB upload: the client gets
    # "HTTP/1.1 0 " (about 2 runs in 5), not a 502.
    "a reset during the upload answers status 0": (
        [Talk((Ask("PUT", size=4_000_000, plan=Plan(fault="reset", fault_body=10)),))],
        10,
    ),
    # A chunk size of "0x3" after the head went upstream: the client gets "HTTP/1.1 0 " and the
    # upstream connection is held mid-request (bare LF chunks and an overflowing size too).
    "a malformed chunk answers status 0": (
        [Talk((Ask("POST", size=3, chunks=(), malformed="0x-size"),))],
        1,
    ),
    # The upstream answered before the broken body: the client connection is never closed.
    "a malformed body after an early answer stays open": (
        [Talk((Ask("POST", size=3, chunks=(), malformed="bare-lf", plan=Plan(early=0)),))],
        1,
    ),
    # Two answers to one request: the upstream's, then a 400 (Transfer-Encoding: gzip) ...
    "an early answer then a 400": (
        [Talk((Ask("POST", size=3, chunks=(), malformed="gzip", plan=Plan(early=0)),))],
        1,
    ),
    # ... or the refusal (404), then a 400 for the broken body of the same request.
    "a refusal then a 400": (
        [Talk((Ask("POST", route="unknown", size=3, chunks=(), malformed="0x-size"),))],
        1,
    ),
    # Found as drawn, not shrunk (it shows about 1 run in 4, with these very pieces): a large
    # first answer, then a request saying close, then more requests: the connection ends inside
    # the first answer, and no request is answered.
    "a pipeline after a close request cuts the first answer": (
        [
            Talk(
                (
                    Ask(
                        "PUT",
                        route="keyed",
                        size=95,
                        chunks=(),
                        plan=Plan(status=201, size=150_000, interim=(100,)),
                    ),
                    Ask("DELETE", close=True, plan=Plan(status=304, interim=(103,), close=True)),
                    Ask("PUT", size=150_000, chunks=(25015, 6802, 486, 45990), expect=True),
                    *(Ask(route="unknown"),) * 41,
                ),
                pieces=(396, 257, 1024, 1, 575, 153),
            )
        ],
        16,
    ),
    # Found on the new engine, as drawn: an early, complete answer to a request saying close; the
    # upload read on after it lost the rest of the body when the connection closed at the
    # answer's end.
    "a close request answered early loses the rest of its body": (
        [
            Talk(
                (
                    Ask("DELETE", plan=Plan(304, 973, "close", (424,), interim=(103,))),
                    Ask(
                        "POST",
                        route="keyed",
                        size=181,
                        expect=True,
                        close=True,
                        plan=Plan(201, 0, chunks=(1, 1, 1), interim=(103,), early=149),
                    ),
                    Ask(
                        "POST",
                        route="nokey",
                        size=2611,
                        expect=True,
                        plan=Plan(size=150_000, chunks=(720, 843, 726), early=1006),
                    ),
                ),
                pieces=(410, 256, 1354),
            )
        ],
        4,
    ),
    # ... and, as drawn, a refusal of a request saying close to a client that had reset:
    # closing for writing raised, and the refusal logged a traceback.
    "a refusal to a reset client raises as it closes": (
        [
            Talk(
                (
                    Ask(
                        plan=Plan(
                            size=150_000, framing="chunked", chunks=(5307,), interim=(100, 103)
                        )
                    ),
                ),
                stop_after=28467,
                reset=True,
            ),
            Talk(
                (
                    Ask(
                        route="unknown",
                        close=True,
                        plan=Plan(201, 12029, chunks=(1675, 10162), interim=(100,), close=True),
                    ),
                ),
                stop_after=25101,
                duplex=False,
            ),
            Talk(
                (
                    Ask("POST", route="keyed", size=926, expect=True, plan=Plan(204, 150_000)),
                    Ask(
                        "POST",
                        route="unknown",
                        size=19999,
                        chunks=(3746, 141, 14729, 8511),
                        trailers=True,
                        expect=True,
                        plan=Plan(500, 150_000, "close", (632, 12881), interim=(103, 100)),
                    ),
                    Ask(
                        "HEAD",
                        route="unknown",
                        plan=Plan(404, 150_000, "chunked", (177, 2)),
                    ),
                    Ask(
                        "POST", size=150_000, plan=Plan(500, 287, chunks=(220,), interim=(103, 100))
                    ),
                ),
                pieces=(141, 1060, 566, 1562, 2048, 409),
                duplex=False,
            ),
        ],
        4,
    ),
    # Found on the new engine, as drawn: an upload read on after an early answer, its last bytes
    # over the high-water mark, left the client connection paused for reading: it never saw the
    # client close, and its descriptor outlived the example.
    "an upload read on after its answer leaves reading paused": (
        [
            Talk(
                (
                    Ask(
                        "PATCH",
                        route="keyed",
                        size=150_000,
                        chunks=(),
                        expect=True,
                        plan=Plan(500, 150_000, early=65658),
                    ),
                ),
                pieces=(201, 127),
            )
        ],
        4,
    ),
}


@pytest.mark.parametrize(("played", "times"), FOUND.values(), ids=FOUND.keys())
def test_found(rig: Rig, played: list[Talk], times: int) -> None:
    for _ in range(times):
        _, problems = play(rig, played)
        assert not problems, "\n".join(problems)
