"""TOML configuration -> frozen dataclasses, with errors a person can act on.

Every problem stops start-up with one sentence naming the file, the key and the fix, e.g.
``gateway.toml, routes[2]: upstream 'htp://x' is not an http(s) URL``.
Config path resolution: ``--config``, else ``$GATEWAY_CONFIG``, else ``./gateway.toml``.
Which keys exist, with their defaults and meaning, is declared in ``core.config_keys``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core import lifeconfig
from core.config_keys import (
    ADMIN,
    ASSERTION,
    CACHE,
    CREDITS,
    FORWARD_AUTH,
    KEYS,
    LOG,
    METRICS,
    RATELIMIT,
    ROUTES,
    SERVER,
    STORE,
    TABLES,
)
from core.lifeconfig import LeaksConfig, WebhooksConfig
from core.policies import RESOURCE, PolicyError, RateLimit, rate_limits
from core.tokens import DEFAULT_PREFIX, PREFIX_PATTERN

AUTH_MODES = ("required", "optional", "none")


class ConfigError(Exception):
    """A configuration problem; its message is a sentence for the operator."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class TLSFiles:
    """A listener's certificate chain and private key (PEM), checked at start-up."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class Route:
    prefix: str
    upstream: str  # scheme://host[:port] with no trailing slash
    upstream_path: str = ""  # path of the upstream URL, prepended to what is forwarded
    strip_prefix: bool = True
    auth: str = "required"
    projects: frozenset[str] = frozenset()
    timeout_seconds: float = 30.0
    max_body_bytes: int = 10 * 1024 * 1024
    # Held per key on this route, on top of the key's own (core.policies); anonymous requests
    # (auth = "none", or "optional" without a key) are not limited.
    rate_limits: tuple[RateLimit, ...] = ()
    # What a restricted key needs here: RESOURCE:read to read (GET, HEAD, OPTIONS), RESOURCE:write
    # for the rest. A route without one is closed to restricted keys.
    resource: str | None = None
    # Sign the identity for the upstream (X-Auth-Assertion, gateway.assertions), for this
    # audience: the `aud` claim the upstream checks (default: the upstream's origin).
    assertion: bool = False
    audience: str = ""
    # An https upstream's certificate is checked against the system's CAs, or this file's.
    ca_file: str | None = None
    # WebSockets through this route (gateway.websocket), closed after this long without a
    # message either way.
    websocket: bool = False
    websocket_idle_timeout_seconds: float = 300.0
    # How long a kept-alive upstream connection may wait idle for the next request: below the
    # upstream server's own bound (uvicorn and Node close at 5 s, gunicorn at 2 s), or a
    # request sent as it closes meets the keep-alive race, which a POST cannot be retried out of.
    upstream_keepalive_seconds: float = 4.0
    # The upstream ignores case in paths: matched and forwarded lower-cased (gateway.routing).
    case_insensitive: bool = False
    # Credits an admitted request spends from its key's budget, if it has one
    # (docs/plans-and-credits.md); 0: a free route.
    cost: int = 1


@dataclass(frozen=True)
class AssertionConfig:
    """`[assertion]`: how the identity assertions of `assertion = true` routes are signed."""

    key_file: Path = Path("assertion-keys.json")  # core.assertion_keys; relative to the config
    issuer: str = "api-key-gateway"  # the `iss` claim
    ttl_seconds: int = 60  # `exp` - `iat`
    jwks_on_proxy: bool = False  # /.well-known/jwks.json on the proxy listener too


@dataclass(frozen=True)
class ForwardAuthConfig:
    """`[forward_auth]`: the check endpoint an existing proxy asks "may this request pass, and
    as whom?" (nginx auth_request, Caddy forward_auth, Traefik ForwardAuth, Envoy ext_authz)."""

    listen: Listen | None = None  # None: no forward-auth listener (keep it where only the proxy
    # reaches it: it believes the X-Forwarded-* / X-Original-* headers it is sent)
    path_prefix: str = ""  # Envoy's http_service path_prefix, taken off the path it checks
    rate_limited_status: int = 429  # nginx turns all but 401/403 into 500: 403 there
    # Whose headers say the original request (gateway.forward_auth): one of FORWARD_AUTH_SHAPES,
    # "" when the config names none (then no forward-auth endpoint can be made).
    shape: str = ""


