"""What every exchange through the gateway is held to, as the h11 oracle saw it on both sides:
each rule returns the violations it found, one line each, naming the request's marker."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import h11

from tests.support.oracle import TRAILERS, WAIT, Plan, Seen, filler
from tests.support.oracle_client import Answer, Outcome, converse, prefix, serialise
from tests.support.oracle_rig import IDEMPOTENT, REFUSED, UPSTREAM_FAILED, Ask, Rig

TRAILER_NAMES = {name for name, _ in TRAILERS}


@dataclass
class Conversation:
    """One client connection: its requests, their markers, and what it got (None: the client
    cut the connection itself, part way through writing, and read nothing)."""

    asks: list[Ask]
    markers: list[str]
    outcome: Outcome | None


def body_fault(ask: Ask) -> bool:
    """The upstream's plan ends its connection while the request body is read."""
    plan = ask.plan
    return plan.fault is not None and plan.fault_body is not None and plan.fault_body <= ask.length


def answer_fault(ask: Ask) -> bool:
    """The upstream's plan cuts its answer short, where the framing shows it, or by a reset
    (a body delimited by the close ends only at a clean close: the gateway cuts its client's
    answer short too, as nginx does)."""
    plan = ask.plan
    return (
        plan.fault is not None
        and (plan.framing != "close" or plan.fault == "reset")
        and plan.fault_answer is not None
        and plan.fault_answer < len(expected_body(ask, "x"))
        and not body_fault(ask)
    )


def expected_body(ask: Ask, marker: str) -> bytes:
    if ask.method == "HEAD" or ask.plan.status in (204, 304):
        return b""
    return filler(marker, ask.plan.size)


def judge(conversations: list[Conversation], seen: list[Seen]) -> list[str]:
    everyone = [m for c in conversations for m in c.markers]
    problems: list[str] = []
    for conversation in conversations:
        if conversation.outcome is not None:
            problems += judge_answers(conversation, conversation.outcome, everyone)
    problems += judge_upstream(conversations, seen, everyone)
    return problems


def judge_answers(conversation: Conversation, outcome: Outcome, everyone: list[str]) -> list[str]:
    problems = []
    asks, markers, answers = conversation.asks, conversation.markers, outcome.answers
    name = markers[0] if len(markers) == 1 else f"{markers[0]}..{markers[-1]}"
    if outcome.error:
        problems.append(f"{name}: {outcome.error}")
    if outcome.hung:
        problems.append(
            f"{name}: nothing for {WAIT} s with {len(asks) - len(answers)} of {len(asks)} "
            "answers owed"
        )
    if outcome.stayed_open:
        problems.append(f"{name}: the connection stayed open after a malformed request")
    if outcome.extra:
        problems.append(f"{name}: bytes after the last answer: {outcome.extra[:80]!r}")
    for ask, marker, answer in zip(asks, markers, answers, strict=False):
        problems += judge_answer(ask, marker, answer, [m for m in everyone if m != marker])
    if len(answers) < len(asks) and not outcome.error and not outcome.hung:
        last = answers[-1] if answers else None
        said_close = last is not None and (
            b"close" in b",".join(last.header(b"connection")).lower()
            or asks[len(answers) - 1].close
        )
        cut = outcome.truncated and answer_fault(asks[len(answers)])
        if not said_close and not cut:
            problems.append(
                f"{markers[len(answers)]}: no answer (answers {len(answers)} of {len(asks)}; "
                f"the connection {'ended inside an answer' if outcome.truncated else 'closed'} "
                "without a previous answer saying close)"
            )
    return problems


