"""What the gateway counts, and its Prometheus text form.

On the request path a count is a dict entry or an int bumped on the event loop, and a latency a
bucket index found by bisection: no lock, no label lookup, no allocation but the key tuple
(prometheus_client's ``labels(...).inc()`` and ``observe()`` take a lock and a dict of children
each; five of them per request cost several microseconds). prometheus_client is used where it is
good at it: turning a snapshot into the exposition format (``render``).

A snapshot is plain data (dicts, lists, numbers), so the snapshots of several worker processes
can be sent to the one that answers the scrape and summed (:func:`merge`): counts from every
worker add up, and each is exact at the moment of the scrape (``gatewaycli.scrape``).

No label carries a key: an access key per series would grow without bound. The project is a
label only when ``[metrics] per_project = true``.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from core.identity import Identity
from core.version import VERSION

# Request and upstream latency: the gateway's own work is tens of microseconds, an upstream's
# milliseconds to seconds; the route timeout caps the top.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# From a key change written to the eviction it causes: NOTIFY makes it milliseconds on
# PostgreSQL, the invalidation interval (default 1 s) bounds it on SQLite.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Snapshot = dict[str, Any]


class Histogram:
    """Counts per bucket (the last one is +Inf) followed by the sum, as one list."""

    __slots__ = ("bounds", "values")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.values: list[float] = [0.0] * (len(bounds) + 2)

    def observe(self, value: float) -> None:
        self.values[bisect_left(self.bounds, value)] += 1
        self.values[-1] += value


def status_class(status: int | None) -> str:
    """``2xx`` .. ``5xx``; ``none`` when the client left before any response began."""
    return f"{status // 100}xx" if status else "none"


class Metrics:
    """The request counts of one process (the verifier, store and access log keep their own
    counters; :meth:`snapshot` reads them all)."""

    def __init__(self, per_project: bool = False) -> None:
        self.per_project = per_project
        # (route prefix, status class, denial reason, project) -> count; "" where there is none.
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.request_seconds: dict[str, Histogram] = {}
        self.upstream_seconds: dict[str, Histogram] = {}
        self.in_flight = 0

    def observe(
        self,
        route: str | None,
        status: int | None,
        reason: str | None,
        identity: Identity | None,
        seconds: float,
        upstream_seconds: float | None,
    ) -> None:
        """One request over: counted, and its latency put in its route's histogram."""
        route = route or ""
        project = identity.project_id if identity is not None and self.per_project else ""
        key = (route, status_class(status), reason or "", project or "")
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.request_seconds.get(route)
        if histogram is None:
            histogram = self.request_seconds[route] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)
        if upstream_seconds is not None:
            histogram = self.upstream_seconds.get(route)
            if histogram is None:
                histogram = self.upstream_seconds[route] = Histogram(LATENCY_BUCKETS)
            histogram.observe(upstream_seconds)

    def snapshot(self, **others: Any) -> Snapshot:
        """This process's counts as plain data; ``others`` adds the counts other parts keep."""
        return {
            "processes": 1,
            "requests": dict(self.requests),
            "request_seconds": {r: list(h.values) for r, h in self.request_seconds.items()},
            "upstream_seconds": {r: list(h.values) for r, h in self.upstream_seconds.items()},
            "in_flight": self.in_flight,
            **others,
        }


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """The sum of several processes' snapshots: numbers add, dicts merge by key, lists (the
    histograms) add element by element."""
    total: Snapshot = {}
    for snapshot in snapshots:
        total = _add(total, snapshot)
    return total


def _add(a: Any, b: Any) -> Any:
    if isinstance(b, dict):
        out = dict(a)
        for key, value in b.items():
            out[key] = _add(out[key], value) if key in out else value
        return out
    if isinstance(b, list):
        return [x + y for x, y in zip(a, b, strict=True)]
    return a + b


