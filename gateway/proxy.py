"""Where a route's requests go: its upstream URL as the engine's ``Origin`` (a pool each)."""

from __future__ import annotations

from core.config import Route
from gateway.http.client import Origin


def origin(route: Route) -> Origin:
    scheme, _, netloc = route.upstream.partition("://")
    host, port = netloc, 443 if scheme == "https" else 80
    if netloc.startswith("["):  # an IPv6 literal
        end = netloc.index("]")
        host = netloc[1:end]
        if netloc[end + 1 :].startswith(":"):
            port = int(netloc[end + 2 :])
    elif ":" in netloc:
        host, _, number = netloc.rpartition(":")
        port = int(number)
    return Origin(
        host,
        port,
        scheme == "https",
        route.ca_file,
        netloc.encode("ascii"),
        route.upstream_keepalive_seconds,
    )
