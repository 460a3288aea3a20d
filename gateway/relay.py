"""A request served by callbacks: `gateway serve`'s fast path for what most requests are.

`serve_step` takes what ``GatewayApp.prepare`` decided by plain calls: a refusal is answered at
once; a key that is not cached is waited for by a done callback on its lookup; a request
without a body that is let through goes to a `Relay`: upstream on a kept-alive connection from
the pool, its response, once whole, sent to the client in one write through the request's
``Cycle``. No task, no coroutine, no future, no ASGI message: the connection tells the relay (its
``Listener``), and the watchdog calls it when the route timeout passes.

Measured (row 5, the gateway with a key, against the same code through the ASGI path in a task):
docs/architecture.md, "The fast path: a request answered by callbacks".

Whatever it does not finish itself, it hands to ``GatewayApp.resume`` in a task before a byte has
been written to the client, with what was decided so far (nothing is checked or counted twice):
- **no idle connection** in the pool: `begin` says so, and the request takes the ASGI path;
- **a large response** (no length, or more than ``SMALL_BODY``): at its head, the stream and its
  flow control are the engine's (``Upstream.forward`` with the connection it has);
- **the keep-alive race** (``gateway.http.upstream``): an idempotent request on a connection the
  upstream closed before a byte came back is sent again once, on a new connection;
- **any other failure**: 502, and **the route timeout**: 504.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from core.errors import new_request_id
from core.identity import Identity
from gateway import errors
from gateway.exchange import Exchange
from gateway.gate import Pending
from gateway.headers import filter_response
from gateway.http.client import Upstream, UpstreamError, head_of, read_whole_first
from gateway.http.cycle import Cycle
from gateway.http.exchange import UpstreamExchange
from gateway.http.upstream import Connection, may_send_again
from gateway.http.watchdog import Watch
from gateway.plan import Forward, Refuse, Start, Step, Wait

if TYPE_CHECKING:
    from gateway.app import GatewayApp

log = logging.getLogger("gateway.app")


class Owner(Protocol):
    """The app a relay works for: ``GatewayApp`` (and the bench's bare engine, row 3e)."""

    upstream: Upstream

    def closed(self, scope: dict[str, Any], exchange: Exchange) -> None: ...

    def resume(
        self,
        step: Step | None,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        exchange: Exchange,
    ) -> Coroutine[Any, Any, None]: ...


class Relay:
    """One request and its upstream exchange, told of its progress (``upstream.Listener``)."""

    __slots__ = (
        "app",
        "connection",
        "cycle",
        "exchange",
        "scope",
        "start",
        "step",
        "upstream_exchange",
        "watch",
    )

    def __init__(
        self,
        app: Owner,
        step: Forward,
        scope: dict[str, Any],
        cycle: Cycle,
        start: Start,
        exchange: Exchange,
    ) -> None:
        self.app = app
        self.step = step
        self.scope = scope
        self.cycle = cycle
        self.start = start
        self.exchange = exchange
        self.connection: Connection | None = None
        self.upstream_exchange: UpstreamExchange | None = None
        self.watch: Watch | None = None

    def begin(self) -> bool:
        """Send the request on an idle kept-alive connection; False when none is idle (nothing
        was done: the caller takes the ASGI path)."""
        step = self.step
        upstream = self.app.upstream
        connection = upstream.pool(step.where).take()
        if connection is None:
            return False
        self.connection = connection
        self.watch = upstream.watchdog.watch(step.route.timeout_seconds, self.expired)
        head = head_of(step.method, step.target, step.where.authority, step.headers)
        self.exchange.forwarded = time.perf_counter()
        self.upstream_exchange = connection.begin(step.method == "HEAD", self)
        connection.write(head)
        # A client that goes away ends the exchange at once, not at the route timeout.
        self.cycle.on_disconnect = self.client_gone
        return True

    # -- the connection's news

    def on_head(self) -> None:
        upstream_exchange = self.upstream_exchange
        assert upstream_exchange is not None and self.watch is not None
        if read_whole_first(upstream_exchange):
            self.app.upstream.watchdog.progress(self.watch)
            return  # read whole before answering, as the engine does
        # A stream: the engine copies it with its flow control, in a task.
        upstream_exchange.listener = None
        self._unwatch()
        self._hand_over(self.step._replace(sent=self.connection))

    def on_done(self) -> None:
        connection = self.connection
        assert connection is not None
        self._unwatch()
        exchange, cycle = self.exchange, self.cycle
        # Everything in the try: this runs in the upstream connection's data_received, where an
        # error would leave the client unanswered and the exchange never counted.
        try:
            upstream_exchange = self.upstream_exchange
            assert upstream_exchange is not None
            body = upstream_exchange.take_body()
            status = upstream_exchange.status
            headers = filter_response(upstream_exchange.headers)
            headers += self.step.returned
            connection.release()
            exchange.status, exchange.response_bytes = status, len(body)
            exchange.upstream_seconds = time.perf_counter() - exchange.forwarded
            cycle.answer(status, headers, body)
        except Exception:
            log.exception("unhandled error answering %s %s", self.step.method, exchange.path)
            exchange.status = 500
            if not cycle.response_complete:
                cycle.fail()
        finally:
            self.app.closed(self.scope, exchange)

    def on_error(self, error: Exception) -> None:
        connection = self.connection
        assert connection is not None
        self._unwatch()
        connection.abort()
        step = self.step
        if may_send_again(error, step.method, True, False):
            # The keep-alive race: no byte came back on a kept-alive connection and the
            # request has no body: sent again, once, on a new connection.
            self._hand_over(step._replace(fresh=True))
            return
        log.warning("upstream %s failed: %s", step.route.upstream, error)
        self._hand_over(Refuse(*UpstreamError(False, str(error)).answer, step.request_id))

    def expired(self) -> None:
        """The watchdog's: the upstream was silent past the route timeout."""
        self.watch = None  # the watchdog has let it go
        self.cycle.on_disconnect = None
        connection = self.connection
        assert connection is not None
        connection.abort()
        self._hand_over(Refuse(*UpstreamError(True, "").answer, self.step.request_id))

    def client_gone(self) -> None:
        """The cycle's: the client went away before its answer; the upstream connection is
        closed now, not at the route timeout."""
        connection = self.connection
        assert connection is not None
        self._unwatch()
        connection.abort()
        self.app.closed(self.scope, self.exchange)

    # --

    def _unwatch(self) -> None:
        self.cycle.on_disconnect = None
        if self.watch is not None:
            self.app.upstream.watchdog.done(self.watch)
            self.watch = None

    def _hand_over(self, step: Forward | Refuse) -> None:
        cycle = self.cycle
        work = self.app.resume(step, self.scope, cycle.receive, cycle.send, self.exchange)
        self.start(cycle, work)


def serve_step(
    app: GatewayApp,
    decide: Callable[[], Step],
    scope: dict[str, Any],
    cycle: Cycle,
    start: Start,
    exchange: Exchange,
) -> None:
    """`GatewayApp.serve_by_callbacks`'s steps: what ``decide`` says, carried out by callbacks
    where that can be done (`_by_callbacks`), else in a task; an uncached key's lookup is
    waited for by a done callback, and the steps go on from there."""
    step: Step
    try:
        step = decide()
        if type(step) is Wait and step.pending.digest is not None:
            lookup = app.gate.verifier.lookup(step.pending.digest)
            later = functools.partial(_looked_up, app, step, scope, cycle, start, exchange)
            lookup.add_done_callback(later)
            return
        if type(step) is Wait and step.pending.limits is not None:  # rate limits in Redis
            answer = app.gate.check_soon(step.pending)
            if answer is not None:
                later = functools.partial(_checked, app, step, scope, cycle, start, exchange)
                answer.add_done_callback(later)
                return
        if _by_callbacks(app, step, scope, cycle, start, exchange):
            return
    except Exception:
        log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
        step = Refuse(500, "internal_error", exchange.request_id or new_request_id())
    start(cycle, app.resume(step, scope, cycle.receive, cycle.send, exchange))


def _looked_up(
    app: GatewayApp,
    waited: Wait,
    scope: dict[str, Any],
    cycle: Cycle,
    start: Start,
    exchange: Exchange,
    lookup: asyncio.Future[Identity | str],
) -> None:
    """`serve_step`, once the lookup of an uncached key has settled (its done callback)."""

    def decide() -> Step:
        verdict = app.gate.looked_up(waited.pending, lookup)
        if isinstance(verdict, Pending):  # the key's rate limits are in Redis: a task
            return Wait(verdict, waited.context)
        return app.step_after_gate(verdict, waited.context, scope, exchange)

    serve_step(app, decide, scope, cycle, start, exchange)


def _checked(
    app: GatewayApp,
    waited: Wait,
    scope: dict[str, Any],
    cycle: Cycle,
    start: Start,
    exchange: Exchange,
    answer: asyncio.Future[Any],
) -> None:
    """`serve_step`, once Redis has answered the check of the key's rate limits (its done
    callback); a script Redis no longer knows is sent whole by a task (`Gate.finish`)."""
    step: Step
    try:
        verdict = app.gate.limits_checked(waited.pending, answer)
        if verdict is None or isinstance(verdict, Pending):
            # A script Redis forgot is sent whole, credits the store must reserve are waited
            # for: both by `Gate.finish`, in a task.
            again = waited if verdict is None else Wait(verdict, waited.context)
            start(cycle, app.resume(again, scope, cycle.receive, cycle.send, exchange))
            return
        step = app.step_after_gate(verdict, waited.context, scope, exchange)
    except Exception:
        log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
        step = Refuse(500, "internal_error", exchange.request_id or new_request_id())
    serve_step(app, lambda: step, scope, cycle, start, exchange)


def _by_callbacks(
    app: GatewayApp,
    step: Step,
    scope: dict[str, Any],
    cycle: Cycle,
    start: Start,
    exchange: Exchange,
) -> bool:
    """Carry ``step`` out without a task where that can be done: a refusal is answered now,
    a request without a body goes to a `Relay`; False for the rest (a task)."""
    if type(step) is Refuse:
        status, reason, request_id, extra, message = step
        headers, body = errors.error_response(status, reason, request_id, message, extra)
        exchange.reason, exchange.status = reason, status
        exchange.response_bytes = len(body)
        try:
            cycle.answer(status, headers, body)
        except Exception:
            log.exception("unhandled error answering %s", reason)
            exchange.status = 500
            if not cycle.response_complete:
                cycle.fail()
        finally:
            app.closed(scope, exchange)
        return True
    if type(step) is Forward and not step.framed:
        if cycle.disconnected:  # gone while its key was looked up: nothing to send
            app.closed(scope, exchange)
            return True
        return Relay(app, step, scope, cycle, start, exchange).begin()
    return False
