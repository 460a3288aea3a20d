"""GitHub's secret-scanning public keys, and the check of a report's signature against them.

GitHub signs each POST of found tokens with ECDSA (P-256, SHA-256) and names the key in
``Github-Public-Key-Identifier``; the signature (base64 of its DER encoding) is in
``Github-Public-Key-Signature``. The keys are published as JSON
(``{"public_keys": [{"key_identifier", "key": PEM, "is_current"}]}``) at ``[leaks]
github_keys_url``, or read from ``github_keys_file`` (the same JSON). They are kept an hour and
read again at once when a report names a key we do not have (a rotation); but never more than
once a minute, whoever asks (anyone can POST to the endpoint), and while they cannot be read
again, those had go on serving (GitHub rotates its keys seldom, and announces it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.lifeconfig import LeaksConfig

log = logging.getLogger("admin.leaks")

KEEP_SECONDS = 3600.0
RETRY_SECONDS = 60.0


class KeysUnavailable(Exception):
    """GitHub's public keys cannot be had now (fetch failed, file unreadable or malformed)."""


def parse(text: str) -> dict[str, ec.EllipticCurvePublicKey]:
    try:
        entries = json.loads(text)["public_keys"]
        keys = {}
        for entry in entries:
            key = serialization.load_pem_public_key(entry["key"].encode())
            if isinstance(key, ec.EllipticCurvePublicKey):
                keys[str(entry["key_identifier"])] = key
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeysUnavailable(f"the public keys are not GitHub's JSON ({exc})") from None
    return keys


class GitHubKeys:
    def __init__(self, config: LeaksConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._loaded_at: float | None = None
        self._tried_at: float | None = None
        self._problem: KeysUnavailable | None = None  # why the last reading failed
        self._loading = asyncio.Lock()  # one reading at a time

    async def _load(self) -> None:
        self._tried_at = self.clock()
        if self.config.github_keys_file:
            try:
                text = Path(self.config.github_keys_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise KeysUnavailable(f"{self.config.github_keys_file}: {exc.strerror}") from None
        else:
            import aiohttp  # only where the keys are fetched: not at every process's start

            timeout = aiohttp.ClientTimeout(total=10)
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(self.config.github_keys_url) as response,
                ):
                    if response.status != 200:
                        raise KeysUnavailable(
                            f"{self.config.github_keys_url} answered HTTP {response.status}"
                        )
                    text = await response.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise KeysUnavailable(f"{self.config.github_keys_url}: {exc!r}") from None
        self._keys = parse(text)
        self._loaded_at = self.clock()

    def _due(self) -> bool:
        return self._tried_at is None or self.clock() - self._tried_at >= RETRY_SECONDS

    async def key(self, identifier: str) -> ec.EllipticCurvePublicKey | None:
        """GitHub's key ``identifier``; raises KeysUnavailable only when there are none yet."""
        now = self.clock()
        stale = self._loaded_at is None or now - self._loaded_at >= KEEP_SECONDS
        if (stale or identifier not in self._keys) and self._due():
            async with self._loading:
                if self._due():  # not read meanwhile by a request that held the lock
                    try:
                        await self._load()
                        self._problem = None
                    except KeysUnavailable as exc:
                        self._problem = exc
                        if self._keys:
                            log.warning("%s; the keys read before go on serving", exc)
        if not self._keys and self._problem is not None:
            raise self._problem
        return self._keys.get(identifier)

    async def verify(self, identifier: str, signature: str, body: bytes) -> bool:
        """Whether ``body`` was signed by GitHub's key ``identifier``; raises KeysUnavailable."""
        if not identifier or not signature:
            return False
        key = await self.key(identifier)
        if key is None:
            return False
        try:
            key.verify(base64.b64decode(signature, validate=True), body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True
