"""What one request did, noted as it goes, and told to the metrics and the access log once it is
over (whatever happened: refused, forwarded, failed, or the client gone)."""

from __future__ import annotations

import time
from typing import Any

from core.identity import Identity
from gateway.access_log import AccessLog
from gateway.metrics import Metrics
from gateway.redaction import redact
from gateway.usage import Usage


class Exchange:
    """What the access log and the metrics say of one request, filled in as it goes."""

    __slots__ = (
        "clock",
        "forwarded",
        "identity",
        "path",
        "reason",
        "request_bytes",
        "request_id",
        "response_bytes",
        "route",
        "started",
        "status",
        "upstream_seconds",
    )

    def __init__(self) -> None:
        # When it began: the wall clock for the access log, the monotonic one for durations.
        self.started = time.time()
        self.clock = time.perf_counter()
        self.request_id: str | None = None
        self.path = ""
        self.route: str | None = None
        self.status: int | None = None
        self.reason: str | None = None
        self.identity: Identity | None = None
        self.request_bytes = self.response_bytes = 0
        self.upstream_seconds: float | None = None
        self.forwarded = 0.0  # perf_counter() when the request went upstream

    def report(
        self,
        scope: dict[str, Any],
        metrics: Metrics | None,
        access_log: AccessLog | None,
        access_query: bool,
        usage: Usage,
    ) -> None:
        """Count it (metrics, the key's usage) and queue its line (access log): plain calls, no
        I/O."""
        seconds = time.perf_counter() - self.clock
        identity = self.identity
        if identity is not None:
            usage.count(identity.access_key, self.status)
        if metrics is not None:
            metrics.observe(
                self.route, self.status, self.reason, identity, seconds, self.upstream_seconds
            )
        if access_log is not None:
            client = scope.get("client")
            # `[log] access_query`: the query, with any secret of our shape in it cut short.
            query = scope.get("query_string", b"") if access_query else b""
            upstream = self.upstream_seconds
            access_log.record(
                (
                    self.started,
                    self.request_id,
                    client[0] if client else None,
                    scope.get("method"),
                    # A secret sent in the path is cut too (a client that put its key there).
                    redact(self.path) + ("?" + redact(query.decode("latin-1")) if query else ""),
                    self.route,
                    self.status,
                    self.reason,
                    identity.access_key if identity else None,
                    identity.project_id if identity else None,
                    self.request_bytes,
                    self.response_bytes,
                    round(seconds * 1000, 3),
                    round(upstream * 1000, 3) if upstream is not None else None,
                )
            )
