"""The files ``gateway keys import`` reads, each made into the same candidates: where in the file,
the secret's SHA-256, who bears it and in which project, or why the entry cannot be taken.

- **kong**: a deck dump (``deck gateway dump``, YAML or JSON): every consumer's
  ``keyauth_credentials``; the secrets are in clear, hashed here; a ``ttl`` (seconds left) makes
  the key expire that long after the import. Each consumer becomes an application named after
  its ``username`` (else its ``custom_id``).
- **unkey**: Unkey's keys as JSON (a list, or ``{"keys": [...]}``), each with its ``hash`` (the
  SHA-256 of the key, hex or base64), ``start`` (its first characters), ``name``, ``ownerId`` or
  ``externalId`` (the application it becomes), ``expires`` (milliseconds since the epoch, or
  RFC 3339).
- **csv**: a header, then one key a row: ``secret`` (in clear) or ``sha256`` (hex), ``bearer``
  (``user:<email or id>`` or ``application:<name or id>``), ``project`` (name or id; empty: the
  default), and optionally ``description`` and ``expires_at`` (RFC 3339).
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any

from admin.fields import checked_time, parse_time

FORMATS = ("kong", "unkey", "csv")
# Characters of a secret in clear kept for recognition (its `secret_prefix`): 4, but never more
# than an eighth of it (half of an 8-character secret would leave a search the proxy answers).
SHOWN = 4


class FormatError(Exception):
    """The file as a whole is not of the format named (one sentence saying why)."""


@dataclass(frozen=True)
class Candidate:
    ref: str  # where in the file, for the report: "row 3", "consumers[1].keyauth_credentials[0]"
    secret_hash: bytes | None = None
    shown: str = ""  # the first characters of the secret, when known
    bearer: tuple[str, str] | None = None  # ("user" | "application", name, email or id)
    project: str | None = None  # name or id; None: the default
    description: str = ""
    expires_at: float | None = None
    expires_in: float | None = None  # seconds left from the import (Kong's ttl), if no expires_at
    refused: str | None = None  # why it cannot be taken, found while reading the file

    def __repr__(self) -> str:  # no hash in a repr that could reach a log
        return f"Candidate({self.ref!r}, bearer={self.bearer!r}, refused={self.refused!r})"


def _from_secret(ref: str, secret: Any, **rest: Any) -> Candidate:
    if not isinstance(secret, str) or not secret.strip():
        return Candidate(ref, refused="no secret")
    if not secret.isascii() or not 8 <= len(secret) <= 256:
        return Candidate(ref, refused="the secret must be 8 to 256 ASCII characters")
    digest = hashlib.sha256(secret.encode("ascii")).digest()
    return Candidate(ref, digest, secret[: min(SHOWN, len(secret) // 8)], **rest)


def _from_hash(ref: str, value: Any, **rest: Any) -> Candidate:
    """A SHA-256 given as 64 hex digits or as base64 (Unkey's)."""
    if not isinstance(value, str):
        return Candidate(ref, refused="no hash")
    try:
        if len(value) == 64:
            digest = bytes.fromhex(value)
        else:
            digest = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        digest = b""
    if len(digest) != 32:
        return Candidate(ref, refused="the hash is not a SHA-256 (64 hex digits or base64)")
    return Candidate(ref, digest, **rest)


def _time(value: Any) -> float | None:
    """An expiry as the API reads one (RFC 3339, with its zone), or Unkey's milliseconds; raises
    ValueError for what no RFC 3339 time could show back."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return checked_time(float(value) / 1000.0)  # Unkey's milliseconds
    if isinstance(value, str):
        return parse_time(value)
    raise ValueError(value)


def kong(text: str) -> list[Candidate]:
    try:
        data = json.loads(text)
    except ValueError:
        import yaml  # deck's default output; only imports read it

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise FormatError(f"neither JSON nor YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("consumers", []), list):
        raise FormatError("not a deck dump: no consumers list at its top")
    found = []
    for i, consumer in enumerate(data.get("consumers") or []):
        if not isinstance(consumer, dict):
            continue
        name = consumer.get("username") or consumer.get("custom_id")
        for j, credential in enumerate(consumer.get("keyauth_credentials") or []):
            ref = f"consumers[{i}].keyauth_credentials[{j}]"
            if not isinstance(credential, dict):
                found.append(Candidate(ref, refused="not a credential"))
            elif not isinstance(name, str) or not name:
                found.append(Candidate(ref, refused="its consumer has no username or custom_id"))
            elif not _is_ttl(ttl := credential.get("ttl")):
                found.append(Candidate(ref, refused="ttl is not a number of seconds"))
            else:
                found.append(
                    _from_secret(
                        ref,
                        credential.get("key"),
                        bearer=("application", name),
                        description=f"imported from Kong (consumer {name})",
                        expires_in=None if ttl is None else float(ttl),
                    )
                )
    return found


def _is_ttl(value: Any) -> bool:
    """Kong's ``ttl`` of a credential: none (it never expires), or the seconds it had left when
    the Admin API was read (which deck dumps)."""
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def unkey(text: str) -> list[Candidate]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise FormatError(f"not JSON ({exc})") from None
    keys = data.get("keys") if isinstance(data, dict) else data
    if not isinstance(keys, list):
        raise FormatError('not an Unkey export: a list of keys, or {"keys": [...]}')
    found = []
    for i, key in enumerate(keys):
        ref = f"keys[{i}]" + (f" ({key['id']})" if isinstance(key, dict) and "id" in key else "")
        if not isinstance(key, dict):
            found.append(Candidate(ref, refused="not a key"))
            continue
        identity: dict[str, Any] = key["identity"] if isinstance(key.get("identity"), dict) else {}
        owner = key.get("ownerId") or key.get("externalId") or identity.get("externalId")
        try:
            expires = _time(key.get("expires"))
        except (ValueError, OverflowError, OSError):
            found.append(Candidate(ref, refused="expires is not a time"))
            continue
        found.append(
            _from_hash(
                ref,
                key.get("hash"),
                shown=str(key.get("start") or "")[:16],
                bearer=("application", owner) if isinstance(owner, str) and owner else None,
                description=str(key.get("name") or "imported from Unkey")[:200],
                expires_at=expires,
            )
        )
    return found


def csv_rows(text: str) -> list[Candidate]:
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or ())
    if not columns & {"secret", "sha256"} or "bearer" not in columns:
        raise FormatError("the header must name secret or sha256, and bearer (and project)")
    found = []
    for n, row in enumerate(reader, start=2):
        ref = f"row {n}"
        bearer_text = (row.get("bearer") or "").strip()
        kind, _, who = bearer_text.partition(":")
        if kind not in ("user", "application") or not who:
            found.append(
                Candidate(ref, refused="bearer must be user:<email or id> or application:<name>")
            )
            continue
        try:
            expires = _time((row.get("expires_at") or "").strip())
        except (ValueError, OverflowError, OSError):
            found.append(Candidate(ref, refused="expires_at is not an RFC 3339 time"))
            continue
        rest: dict[str, Any] = {
            "bearer": (kind, who.strip()),
            "project": (row.get("project") or "").strip() or None,
            "description": (row.get("description") or "imported from CSV")[:200],
            "expires_at": expires,
        }
        if (row.get("secret") or "").strip():
            found.append(_from_secret(ref, row["secret"].strip(), **rest))
        else:
            found.append(_from_hash(ref, (row.get("sha256") or "").strip().lower(), **rest))
    return found


READERS = {"kong": kong, "unkey": unkey, "csv": csv_rows}
