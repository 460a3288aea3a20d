"""The open WebSockets of a process, held by key so that a change to a key reaches them: the
verifier tells ``Sessions`` about every key change it follows (``Verifier.on_change``), and the
sessions of a changed key are put through the gate again (rate limits aside); one it refuses now
(revoked, expired, or edited so the route refuses it) is ended with 1008 (policy violation) and
the refusal's reason, within the revocation bound. An expiry is a timer of the session's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from core.config import Route
from core.identity import Identity
from gateway.gate import Gate, Pending, Refusal

POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1


class Session:
    """One open WebSocket: what the gate admitted it on, and how to end it (``stop``, with the
    close code and reason)."""

    def __init__(
        self,
        route: Route,
        tokens: list[bytes],
        client: str,
        identity: Identity,
        stop: Callable[[int, str], None],
    ) -> None:
        self.route, self.tokens, self.client, self.identity = route, tokens, client, identity
        self.stop = stop
        self.expiry: asyncio.TimerHandle | None = None

    def end(self, code: int, reason: str) -> None:
        self.stop(code, reason)


class Sessions:
    """Every open WebSocket of this process, by access key: put through the gate again when
    the verifier follows a change to its key."""

    def __init__(self, gate: Gate, clock: Callable[[], float]) -> None:
        self.gate = gate
        self.clock = clock
        self.by_key: dict[str, set[Session]] = {}
        # Bumped on every change the verifier follows: a session admitted before a change it
        # is added after (its upstream's 101 came in between) is put through the gate again.
        self.changes = 0
        self._checks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return sum(len(sessions) for sessions in self.by_key.values())

    def add(self, session: Session, seen: int) -> None:
        """Hold ``session``, admitted when ``changes`` was ``seen``."""
        self.by_key.setdefault(session.identity.access_key, set()).add(session)
        expires = [
            t
            for t in (session.identity.expires_at, session.identity.secret_expires_at)
            if t is not None
        ]
        if expires:
            delay = max(0.0, min(expires) - self.clock())
            loop = asyncio.get_running_loop()
            session.expiry = loop.call_later(delay, self._recheck, session)
        if seen != self.changes:
            self._recheck(session)

    def remove(self, session: Session) -> None:
        held = self.by_key.get(session.identity.access_key)
        if held is not None:
            held.discard(session)
            if not held:
                del self.by_key[session.identity.access_key]
        if session.expiry is not None:
            session.expiry.cancel()

    def changed(self, access_keys: set[str] | None) -> None:
        """The verifier evicted these keys (None: its whole cache)."""
        self.changes += 1
        keys = list(self.by_key) if access_keys is None else access_keys & self.by_key.keys()
        for access_key in keys:
            for session in list(self.by_key.get(access_key, ())):
                self._recheck(session)

    def _recheck(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(self._check(session))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, session: Session) -> None:
        gate = self.gate
        verdict = gate.admit(session.route, session.tokens, "GET", session.client, limited=False)
        if isinstance(verdict, Pending):
            verdict = await gate.finish(verdict)
        if isinstance(verdict, Refusal) and verdict.status != 503:
            session.end(POLICY_VIOLATION, verdict.reason)
