"""How a running gateway stops: SIGINT or SIGTERM begin a drain, in the parent and in each
worker alike (``gatewaycli.listeners`` installs the handlers).

1. Readiness (the admin listener's /readyz and ``[server] health_path``) answers 503
   ``draining`` at once.
2. The listeners that take traffic (the proxy, forward-auth) go on accepting, and serving, for
   ``[server] accept_grace_seconds`` (default 0), so a load balancer polling readiness stops
   sending before anything is refused.
3. They close: a new connection is refused at once (the kernel answers it with a reset, never a
   wait), an idle kept-alive one is closed, and what is in flight gets up to
   ``shutdown_timeout_seconds`` to finish.
4. The admin listener closes last, once the traffic listeners (or, in the parent of
   ``--workers N``, the workers) are done: its /readyz says ``draining`` for the whole drain.

The signal and the exit are one log line each for the whole gateway: the parent speaks, its
workers only at debug level.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import uvicorn

from gateway.resources import Resources

if TYPE_CHECKING:
    from gatewaycli.server import Supervisor

log = logging.getLogger("gateway")


class Drain:
    """One process's drain: ``front`` are the uvicorn servers of the traffic listeners; the
    ``supervisor``'s workers, when this is their parent, are drained by the signal passed on."""

    def __init__(
        self,
        resources: Resources,
        front: Sequence[uvicorn.Server],
        supervisor: Supervisor | None = None,
        speaks: bool = True,
    ) -> None:
        self.resources = resources
        self.front = front
        self.supervisor = supervisor
        self.say = log.warning if speaks else log.debug
        self.began: float | None = None
        self.cause = ""

    def begin(self, cause: str, grace: bool = True) -> None:
        """Start the drain (``cause``: what asked, for the log line); ``grace=False`` closes
        the listeners without the accept grace (the parent of a worker is gone). A second
        signal changes nothing: the drain under way keeps its bounds."""
        if self.began is not None:
            return
        self.began = time.monotonic()
        self.cause = cause
        self.resources.draining = True
        config = self.resources.config
        seconds = config.accept_grace_seconds if grace else 0.0
        accepting = f"served for {seconds:g} s more, then refused" if seconds else "refused"
        self.say(
            "%s: draining: readiness answers 503 draining; new connections are %s; "
            "requests in flight get up to %d s",
            cause,
            accepting,
            config.shutdown_timeout_seconds,
        )
        if self.supervisor is not None:
            self.supervisor.stop()  # the workers drain by the same steps
        asyncio.get_running_loop().call_later(seconds, self.close_front)

    def close_front(self) -> None:
        for server in self.front:
            server.should_exit = True

    def ended(self, failed: bool = False) -> None:
        """The exit's one line."""
        if failed:
            self.say("stopped: a worker process exited")
        elif self.began is None:
            self.say("stopped")
        else:
            took = time.monotonic() - self.began
            self.say("stopped: %s drain finished in %.1f s", self.cause, took)