# The proxies whose check requests the forward-auth endpoint reads (Caddy asks as Traefik does).
FORWARD_AUTH_SHAPES = ("nginx", "traefik", "envoy")


def forward_auth_shape_error(source: Path) -> str:
    """What a config that enables forward-auth without naming the proxy in front is told."""
    return (
        f'{source}, [forward_auth]: shape is required with a forward-auth endpoint: "nginx" '
        '(auth_request), "traefik" (Traefik ForwardAuth or Caddy forward_auth) or "envoy" '
        "(ext_authz); the endpoint believes only that proxy's headers"
    )


@dataclass(frozen=True)
class RateLimitConfig:
    """`[ratelimit]`: where the sliding logs live. ``local``: in the node (its workers share
    them, ``gateway.node_limits``); ``redis``: one shared log for every worker and node (one
    script per check)."""

    backend: str = "local"
    url: str = ""  # redis://host:port/db, for backend = "redis"
    fail: str = "open"  # Redis away: "open" lets requests through, "closed" refuses them (503)
    timeout_ms: int = 250  # how long a check may wait on Redis before the fail rule applies


@dataclass(frozen=True)
class CacheConfig:
    ttl_seconds: float = 60.0
    negative_ttl_seconds: float = 5.0
    max_entries: int = 100_000
    invalidation_interval_seconds: float = 1.0

    @property
    def revocation_bound_seconds(self) -> float:
        """How long a change to a key may take to reach every worker and node: one interval of
        the feed follower, plus 0.5 s for the query and the event loop's slack."""
        return self.invalidation_interval_seconds + 0.5


@dataclass(frozen=True)
class CreditsConfig:
    """How credits are reserved from the store (docs/plans-and-credits.md): every
    ``sync_interval_seconds`` a gateway reports what it spent and reserves ahead; a lease not
    renewed for ``lease_seconds`` (its gateway died) gives back what it cannot have spent.
    ``journal_dir``: where each process journals what it spent (``gateway.spend_journal``), so
    a process killed with SIGKILL loses nothing; None keeps the journal in memory only."""

    sync_interval_seconds: float = 0.2
    lease_seconds: float = 10.0
    journal_dir: Path | None = None


@dataclass(frozen=True)
class StoreConfig:
    """Where the keys live: a SQLite file (``path``, the embedded default) or a PostgreSQL
    database (``url``), exactly one of the two."""

    path: Path | None = Path("gateway.db")
    url: str | None = None
    busy_timeout_ms: int = 5000  # SQLite: how long a call waits on a lock
    # PostgreSQL: connections each process keeps open, and the most it opens (docs/fleet.md has
    # the table of connections per node); one more per node LISTENs.
    pool_min_size: int = 1
    pool_max_size: int = 4
    # PostgreSQL: a connection above pool_min_size idle this long is closed, so a node returns to
    # its figure at rest after a burst of lookups.
    pool_idle_seconds: float = 30.0
    # PostgreSQL: the longest a statement, or a transaction left idle, may last. It bounds how
    # late an event of the key feed can commit, which the followers rely on.
    statement_timeout_ms: int = 5000
    # PostgreSQL: where the LISTEN connection and the migrations go (session features a pooler in
    # transaction mode cannot carry); None: ``url`` itself.
    listen_url: str | None = None
    # PostgreSQL: ``url`` is a pooler in transaction mode (PgBouncer): no prepared statement kept
    # across transactions, settings per transaction instead of per session.
    transaction_pooler: bool = False

    @property
    def description(self) -> str:
        """The store for messages: its path, or its URL without a password."""
        if self.url is None:
            return str(self.path)
        return redact(self.url)

    def connections(self, workers: int) -> tuple[int, int]:
        """PostgreSQL connections a node of ``workers`` holds: at rest, and at the most. Each
        process has a pool (the parent of ``--workers N`` too, for the admin listener) and the
        node one listening connection (docs/fleet.md)."""
        processes = 1 if workers == 1 else workers + 1
        return processes * self.pool_min_size + 1, processes * self.pool_max_size + 1

    def pointing_at(self, target: str) -> StoreConfig:
        """The same settings for another store: a PostgreSQL URL or a SQLite path. Any other
        URL is refused by its scheme (``mysql://x`` is not taken for a file named ``mysql:/x``)."""
        # The config's listen_url and pooler name its own server: another store is reached
        # directly, at the URL given.
        direct = replace(self, listen_url=None, transaction_pooler=False)
        if is_postgres_url(target):
            return replace(direct, url=target, path=None)
        scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", target)
        if scheme is not None:
            raise ConfigError(
                f"{redact(target)!r}: the {scheme.group(1)}:// scheme is not supported; a store is "
                "a postgresql:// URL or a SQLite file path"
            )
        return replace(direct, path=Path(target), url=None)


