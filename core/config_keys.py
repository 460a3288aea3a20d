"""Every key the config file may hold: its table, default and meaning, declared once.

``core.config`` refuses any key not declared here (its "unknown key" error lists these names) and
reads each table with the defaults shown here; the configuration reference in the docs is made
from this declaration at build time, and a test holds every default to what the parser does with
an empty table. A new key is one line here, its reading in ``core.config`` and its line in
config.example.toml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class _Absent:
    """The default of a key whose absence means something of its own (e.g. no PostgreSQL url)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class Key:
    name: str
    default: Any  # the value the file would hold; ABSENT when absence is the default
    doc: str
    required: bool = False


@dataclass(frozen=True)
class Table:
    name: str  # as in the file: [server], or [[routes]] when ``array``
    doc: str
    keys: tuple[Key, ...]
    array: bool = False

    def names(self) -> set[str]:
        return {key.name for key in self.keys}

    def __getitem__(self, name: str) -> Key:
        return next(key for key in self.keys if key.name == name)


SERVER = Table(
    "server",
    "The proxy listener and its process.",
    (
        Key(
            "listen", "127.0.0.1:8080", 'The proxy\'s "host:port" ("[::1]:8080" for IPv6; 0 = any).'
        ),
        Key("workers", 1, "Worker processes accepting on the proxy listener."),
        Key(
            "trusted_proxies",
            [],
            "Peers (addresses or networks) whose X-Forwarded-For/-Proto are believed, e.g. "
            '["127.0.0.1"] behind a TLS terminator on this host; none by default, so no client '
            "can pose as another address or as HTTPS.",
        ),
        Key(
            "shutdown_timeout_seconds",
            30,
            "On SIGTERM, how long requests and streams in flight may take to finish.",
        ),
        Key(
            "accept_grace_seconds",
            0.0,
            "On SIGTERM, how long new connections are still served while readiness answers 503 "
            "`draining` (for a load balancer to notice); then the listeners close and refuse new "
            "ones.",
        ),
        Key(
            "header_timeout_seconds",
            10.0,
            "A request's line and headers must arrive whole within this (else 408).",
        ),
        Key(
            "body_timeout_seconds",
            60.0,
            "Between two reads of a request body: 408 before any answer, else the connection is "
            "closed (nginx's client_body_timeout).",
        ),
        Key(
            "send_timeout_seconds",
            60.0,
            "Between two writes a slow reader accepts; then the connection is closed.",
        ),
        Key(
            "keepalive_timeout_seconds",
            30.0,
            "An idle kept-alive client connection is closed after this.",
        ),
        Key(
            "health_path",
            "",
            'e.g. "/readyz": answer readiness on the proxy listener too, for a load balancer '
            'that only sees this port ("" = not there).',
        ),
        Key(
            "tls_cert_file",
            "",
            "PEM certificate chain: the proxy listener speaks HTTPS (with tls_key_file; both or "
            "neither). Relative to the config file.",
        ),
        Key("tls_key_file", "", "PEM private key for tls_cert_file; mode 0600 or stricter."),
        Key(
            "pid_file",
            "",
            'e.g. "gateway.pid": where `gateway serve` writes its process id, for '
            "`gateway reload`.",
        ),
    ),
)
ADMIN = Table(
    "admin",
    "The admin API and console listener.",
    (
        Key(
            "listen", "127.0.0.1:8081", 'The admin listener (loopback by default); "" disables it.'
        ),
        Key("tls_cert_file", "", "HTTPS for the admin listener, as under [server]."),
        Key("tls_key_file", "", "Its private key, as under [server]."),
    ),
)
LOG = Table(
    "log",
    "The access log and the process log.",
    (
        Key(
            "access",
            "stdout",
            'One JSON line per proxied request: "stdout", "off" or a file path (relative to the '
            "config file); SIGUSR1 reopens the file.",
        ),
        Key(
            "access_query",
            False,
            "The query string in the access log (it can carry secrets).",
        ),
        Key(
            "level",
            ABSENT,
            "debug, info, warning or error; re-read at a reload. When absent: "
            "`serve --log-level`, default info.",
        ),
    ),
)
METRICS = Table(
    "metrics",
    "Prometheus metrics at /metrics on the admin listener.",
    (
        Key("enabled", True, "GET /metrics on the admin listener (Prometheus text)."),
        Key(
            "per_project",
            False,
            "A project label on the request counter (one series per project in use).",
        ),
    ),
)
RATELIMIT = Table(
    "ratelimit",
    "Where rate limits are counted.",
    (
        Key(
            "backend",
            "local",
            '"local" (per node: its workers share one count, exact whatever --workers says) or '
            '"redis" (one count shared by every worker and node).',
        ),
        Key("url", "", 'redis://host:port/db, for backend = "redis".'),
        Key(
            "fail",
            "open",
            'Redis away: "open" lets requests through, "closed" refuses them (503).',
        ),
        Key("timeout_ms", 250, "How long a check may wait on Redis before the fail rule applies."),
    ),
)
STORE = Table(
    "store",
    "Where the keys live: a SQLite file (path) or a PostgreSQL database (url), exactly one.",
    (
        Key(
            "path",
            "gateway.db",
            "SQLite file, relative to the config file; created mode 0600.",
        ),
        Key(
            "url",
            ABSENT,
            "postgresql://user@host:port/db (asyncpg): any number of gateways share it. A "
            "password may be in the URL or in ~/.pgpass / PGPASSWORD, as for libpq.",
        ),
        Key("busy_timeout_ms", 5000, "SQLite: how long a store call waits on a lock."),
        Key(
            "pool_min_size",
            1,
            "PostgreSQL: connections each process keeps open; a node of N workers has N + 1 "
            "processes (1 if N = 1) and one more connection that listens for key changes.",
        ),
        Key("pool_max_size", 4, "PostgreSQL: the most connections each process opens."),
        Key(
            "pool_idle_seconds",
            30.0,
            "PostgreSQL: a connection above pool_min_size idle this long closes, so a node "
            "returns to its figure at rest after a burst.",
        ),
        Key(
            "statement_timeout_ms",
            5000,
            "PostgreSQL: the longest a statement, or a transaction left idle, may last on the "
            "gateway's connections; it bounds how late a key change can commit.",
        ),
        Key(
            "transaction_pooler",
            False,
            "PostgreSQL: true when url is PgBouncer (or another pooler) in transaction mode: no "
            "prepared statements kept, timeouts per transaction; needs listen_url.",
        ),
        Key(
            "listen_url",
            ABSENT,
            "PostgreSQL: the server itself, for the one LISTEN per node and the migrations "
            "(default: url); may name several hosts for failover, as url may.",
        ),
    ),
)
FORWARD_AUTH = Table(
    "forward_auth",
    "The check endpoint a proxy in front asks: nginx auth_request, Caddy forward_auth, Traefik "
    "ForwardAuth, Envoy ext_authz.",
    (
        Key(
            "listen",
            "",
            'e.g. "127.0.0.1:8082"; keep it where only that proxy reaches it ("" = off).',
        ),
        Key(
            "shape",
            "",
            'The proxy in front, whose headers alone are believed: "nginx" (X-Original-Method/'
            '-URI, X-Real-IP), "traefik" (Traefik and Caddy: X-Forwarded-Method/-Uri, '
            'X-Forwarded-For\'s last entry) or "envoy"; required with listen.',
        ),
        Key("path_prefix", "", 'Envoy ext_authz: its http_service path_prefix, e.g. "/check".'),
        Key(
            "rate_limited_status",
            429,
            "429, or 403 for nginx, which turns all but 401/403 into a 500.",
        ),
    ),
)
KEYS = Table(
    "keys",
    "The format of secret keys.",
    (
        Key("prefix", "gws", "Secret keys look like gws_live_... / gws_test_... (1-16 a-z, 0-9)."),
        Key(
            "accept_imported",
            False,
            "true: secrets imported from another gateway (no prefix, no checksum) are looked up "
            "by hash (docs/key-life.md).",
        ),
    ),
)
WEBHOOKS = Table(
    "webhooks",
    "Delivery of key events to your systems (docs/key-life.md).",
    (
        Key("deliver", True, "This process takes part in sending them (one node per event)."),
        Key(
            "timeout_seconds",
            10.0,
            "One attempt's bound; slower or non-2xx: retried with backoff for 24 h.",
        ),
        Key("poll_interval_seconds", 1.0, "How often the outbox is asked for due events."),
        Key("concurrency", 8, "Attempts in flight at once in this process."),
        Key("keep_days", 30, "The delivery log keeps settled events this long."),
    ),
)
LEAKS = Table(
    "leaks",
    "The leak-response listener: GitHub secret scanning and public revocation (docs/key-life.md).",
    (
        Key(
            "listen",
            "",
            'Its own "host:port", for GitHub to reach (behind TLS); "" = off.',
        ),
        Key(
            "github_keys_url",
            "https://api.github.com/meta/public_keys/secret_scanning",
            "GitHub's secret-scanning public keys, fetched here (kept an hour).",
        ),
        Key(
            "github_keys_file",
            "",
            "Or read from this file (relative to the config file) instead of the URL.",
        ),
        Key(
            "action",
            "revoke",
            'What a reported key of ours undergoes: "revoke" (for good) or "disable" '
            "(refused, restorable).",
        ),
        Key(
            "revoke_requests_per_minute",
            10,
            "POST /v1/credentials/revoke, per client address.",
        ),
    ),
)
CACHE = Table(
    "cache",
    "The verified-key caches of every worker.",
    (
        Key("ttl_seconds", 60.0, "How long a verified key is trusted without the store."),
        Key("negative_ttl_seconds", 5.0, "How long an unknown token is remembered as unknown."),
        Key("max_entries", 100_000, "Bound of each cache (positive and negative)."),
        Key(
            "invalidation_interval_seconds",
            1.0,
            "How often every worker follows revocations, edits and rolls; a change reaches "
            "every worker and node within this plus 0.5 s.",
        ),
    ),
)
ASSERTION = Table(
    "assertion",
    "How the identity assertions of routes with assertion = true are signed.",
    (
        Key(
            "key_file",
            "assertion-keys.json",
            "The signing keys, relative to the config file; made by `gateway init`.",
        ),
        Key("issuer", "api-key-gateway", "The `iss` claim."),
        Key("ttl_seconds", 60, "`exp` - `iat`: 5 to 3600."),
        Key("jwks_on_proxy", False, "/.well-known/jwks.json on the proxy listener too."),
    ),
)
ROUTES = Table(
    "routes",
    "One table per route; the longest matching prefix (at a segment boundary) wins.",
    (
        Key(
            "prefix",
            ABSENT,
            'Starts with "/", no trailing "/" (except the catch-all "/").',
            required=True,
        ),
        Key("upstream", ABSENT, "http(s)://host[:port][/base-path].", required=True),
        Key("strip_prefix", True, "Forward /echo/x as /x (false: as /echo/x)."),
        Key("auth", "required", "required, optional (no token = anonymous) or none."),
        Key("projects", [], "Project ids whose keys may use this route; empty = any."),
        Key(
            "timeout_seconds",
            30.0,
            "Bound on each wait on the upstream (connect, next bytes).",
        ),
        Key(
            "max_body_bytes",
            10 * 1024 * 1024,
            "Larger request bodies get 413 (with or without Content-Length).",
        ),
        Key(
            "rate_limits",
            [],
            "Held per key on this route, on top of the key's own, e.g. "
            "[{limit = 10, window_seconds = 1}]; anonymous requests are not limited.",
        ),
        Key(
            "resource",
            ABSENT,
            'What restricted keys need here, e.g. "billing": billing:read (GET, HEAD, OPTIONS) '
            "or billing:write; without one, restricted keys may not use the route.",
        ),
        Key(
            "assertion",
            False,
            "A signed X-Auth-Assertion (JWT) for the upstream, see [assertion].",
        ),
        Key("audience", "", "The assertion's `aud` claim (default: the upstream's origin)."),
        Key(
            "ca_file",
            "",
            "https upstreams: the CA certificates to verify it with (default: the system's).",
        ),
        Key("websocket", False, "WebSockets through this route."),
        Key(
            "websocket_idle_timeout_seconds",
            300.0,
            "A WebSocket quiet both ways this long is closed (1001).",
        ),
        Key(
            "upstream_keepalive_seconds",
            4.0,
            "An idle upstream connection is reused within this only: keep it below the "
            "upstream server's own (uvicorn, Node 5 s; gunicorn 2 s).",
        ),
        Key(
            "case_insensitive",
            False,
            "The upstream ignores case in paths: matched and forwarded lower-cased.",
        ),
        Key(
            "cost",
            1,
            "Credits an admitted request spends from its key's budget, if it has one "
            "(docs/plans-and-credits.md); 0: a free route.",
        ),
    ),
    array=True,
)

CREDITS = Table(
    "credits",
    "How gateways spend credits: blocks reserved from the store, spent locally.",
    (
        Key(
            "sync_interval_seconds",
            0.2,
            "How often a gateway reports credits spent and reserves ahead.",
        ),
        Key(
            "lease_seconds",
            10.0,
            "A reservation not renewed this long (its gateway died) gives back what that gateway "
            "cannot have spent.",
        ),
        Key(
            "journal_dir",
            "credits-journal",
            "A directory on this node's local disk where each gateway process journals the "
            "credits it spent, so that one killed with SIGKILL loses none: its node gives them "
            'back (docs/plans-and-credits.md). Relative to the config file; "" keeps the '
            "journal in memory only.",
        ),
    ),
)
TABLES: tuple[Table, ...] = (
    SERVER,
    ADMIN,
    LOG,
    METRICS,
    RATELIMIT,
    STORE,
    FORWARD_AUTH,
    KEYS,
    WEBHOOKS,
    LEAKS,
    CACHE,
    ASSERTION,
    CREDITS,
    ROUTES,
)
