"""The keys that sign identity assertions (ES256, RFC 7518 §3.4), kept in one file.

The file (``[assertion] key_file``) is JSON: ``{"keys": [{"kid", "created_at", "retired_at",
"private_key"}]}`` with each private key as PKCS#8 PEM. It is written by `gateway init` (when it is
missing) and `gateway assertion-key rotate`, always whole (a new file renamed over the old one, so
a gateway reading it never sees half of it), with mode 0600 from its creation: a key other local
users can read no longer proves anything. It is read, never written, by the gateway processes.

The newest key that is not retired signs. A rotation retires the signing key and adds a new one;
the retired key stays published (``public_keys``) until the last assertion it may have signed has
expired: ``retired_at`` + the assertion lifetime + ``PUBLISH_SLACK_SECONDS`` (running gateways
notice a rotation within a housekeeping round, and clocks differ). Past that it is dropped from the
file at the next rotation.

``kid`` is the key's RFC 7638 thumbprint, so the same key has the same id everywhere.

One file serves one gateway or several: nodes over one PostgreSQL store sign with the same keys
when they are given the same file (copied like a TLS key), and any node's JWKS then verifies any
node's assertions.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PUBLISH_SLACK_SECONDS = 60.0
JWKS_PATH = "/.well-known/jwks.json"  # a convention, not an RFC's: where verifiers look


class KeyFileError(Exception):
    """The key file cannot be used; the message is a sentence naming the file and the fix."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    created_at: float
    retired_at: float | None
    private_key: ec.EllipticCurvePrivateKey

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        }

    def published_until(self, lifetime: float) -> float | None:
        """When this key leaves the JWKS (None: it signs, or may, and stays)."""
        if self.retired_at is None:
            return None
        return self.retired_at + lifetime + PUBLISH_SLACK_SECONDS


def thumbprint(key: ec.EllipticCurvePrivateKey) -> str:
    """RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace."""
    numbers = key.public_key().public_numbers()
    members = {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("ascii")
    return b64url(hashlib.sha256(canonical).digest())


def new_key(now: float) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    return SigningKey(thumbprint(private), now, None, private)


def signing_key(keys: tuple[SigningKey, ...]) -> SigningKey | None:
    """The key that signs: the newest one not retired."""
    active = [key for key in keys if key.retired_at is None]
    return max(active, key=lambda key: key.created_at) if active else None


def public_keys(keys: tuple[SigningKey, ...], now: float, lifetime: float) -> list[dict[str, str]]:
    """The JWKS ``keys``: the signing key and every retired one still verifying assertions."""
    return [
        key.public_jwk()
        for key in sorted(keys, key=lambda key: key.created_at, reverse=True)
        if (until := key.published_until(lifetime)) is None or now < until
    ]


def load(path: Path) -> tuple[SigningKey, ...]:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: no assertion key file; create it with `gateway init` or "
            "`gateway assertion-key rotate`"
        ) from None
    except OSError as exc:
        message = f"{path}: the assertion key file cannot be read ({exc.strerror})"
        raise KeyFileError(message) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path}: the assertion key file can be read by other users "
            f"(mode {mode & 0o777:04o}): chmod 600 {path}"
        )
    try:
        entries = json.loads(text)["keys"]
        keys = tuple(_entry(entry) for entry in entries)
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(
            f"{path}: not an assertion key file written by `gateway assertion-key rotate` ({exc})"
        ) from None
    return keys


def _entry(entry: dict[str, Any]) -> SigningKey:
    private = serialization.load_pem_private_key(entry["private_key"].encode("ascii"), None)
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise ValueError("a key is not a P-256 EC private key")
    retired = entry["retired_at"]
    return SigningKey(
        thumbprint(private),
        float(entry["created_at"]),
        None if retired is None else float(retired),
        private,
    )


def save(path: Path, keys: tuple[SigningKey, ...]) -> None:
    """The whole file at once: written beside it with mode 0600, flushed, renamed over it."""
    entries = [
        {
            "kid": key.kid,
            "created_at": key.created_at,
            "retired_at": key.retired_at,
            "private_key": key.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii"),
        }
        for key in keys
    ]
    data = json.dumps({"keys": entries}, indent=2).encode("utf-8")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        message = f"{path}: cannot write the assertion key file ({exc.strerror})"
        raise KeyFileError(message) from None


def create(path: Path, now: float) -> SigningKey | None:
    """`gateway init`: a first key when there is no file; None when there is one already."""
    if path.exists():
        return None
    key = new_key(now)
    save(path, (key,))
    return key


@dataclass(frozen=True)
class Rotation:
    new: SigningKey
    retired: tuple[SigningKey, ...]  # retired by this rotation (still published for a while)
    dropped: tuple[str, ...]  # kids no longer published, removed from the file


def rotate(path: Path, now: float, lifetime: float) -> Rotation:
    """A new signing key; the old one is retired and stays published until its last assertion
    has expired (``lifetime`` is `[assertion] ttl_seconds`)."""
    keys = load(path) if path.exists() else ()
    kept, retired, dropped = [], [], []
    for key in keys:
        until = key.published_until(lifetime)
        if until is not None and now >= until:
            dropped.append(key.kid)
        elif key.retired_at is None:
            retired.append(SigningKey(key.kid, key.created_at, now, key.private_key))
        else:
            kept.append(key)
    key = new_key(now)
    save(path, (key, *retired, *kept))
    return Rotation(key, tuple(retired), tuple(dropped))