def is_postgres_url(value: str) -> bool:
    return value.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Config:
    source: Path
    listen: Listen = Listen("127.0.0.1", 8080)
    workers: int = 1
    # Peers whose X-Forwarded-For/-Proto are believed (a TLS terminator on this host): none by
    # default, so no client can pose as another address or as HTTPS.
    trusted_proxies: tuple[str, ...] = ()
    # On SIGTERM, how long requests and streams in flight get to finish before the process exits.
    shutdown_timeout_seconds: int = 30
    # On SIGTERM, how long the listeners go on taking connections (and serving them) while
    # readiness answers 503 `draining`, so a load balancer polling it stops sending first
    # (Traefik's requestAcceptGraceTimeout); then they close and new connections are refused.
    accept_grace_seconds: float = 0.0
    # A request's line and headers must arrive whole within this long (408 otherwise).
    header_timeout_seconds: float = 10.0
    # Every other wait on a client is bounded too (60 s each by default, as nginx's
    # client_body_timeout and send_timeout): between two reads of a request body the app asked
    # for (408 before any response, else the connection is closed), between two writes a slow
    # reader accepted (closed), and a kept-alive connection idle between requests (closed).
    body_timeout_seconds: float = 60.0
    send_timeout_seconds: float = 60.0
    keepalive_timeout_seconds: float = 30.0
    # A path on the proxy listener answering like the admin listener's /readyz ("" = none), for a
    # load balancer that only sees the proxy port.
    health_path: str = ""
    # Where `serve` writes its process id, so `gateway reload` can find it (None: not written).
    pid_file: Path | None = None
    access_log: str = "stdout"  # [log] access: "stdout", "off" or a file path
    access_query: bool = False  # [log] access_query: the query string in the access log
    # [log] level: "debug", "info", "warning" or "error"; None when the file does not say (then
    # `serve --log-level`, default info). A reload applies the file's level when it names one.
    log_level: str | None = None
    metrics: bool = True  # [metrics] enabled: counts for /metrics on the admin listener
    # [metrics] per_project: requests counted per project too (one series per project in use)
    metrics_per_project: bool = False
    admin_listen: Listen | None = Listen("127.0.0.1", 8081)
    tls: TLSFiles | None = None  # [server] tls_cert_file/tls_key_file: the proxy speaks HTTPS
    admin_tls: TLSFiles | None = None  # [admin] the same for the admin listener
    store: StoreConfig = field(default_factory=StoreConfig)
    key_prefix: str = DEFAULT_PREFIX
    # [keys] accept_imported: secrets without our prefix and checksum (imported from another
    # gateway) are looked up by hash; off, they are refused before any lookup.
    accept_imported: bool = False
    cache: CacheConfig = field(default_factory=CacheConfig)
    ratelimit: RateLimitConfig = field(default_factory=RateLimitConfig)
    forward_auth: ForwardAuthConfig = field(default_factory=ForwardAuthConfig)
    assertion: AssertionConfig = field(default_factory=AssertionConfig)
    credits: CreditsConfig = field(default_factory=CreditsConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    leaks: LeaksConfig = field(default_factory=LeaksConfig)
    routes: tuple[Route, ...] = ()


def resolve_path(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get("GATEWAY_CONFIG") or "gateway.toml")


def load(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file; pass --config, set GATEWAY_CONFIG, or copy "
            "config.example.toml to gateway.toml"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: is not valid TOML ({exc})") from None
    return parse(data, path)


class _Section:
    """Reads one table, remembering which keys were used so unknown ones can be reported."""

    def __init__(self, source: Path, where: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}, {where}: must be a table")
        self.source, self.where, self.data = source, where, data

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}, {self.where}: {key} {message}")

    def get(self, key: str, kind: type[Any] | tuple[type[Any], ...], default: Any) -> Any:
        value = self.data.get(key, default)
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        # bool is an int in Python; a TOML `true` for a number is still a mistake.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
            raise self.fail(key, f"must be {_article(names)} {names}, not {value!r}")
        return value

    def number(self, key: str, default: float, minimum: float, integer: bool = False) -> Any:
        value = self.get(key, int if integer else (int, float), default)
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, not {value!r}")
        return value

    def check_unknown(self, known: set[str]) -> None:
        for key in self.data:
            if key not in known:
                raise ConfigError(
                    f"{self.source}, {self.where}: unknown key '{key}' "
                    f"(known keys: {', '.join(sorted(known))})"
                )


def _tuple(kind: type[Any] | tuple[type[Any], ...]) -> tuple[type[Any], ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _article(names: str) -> str:
    return "an" if names[0] in "aeiou" else "a"


def parse_listen(value: str, where: str) -> Listen:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{where}: listen {value!r} must be 'host:port', e.g. '127.0.0.1:8080'")
    return Listen(host, int(port))


def _route(source: Path, index: int, raw: object) -> Route:
    section = _Section(source, f"routes[{index}]", raw)
    section.check_unknown(ROUTES.names())
    if "prefix" not in section.data or "upstream" not in section.data:
        raise section.fail("prefix and upstream", "are required")
    prefix = section.get("prefix", str, None)
    if not prefix.startswith("/") or (prefix != "/" and prefix.endswith("/")):
        raise section.fail("prefix", f"{prefix!r} must start with '/' and not end with one")
    if any(seg in ("", ".", "..") for seg in prefix.split("/")[1:]) and prefix != "/":
        raise section.fail("prefix", f"{prefix!r} must not contain empty, '.' or '..' segments")
    if any(c in prefix for c in "%\\?#") or not prefix.isascii():
        raise section.fail("prefix", f"{prefix!r} must be a plain ASCII path without %, \\, ? or #")
    upstream = section.get("upstream", str, None)
    parts = urlsplit(upstream)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise section.fail("upstream", f"{upstream!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise section.fail("upstream", f"{upstream!r} must not have a query or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise section.fail("upstream", f"{upstream!r} has an invalid port") from None
    auth = section.get("auth", str, "required")
    if auth not in AUTH_MODES:
        raise section.fail("auth", f"must be one of {', '.join(AUTH_MODES)}, not {auth!r}")
    projects = section.get("projects", list, [])
    if not all(isinstance(p, str) and p for p in projects):
        raise section.fail("projects", "must be a list of project ids (strings)")
    return Route(
        prefix=prefix,
        upstream=f"{parts.scheme}://{parts.netloc}",
        upstream_path=parts.path.rstrip("/"),
        strip_prefix=section.get("strip_prefix", bool, True),
        auth=auth,
        projects=frozenset(projects),
        timeout_seconds=float(section.number("timeout_seconds", 30.0, 0.001)),
        max_body_bytes=section.number("max_body_bytes", 10 * 1024 * 1024, 0, integer=True),
        rate_limits=_rate_limits(section),
        resource=_resource(section),
        assertion=section.get("assertion", bool, False),
        audience=section.get("audience", str, "") or f"{parts.scheme}://{parts.netloc}",
        ca_file=_ca_file(section, parts.scheme),
        websocket=section.get("websocket", bool, False),
        websocket_idle_timeout_seconds=float(
            section.number("websocket_idle_timeout_seconds", 300.0, 0.1)
        ),
        upstream_keepalive_seconds=float(section.number("upstream_keepalive_seconds", 4.0, 0)),
        case_insensitive=section.get("case_insensitive", bool, False),
        cost=_cost(section),
    )


MAX_COST = 1_000_000


def _cost(section: _Section) -> int:
    cost: int = section.number("cost", 1, 0, integer=True)
    if cost > MAX_COST:
        raise section.fail("cost", f"must be at most {MAX_COST:,} credits, not {cost}")
    return cost


def _ca_file(section: _Section, scheme: str) -> str | None:
    value = section.get("ca_file", str, "")
    if not value:
        return None
    if scheme != "https":
        raise section.fail("ca_file", "is for https upstreams only")
    path = _relative(section.source, value)
    assert path is not None
    if not path.is_file():
        raise section.fail("ca_file", f"{str(path)!r} is not a readable file of CA certificates")
    return str(path)


def _resource(section: _Section) -> str | None:
    resource: str | None = section.get("resource", (str, type(None)), None)
    if resource is not None and RESOURCE.fullmatch(resource) is None:
        raise section.fail(
            "resource", f"{resource!r} must be a lowercase name such as 'billing' (a-z, 0-9, _, -)"
        )
    return resource


def _rate_limits(section: _Section) -> tuple[RateLimit, ...]:
    try:
        return rate_limits(section.get("rate_limits", list, []))
    except PolicyError as exc:
        raise section.fail("rate_limits", str(exc)) from None


def _forward_auth(section: _Section) -> ForwardAuthConfig:
    section.check_unknown(FORWARD_AUTH.names())
    listen = section.get("listen", str, "")
    shape = section.get("shape", str, "")
    if shape and shape not in FORWARD_AUTH_SHAPES:
        names = ", ".join(FORWARD_AUTH_SHAPES)
        raise section.fail("shape", f"must be one of {names}, not {shape!r}")
    if listen and not shape:
        raise ConfigError(forward_auth_shape_error(section.source))
    prefix = section.get("path_prefix", str, "")
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise section.fail("path_prefix", f"{prefix!r} must start with '/' and not end with one")
    if prefix and shape != "envoy":
        raise section.fail("path_prefix", 'is Envoy\'s ext_authz path_prefix: for shape = "envoy"')
    status = section.get("rate_limited_status", int, 429)
    if status not in (429, 403):
        raise section.fail("rate_limited_status", f"must be 429 or 403 (for nginx), not {status}")
    return ForwardAuthConfig(
        parse_listen(listen, f"{section.source}, [forward_auth]") if listen else None,
        prefix,
        status,
        shape,
    )


def _assertion(section: _Section) -> AssertionConfig:
    section.check_unknown(ASSERTION.names())
    issuer = section.get("issuer", str, "api-key-gateway")
    if not issuer:
        raise section.fail("issuer", "must not be empty: upstreams check the `iss` claim")
    ttl = section.number("ttl_seconds", 60, 5, integer=True)
    if ttl > 3600:
        raise section.fail("ttl_seconds", f"must be at most 3600 (an hour), not {ttl}")
    return AssertionConfig(
        key_file=_relative(section.source, section.get("key_file", str, "assertion-keys.json"))
        or section.source.parent / "assertion-keys.json",
        issuer=issuer,
        # An assertion is a bearer credential for its lifetime: minutes at most (RFC 7519 §4.1.4).
        ttl_seconds=ttl,
        jwks_on_proxy=section.get("jwks_on_proxy", bool, False),
    )


def _credits(section: _Section) -> CreditsConfig:
    section.check_unknown(CREDITS.names())
    interval = float(section.number("sync_interval_seconds", 0.2, 0.01))
    lease = float(section.number("lease_seconds", 10.0, 1.0))
    if lease < 3 * interval:
        raise section.fail(
            "lease_seconds",
            f"must be at least three sync intervals ({3 * interval:g}), not {lease:g}",
        )
    journal = _relative(section.source, section.get("journal_dir", str, "credits-journal"))
    return CreditsConfig(interval, lease, journal)


def _leaks(section: _Section) -> LeaksConfig:
    listen = section.get("listen", str, "")
    where = f"{section.source}, [leaks]"
    found = lifeconfig.leaks(section, parse_listen(listen, where) if listen else None)
    keys_file = _relative(section.source, found.github_keys_file)
    return replace(found, github_keys_file=str(keys_file) if keys_file else "")


def _ratelimit(section: _Section) -> RateLimitConfig:
    section.check_unknown(RATELIMIT.names())
    backend = section.get("backend", str, "local")
    if backend not in ("local", "redis"):
        raise section.fail("backend", f"must be local or redis, not {backend!r}")
    url = section.get("url", str, "")
    if backend == "redis" and not url.startswith(("redis://", "rediss://", "unix://")):
        raise section.fail("url", f"{url!r} is not a redis://host:port URL (backend = redis)")
    fail = section.get("fail", str, "open")
    if fail not in ("open", "closed"):
        raise section.fail("fail", f"must be open or closed, not {fail!r}")
    return RateLimitConfig(backend, url, fail, section.number("timeout_ms", 250, 1, integer=True))


def _relative(source: Path, value: str) -> Path | None:
    """A path from the config, relative to the config file; None for ""."""
    if not value:
        return None
    return Path(value) if Path(value).is_absolute() else source.parent / value


def _tls(section: _Section) -> TLSFiles | None:
    """Both files or neither; readable; a private key nobody else can read (an HTTPS key that
    other local users can read is no longer private)."""
    cert, key = section.get("tls_cert_file", str, ""), section.get("tls_key_file", str, "")
    if not cert and not key:
        return None
    if not cert or not key:
        raise section.fail("tls_cert_file and tls_key_file", "go together: give both or neither")
    paths = []
    for name, value in (("tls_cert_file", cert), ("tls_key_file", key)):
        path = Path(value) if Path(value).is_absolute() else section.source.parent / value
        try:
            mode = path.stat().st_mode
            path.open("rb").close()
        except OSError as exc:
            raise section.fail(name, f"{str(path)!r} cannot be read ({exc.strerror})") from None
        if name == "tls_key_file" and mode & 0o077:
            raise section.fail(
                name,
                f"{str(path)!r} can be read by other users (mode {mode & 0o777:04o}): "
                f"chmod 600 {path}",
            )
        paths.append(path)
    return TLSFiles(paths[0], paths[1])


def _store(store: _Section) -> StoreConfig:
    store.check_unknown(STORE.names())
    url = store.get("url", (str, type(None)), None)
    path: Path | None = None
    listen_url = store.get("listen_url", (str, type(None)), None)
    pooler = store.get("transaction_pooler", bool, False)
    if url is not None:
        if "path" in store.data:
            raise store.fail("path and url", "name two stores: keep exactly one of them")
        for name, value in (("url", url), ("listen_url", listen_url)):
            if value is not None and not _postgres_url(value):
                raise store.fail(name, f"{redact(value)!r} is not a postgresql://user@host/db URL")
        if pooler and listen_url is None:
            raise store.fail(
                "listen_url",
                "is needed with transaction_pooler = true: LISTEN and the migrations cannot go "
                "through a pooler in transaction mode; set it to the PostgreSQL server itself",
            )
    elif listen_url is not None or pooler:
        raise store.fail(
            "listen_url" if listen_url is not None else "transaction_pooler",
            "applies to a PostgreSQL store only: set url too, or remove it",
        )
    else:
        path = Path(store.get("path", str, "gateway.db"))
        if not path.is_absolute():
            path = store.source.parent / path  # relative to the config file, not the cwd
    minimum = store.number("pool_min_size", 1, 1, integer=True)
    maximum = store.number("pool_max_size", 4, 1, integer=True)
    if maximum < minimum:
        raise store.fail("pool_max_size", f"must be at least pool_min_size ({minimum})")
    return StoreConfig(
        path=path,
        url=url,
        busy_timeout_ms=store.number("busy_timeout_ms", 5000, 0, integer=True),
        pool_min_size=minimum,
        pool_max_size=maximum,
        pool_idle_seconds=store.number("pool_idle_seconds", 30.0, 0.1),
        statement_timeout_ms=store.number("statement_timeout_ms", 5000, 100, integer=True),
        listen_url=listen_url,
        transaction_pooler=pooler,
    )


def _postgres_url(url: str) -> bool:
    return is_postgres_url(url) and bool(urlsplit(url).hostname or "host=" in url)


def parse(data: Mapping[str, Any], source: Path) -> Config:
    top = _Section(source, "top level", data)
    top.check_unknown({table.name for table in TABLES})
    logs = _Section(source, "[log]", data.get("log", {}))
    logs.check_unknown(LOG.names())
    log_level = logs.get("level", (str, type(None)), None)
    if log_level is not None and log_level not in LOG_LEVELS:
        raise logs.fail("level", f"{log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    access = logs.get("access", str, "stdout") or "off"
    if access not in ("stdout", "off"):
        access = str(_relative(source, access))
    metrics = _Section(source, "[metrics]", data.get("metrics", {}))
    metrics.check_unknown(METRICS.names())

    server = _Section(source, "[server]", data.get("server", {}))
    server.check_unknown(SERVER.names())
    health_path = server.get("health_path", str, "")
    if health_path and (not health_path.startswith("/") or any(c in health_path for c in "?#%")):
        raise server.fail("health_path", f"{health_path!r} must be a plain path such as '/readyz'")
    listen = parse_listen(server.get("listen", str, "127.0.0.1:8080"), f"{source}, [server]")
    workers = server.number("workers", 1, 1, integer=True)
    trusted = server.get("trusted_proxies", list, [])
    for entry in trusted:
        try:
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            raise server.fail(
                "trusted_proxies", f"entry {entry!r} is not an IP address or network (10.0.0.0/8)"
            ) from None

    admin = _Section(source, "[admin]", data.get("admin", {}))
    admin.check_unknown(ADMIN.names())
    admin_value = admin.get("listen", str, "127.0.0.1:8081")
    admin_listen = parse_listen(admin_value, f"{source}, [admin]") if admin_value else None

    store_config = _store(_Section(source, "[store]", data.get("store", {})))

    keys = _Section(source, "[keys]", data.get("keys", {}))
    keys.check_unknown(KEYS.names())
    prefix = keys.get("prefix", str, DEFAULT_PREFIX)
    if PREFIX_PATTERN.fullmatch(prefix) is None:
        raise keys.fail("prefix", f"{prefix!r} must be 1-16 lowercase letters or digits")

    cache = _Section(source, "[cache]", data.get("cache", {}))
    cache.check_unknown(CACHE.names())
    cache_config = CacheConfig(
        ttl_seconds=float(cache.number("ttl_seconds", 60.0, 0.001)),
        negative_ttl_seconds=float(cache.number("negative_ttl_seconds", 5.0, 0.001)),
        max_entries=cache.number("max_entries", 100_000, 1, integer=True),
        invalidation_interval_seconds=float(
            cache.number("invalidation_interval_seconds", 1.0, 0.01)
        ),
    )

    raw_routes = data.get("routes", [])
    if not isinstance(raw_routes, list):
        raise ConfigError(f"{source}: routes must be an array of tables ([[routes]])")
    routes = tuple(_route(source, i, raw) for i, raw in enumerate(raw_routes))
    seen: set[str] = set()
    for i, route in enumerate(routes):
        if route.prefix in seen:
            raise ConfigError(f"{source}, routes[{i}]: prefix {route.prefix!r} is already routed")
        seen.add(route.prefix)

    return Config(
        source=source,
        listen=listen,
        workers=workers,
        trusted_proxies=tuple(trusted),
        tls=_tls(server),
        admin_tls=_tls(admin),
        shutdown_timeout_seconds=server.number("shutdown_timeout_seconds", 30, 1, integer=True),
        accept_grace_seconds=float(server.number("accept_grace_seconds", 0.0, 0)),
        header_timeout_seconds=float(server.number("header_timeout_seconds", 10.0, 0.1)),
        body_timeout_seconds=float(server.number("body_timeout_seconds", 60.0, 0.1)),
        send_timeout_seconds=float(server.number("send_timeout_seconds", 60.0, 0.1)),
        keepalive_timeout_seconds=float(server.number("keepalive_timeout_seconds", 30.0, 0.1)),
        health_path=health_path,
        pid_file=_relative(source, server.get("pid_file", str, "")),
        access_log=access,
        access_query=logs.get("access_query", bool, False),
        log_level=log_level,
        metrics=metrics.get("enabled", bool, True),
        metrics_per_project=metrics.get("per_project", bool, False),
        admin_listen=admin_listen,
        store=store_config,
        key_prefix=prefix,
        accept_imported=keys.get("accept_imported", bool, False),
        cache=cache_config,
        ratelimit=_ratelimit(_Section(source, "[ratelimit]", data.get("ratelimit", {}))),
        forward_auth=_forward_auth(
            _Section(source, "[forward_auth]", data.get("forward_auth", {}))
        ),
        assertion=_assertion(_Section(source, "[assertion]", data.get("assertion", {}))),
        credits=_credits(_Section(source, "[credits]", data.get("credits", {}))),
        webhooks=lifeconfig.webhooks(_Section(source, "[webhooks]", data.get("webhooks", {}))),
        leaks=_leaks(_Section(source, "[leaks]", data.get("leaks", {}))),
        routes=routes,
    )
