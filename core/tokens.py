"""The key format: generate access and secret keys, check a secret offline, hash it.

An API key is a pair, as in Scaleway IAM:

- the **access key** ``GWK`` + 17 characters of ``[A-Z0-9]``: a public identifier, safe to log;
- the **secret key** ``<prefix>_<mode>_<32 base62><6 base62 of CRC32>``: 32 base62 characters carry
  190 bits of randomness; the CRC32 over everything before it lets us reject typos and scanner noise
  without touching the store (the GitHub token scheme). A *restricted* key (one that carries
  permissions, ``core.policies``) says so in its secret, ``<prefix>_rk_<mode>_...`` (Stripe's
  ``rk_``), so a leaked one shows what it is; the checksum rule is the same.

Secrets have far more entropy than any password, so a single SHA-256 is the right hash at rest: a
slow password hash would cost milliseconds per uncached request and buy nothing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ACCESS_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ACCESS_KEY_PREFIX = "GWK"
ACCESS_KEY_LENGTH = 20
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
MODES = ("live", "test")
DEFAULT_PREFIX = "gws"
SECRET_PREFIX_SHOWN = 12  # characters of a secret kept for recognition (`secret_prefix`)

PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{0,15}")
ACCESS_KEY_PATTERN = re.compile(r"GWK[A-Z0-9]{17}")


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def checksum(body: str) -> str:
    """The 6 base62 characters of the CRC32 over ``body`` (62**6 > 2**32, so it always fits)."""
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def generate_access_key() -> str:
    return ACCESS_KEY_PREFIX + "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(17))


RESTRICTED = "rk"  # the mark of a restricted key's secret: gws_rk_live_...


def generate_secret_key(
    prefix: str = DEFAULT_PREFIX, mode: str = "live", restricted: bool = False
) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    kind = f"{RESTRICTED}_" if restricted else ""
    body = f"{prefix}_{kind}{mode}_" + "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    return body + checksum(body)


def is_access_key(value: str) -> bool:
    return ACCESS_KEY_PATTERN.fullmatch(value) is not None


class SecretFormat:
    """Checks secrets of one prefix offline: shape first (one regex), then the checksum.

    Built once from the configured prefix so the hot path pays for one ``fullmatch`` and one CRC32.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if PREFIX_PATTERN.fullmatch(prefix) is None:
            raise ValueError(
                f"key prefix {prefix!r} must be 1-16 lowercase letters or digits, "
                "starting with a letter"
            )
        self.prefix = prefix
        # How a secret of ours starts: what marks an Authorization header as carrying one.
        self.marks = tuple(
            f"{prefix}_{kind}{mode}_".encode() for kind in ("", f"{RESTRICTED}_") for mode in MODES
        )
        self.length = len(prefix) + 1 + 4 + 1 + RANDOM_LENGTH + CHECKSUM_LENGTH
        self.lengths = frozenset((self.length, self.length + len(RESTRICTED) + 1))
        tail = RANDOM_LENGTH + CHECKSUM_LENGTH
        self._pattern = re.compile(rf"{prefix}_(?:{RESTRICTED}_)?(live|test)_[0-9A-Za-z]{{{tail}}}")

    def mode_of(self, token: str) -> str | None:
        """The secret's mode (``live``/``test``) if it is well formed and its checksum holds."""
        if len(token) not in self.lengths:
            return None
        match = self._pattern.fullmatch(token)
        if match is None:
            return None
        split = len(token) - CHECKSUM_LENGTH
        if checksum(token[:split]) != token[split:]:
            return None
        return match.group(1)

    def is_restricted(self, token: str) -> bool:
        """Whether a (well-formed) secret is a restricted key's."""
        return token.startswith(f"{RESTRICTED}_", len(self.prefix) + 1)

    def generate(self, mode: str = "live", restricted: bool = False) -> str:
        return generate_secret_key(self.prefix, mode, restricted)


def hash_secret(secret_key: str) -> bytes:
    """The SHA-256 digest stored at rest and used as the cache key."""
    return hashlib.sha256(secret_key.encode("ascii")).digest()
