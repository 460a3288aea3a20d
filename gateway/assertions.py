"""Signed identity for upstreams: the ``X-Auth-Assertion`` JWT of `assertion = true` routes.

The identity headers are trusted on faith: anything that reaches an upstream directly can forge
them. An assertion is the same identity signed by the gateway (ES256, RFC 7515/7519), which an
upstream verifies with the gateway's public keys, served as a JWKS (RFC 7517) at
``/.well-known/jwks.json``. Claims:

- ``iss``: `[assertion] issuer`; ``aud``: the route's `audience` (default: its upstream's origin).
  An upstream must check both, and ``aud`` above all: without it, an assertion meant for one
  upstream could be replayed to another by whoever received it.
- ``sub``: the bearer's id; ``bearer_type``, ``organization_id``, ``project_id``, ``access_key``,
  ``mode``: as the identity headers say them; ``meta``: the key's metadata merged over its
  plan's (``X-Auth-Key-Metadata``), ``{}`` when it has none.
- ``iat``, ``exp`` = ``iat`` + `[assertion] ttl_seconds` (default 60).
- ``jti``: a random id the gateway makes when it signs (never the client's X-Request-ID, which
  a client could choose to collide with another's).

Signing costs ~75 µs (76 µs signed, 0.4 µs reused, in one process), some 40% of a proxied
request's CPU. So an assertion is reused for the same
identity on the same route until ``REUSE_FRACTION`` of its life has gone (an upstream always gets
one valid for at least a quarter of ``ttl_seconds``): ``jti`` names the assertion, not the
request (X-Request-ID does that). A changed identity (an edit: the verifier's new ``Identity``
differs) or a new signing key gets a new assertion at once; a revoked key gets no assertion at
all, since it never passes the gate.

The keys come from the key file (``core.assertion_keys``), re-read when it changes: at a reload,
every housekeeping round, and for each JWKS request.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from core.assertion_keys import KeyFileError, SigningKey, b64url, load, public_keys, signing_key
from core.config import Config, Route
from core.errors import new_request_id
from core.identity import Identity

log = logging.getLogger("gateway.assertions")

HEADER = b"x-auth-assertion"
REUSE_FRACTION = 0.75
MAX_ENTRIES = 100_000  # identities x routes held; past it the cache starts afresh


class Signed(NamedTuple):
    identity: Identity  # what it says: a key whose identity changed gets a new one
    token: str
    renew_at: float


class Assertions:
    def __init__(self, config: Config, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.keys: tuple[SigningKey, ...] = ()
        self.signer: SigningKey | None = None
        self._header = ""  # the signer's JOSE header, encoded once per key
        self._stamp: tuple[int, int, int] | None = None  # the key file as last read
        self._failure: str | None = None  # logged once until the file changes
        self._signed: dict[tuple[str, str], Signed] = {}
        self.configure(config)

    def configure(self, config: Config) -> None:
        """At start and at a reload: where the keys are, and what a claim says."""
        settings = config.assertion
        self.path = settings.key_file
        self.issuer = settings.issuer
        self.ttl = settings.ttl_seconds
        self.needed = any(route.assertion for route in config.routes)
        self._signed.clear()
        self.refresh()

    def refresh(self) -> None:
        """Read the key file again if it has changed (one stat when it has not). A file that
        cannot be read keeps the keys held; with none, routes that sign answer 503."""
        try:
            info = os.stat(self.path)
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._stamp:
            return
        try:
            keys = load(self.path)
        except KeyFileError as exc:
            if self.needed and str(exc) != self._failure:
                log.error("cannot sign identity assertions with new keys: %s", exc)
            self._failure = str(exc)
            return
        self._stamp, self._failure, self.keys = stamp, None, keys
        signer, before = signing_key(keys), self.signer
        self.signer = signer
        if (signer and signer.kid) != (before and before.kid):
            self._signed.clear()
            if signer is not None:
                header = {"alg": "ES256", "typ": "JWT", "kid": signer.kid}
                self._header = b64url(json.dumps(header, separators=(",", ":")).encode())
                # `serve` says which key signs once at start-up; a change is said here (once
                # per process), and only where a route signs.
                if before is not None and self.needed:
                    log.info("identity assertions are now signed with key %s", signer.kid)

    def jwks(self) -> bytes:
        self.refresh()
        keys = public_keys(self.keys, self.clock(), self.ttl)
        return json.dumps({"keys": keys}).encode()

    def sign(self, identity: Identity, route: Route) -> str | None:
        """The assertion for this identity on this route: the one held, or a new one. None when
        there is no key to sign with."""
        now = self.clock()
        cache_key = (identity.access_key, route.prefix)
        held = self._signed.get(cache_key)
        if (
            held is not None
            and now < held.renew_at
            and (held.identity is identity or held.identity == identity)
        ):
            return held.token
        signer = self.signer
        if signer is None:
            return None
        issued = int(now)
        claims = {
            "iss": self.issuer,
            "aud": route.audience,
            "sub": identity.bearer_id,
            "bearer_type": identity.bearer_type,
            "organization_id": identity.organization_id,
            "project_id": identity.project_id,
            "access_key": identity.access_key,
            "mode": identity.mode,
            "meta": identity.metadata,
            "iat": issued,
            "exp": issued + self.ttl,
            "jti": new_request_id(),  # made here: never the client's X-Request-ID
        }
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{self._header}.{payload}"
        der = signer.private_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)  # JWS wants r || s, 32 bytes each (RFC 7518 §3.4)
        token = f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        if len(self._signed) >= MAX_ENTRIES:
            self._signed.clear()
        self._signed[cache_key] = Signed(identity, token, issued + self.ttl * REUSE_FRACTION)
        return token

    def trim(self) -> None:
        """Housekeeping: forget assertions due for renewal, and notice a rotated key file."""
        now = self.clock()
        for cache_key in [k for k, held in self._signed.items() if now >= held.renew_at]:
            del self._signed[cache_key]
        self.refresh()