def judge_answer(ask: Ask, marker: str, answer: Answer, others: list[str]) -> list[str]:
    problems = []
    raw = repr(answer.headers).encode() + answer.body + repr(answer.trailers).encode()
    for other in others:
        if other.encode() in raw:
            problems.append(f"{marker}: its answer carries bytes of {other}")
    names = {name for name, _ in answer.headers}
    if names & TRAILER_NAMES:
        problems.append(f"{marker}: upstream trailers became headers: {names & TRAILER_NAMES}")
    if ask.malformed is not None:
        # Refused, or the upstream's answer if it came first: one answer either way.
        allowed = {400, 501, ask.plan.status if ask.admitted else REFUSED[ask.route]}
        if answer.status not in allowed:
            problems.append(f"{marker}: {answer.status} to a malformed body, not {allowed}")
        return problems
    if not ask.admitted:
        if answer.status != REFUSED[ask.route]:
            problems.append(f"{marker}: {answer.status}, expected {REFUSED[ask.route]}")
        return problems
    plan: Plan = ask.plan
    allowed = {plan.status}
    if body_fault(ask):
        early = plan.early is not None and plan.early < (plan.fault_body or 0)
        allowed = set(UPSTREAM_FAILED) | ({plan.status} if early else set())
    elif answer_fault(ask):
        allowed = set(UPSTREAM_FAILED)
    # A body delimited by the close has no wrong length: cut short, it is a shorter body.
    cut = (
        plan.framing == "close"
        and plan.fault == "close"
        and plan.fault_answer is not None
        and not body_fault(ask)
    )
    if cut:
        allowed = {plan.status, *UPSTREAM_FAILED}
    if answer.status not in allowed:
        problems.append(f"{marker}: status {answer.status}, expected one of {sorted(allowed)}")
    elif answer.status == plan.status:
        if answer.header(b"x-marker") != [marker.encode()]:
            problems.append(f"{marker}: answered with x-marker {answer.header(b'x-marker')}")
        if cut and not expected_body(ask, marker).startswith(answer.body):
            problems.append(f"{marker}: body {answer.body[:40]!r} is not what was sent")
        elif not cut and answer.body != expected_body(ask, marker):
            problems.append(
                f"{marker}: body of {len(answer.body)} bytes {answer.body[:40]!r}, expected "
                f"{len(expected_body(ask, marker))}"
            )
    return problems


def judge_upstream(
    conversations: list[Conversation], seen: list[Seen], everyone: list[str]
) -> list[str]:
    problems = []
    asks = {m: a for c in conversations for a, m in zip(c.asks, c.markers, strict=True)}
    cut = {m for c in conversations if c.outcome is None for m in c.markers}
    after_close = set()
    for c in conversations:
        for index, ask in enumerate(c.asks):
            if ask.close:
                after_close.update(c.markers[index + 1 :])
    by_marker: dict[str, list[Seen]] = {}
    for request in seen:
        marker = request.marker
        by_marker.setdefault(marker, []).append(request)
        ask = asks.get(marker)
        if ask is None:
            problems.append(f"the upstream got a request no client sent: {request.target!r}")
            continue
        if not ask.admitted:
            problems.append(f"{marker}: refused ({ask.route}) but it reached the upstream")
        if marker in after_close:
            problems.append(f"{marker}: sent after a request saying close, yet forwarded")
        problems += judge_seen(ask, marker, request, [m for m in everyone if m != marker], cut)
    for marker, requests in by_marker.items():
        ask = asks.get(marker)
        if len(requests) > 1 and (
            ask is None
            or ask.method not in IDEMPOTENT
            or ask.size is not None
            or any(r.answered for r in requests[:-1])
        ):
            problems.append(f"{marker}: the upstream got it {len(requests)} times")
    return problems