def render(snapshot: Snapshot, per_project: bool = False) -> bytes:
    """The Prometheus text exposition of a (merged) snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot, per_project))
    return generate_latest(registry)


class _Collector:
    def __init__(self, snapshot: Snapshot, per_project: bool) -> None:
        self.snapshot = snapshot
        self.per_project = per_project

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        labels = ["route", "status_class", "reason"] + (["project"] if self.per_project else [])
        requests = CounterMetricFamily(
            "gateway_http_requests",
            "Requests on the proxy listener, by route prefix, status class and denial reason.",
            labels=labels,
        )
        for (route, cls, reason, project), count in sorted(s.get("requests", {}).items()):
            requests.add_metric([route, cls, reason, project][: len(labels)], count)
        yield requests
        yield _histograms(
            "gateway_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route prefix.",
            s.get("request_seconds", {}),
            LATENCY_BUCKETS,
        )
        yield _histograms(
            "gateway_upstream_duration_seconds",
            "Time from forwarding a request to the end of the upstream's response, by route.",
            s.get("upstream_seconds", {}),
            LATENCY_BUCKETS,
        )
        yield GaugeMetricFamily(
            "gateway_http_requests_in_flight",
            "Requests being served now.",
            value=s.get("in_flight", 0),
        )
        cache = CounterMetricFamily(
            "gateway_key_cache_lookups",
            "Key lookups by the verifier's cache outcome: hit, negative_hit (a key known to be "
            "wrong), miss (the store was asked).",
            labels=["result"],
        )
        for result, count in sorted(s.get("cache", {}).items()):
            cache.add_metric([result], count)
        yield cache
        queries = CounterMetricFamily(
            "gateway_store_queries",
            "Store round trips: reads, and write transactions.",
            labels=["kind"],
        )
        for kind, count in sorted(s.get("store", {}).items()):
            queries.add_metric([kind], count)
        yield queries
        yield CounterMetricFamily(
            "gateway_store_errors",
            "Store reads and writes that failed (the store was unavailable).",
            value=s.get("store_errors", 0),
        )
        yield CounterMetricFamily(
            "gateway_rate_limit_unavailable",
            "Rate-limit checks Redis did not answer (let through or refused by [ratelimit] fail).",
            value=s.get("rate_limit_unavailable", 0),
        )
        lag = HistogramMetricFamily(
            "gateway_revocation_lag_seconds",
            "Time from a key change (revoke, edit, roll) written to the store to its eviction "
            "from this gateway's cache (clocks of different nodes included).",
        )
        lag.add_metric(
            [], *_buckets(s.get("revocation_lag", [0] * (len(LAG_BUCKETS) + 2)), LAG_BUCKETS)
        )
        yield lag
        lines = CounterMetricFamily(
            "gateway_access_log_lines",
            "Access log lines by outcome: written, dropped (the queue was full), failed (the "
            "write failed).",
            labels=["outcome"],
        )
        for outcome, count in sorted(s.get("access_log", {}).items()):
            lines.add_metric([outcome], count)
        yield lines
        yield GaugeMetricFamily(
            "gateway_processes_reporting",
            "Processes whose counts this scrape adds up (the workers, and the admin process).",
            value=s.get("processes", 0),
        )
        info = GaugeMetricFamily(
            "gateway_build_info",
            "The gateway's version and the Python running it.",
            labels=["version", "python"],
        )
        info.add_metric([VERSION, platform.python_version()], 1)
        yield info


def _buckets(
    values: list[float], bounds: tuple[float, ...]
) -> tuple[list[tuple[str, float]], float]:
    """Per-bucket counts to Prometheus's cumulative ``le`` buckets, and the sum."""
    cumulative, out = 0.0, []
    for bound, count in zip((*bounds, float("inf")), values[:-1], strict=True):
        cumulative += count
        out.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
    return out, values[-1]


def _histograms(
    name: str, documentation: str, by_route: dict[str, list[float]], bounds: tuple[float, ...]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["route"])
    for route, values in sorted(by_route.items()):
        buckets, total = _buckets(values, bounds)
        family.add_metric([route], buckets, total)
    return family