def judge_seen(ask: Ask, marker: str, request: Seen, others: list[str], cut: set[str]) -> list[str]:
    problems = []
    raw = repr(request.headers).encode() + bytes(request.body)
    for other in others:
        if other.encode() in raw:
            problems.append(f"{marker}: the upstream read bytes of {other} in it")
    if request.method.decode() != ask.method or request.target != f"/{marker}?m={marker}".encode():
        problems.append(f"{marker}: upstream saw {request.method!r} {request.target!r}")
    headers = dict(request.headers)
    if headers.get(b"x-marker") != marker.encode():
        problems.append(f"{marker}: upstream saw x-marker {headers.get(b'x-marker')!r}")
    if ask.size is not None and ask.chunks is None:
        if headers.get(b"content-length") != b"%d" % ask.size:
            problems.append(f"{marker}: framed {headers} upstream, sent with a length")
    elif ask.size is not None and headers.get(b"transfer-encoding", b"").lower() != b"chunked":
        problems.append(f"{marker}: framed {headers} upstream, sent chunked")
    sent = filler(marker, ask.length)
    if not sent.startswith(bytes(request.body)):
        problems.append(
            f"{marker}: upstream body {bytes(request.body[:40])!r} is not what was sent"
        )
    if request.trailers:
        problems.append(f"{marker}: request trailers reached the upstream: {request.trailers}")
    # Only the upstream's own close (its plan) or the client's may cut a request short: an early
    # answer that keeps the connection still reads the whole body (RFC 9112 §9.3).
    plan = ask.plan
    excused = (
        body_fault(ask)
        or plan.framing == "close"
        or plan.close
        or marker in cut
        or ask.malformed is not None
    )
    if not request.complete and not excused:
        problems.append(
            f"{marker}: the upstream got {len(request.body)} of {ask.length} body bytes and "
            f"no end (answered early: {plan.early is not None})"
        )
    elif request.complete and bytes(request.body) != sent:
        problems.append(f"{marker}: upstream body {len(request.body)} bytes, sent {len(sent)}")
    return problems


@dataclass(frozen=True, repr=False)
class Talk:
    """One client connection to play: its requests, the sizes of the pieces it writes them in,
    and where it cuts the connection (None: it writes all and reads every answer)."""

    asks: tuple[Ask, ...]
    pieces: tuple[int, ...] = ()
    stop_after: int | None = None  # bytes written before the client closes
    reset: bool = False  # that close is a reset
    duplex: bool = True  # the client waits for an early answer before sending the rest

    def __repr__(self) -> str:
        """Only what differs from the defaults; a run of one request reads as ``x300``."""
        runs = [(ask, len(list(group))) for ask, group in itertools.groupby(self.asks)]
        asks = ", ".join(f"{ask!r}" + (f" x{n}" if n > 1 else "") for ask, n in runs)
        defaults = {"pieces": (), "stop_after": None, "reset": False, "duplex": True}
        rest = [f", {k}={getattr(self, k)!r}" for k, v in defaults.items() if getattr(self, k) != v]
        return f"Talk([{asks}]{''.join(rest)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # hypothesis prints a dataclass field by field otherwise


def hold(talk: Talk, requests: list[list[h11.Event]]) -> tuple[int, int] | None:
    """Where the client waits for an early answer before sending the rest of the body: after
    the body bytes the upstream answers at, in the first request planned to answer early.
    Scripted on the answer, not on time, so full duplex is tested every run, not by luck."""
    offset = 0
    if not talk.duplex:
        return None
    for index, (ask, events) in enumerate(zip(talk.asks, requests, strict=True)):
        early = ask.plan.early
        if ask.admitted and early is not None and early < ask.length and not body_fault(ask):
            return offset + prefix(events, early), index + 1
        offset += len(serialise(events))
    return None


def play(rig: Rig, talks: list[Talk]) -> tuple[list[Conversation], list[str]]:
    """Play the connections one after another (they share the gateway's upstream pool), then
    judge both sides and the process at rest; returns what happened and every violation."""
    rig.upstream.reset()
    rig.rebase()
    conversations = []
    for talk in talks:
        markers = [rig.marker() for _ in talk.asks]
        for ask, marker in zip(talk.asks, markers, strict=True):
            rig.upstream.plans[marker] = ask.plan
        requests = [rig.events(ask, marker) for ask, marker in zip(talk.asks, markers, strict=True)]
        outcome = converse(
            rig.address,
            requests,
            list(talk.pieces),
            talk.stop_after,
            talk.reset,
            hold(talk, requests),
            [rig.wire(a, m, r) for a, m, r in zip(talk.asks, markers, requests, strict=True)],
            closes=talk.asks[-1].malformed is not None,
        )
        conversations.append(Conversation(list(talk.asks), markers, outcome))
    problems = rig.settle()
    problems += judge(conversations, list(rig.upstream.seen))
    problems += rig.upstream.errors
    return conversations, problems
