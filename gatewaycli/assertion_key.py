"""`gateway assertion-key rotate | list`, and the first key `gateway init` makes.

The key file is ``[assertion] key_file`` (``core.assertion_keys``). These commands never print a
private key: only ids and times. A running gateway reads the file again within a housekeeping
round (``gateway.housekeeping.ROUND_SECONDS``) or at once on `gateway reload`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from admin.serialize import rfc3339
from core import assertion_keys
from core.config import Config


def first_key(cfg: Config, now: float) -> tuple[dict[str, Any], str]:
    """`gateway init`: the key file's first key, made when there is no file."""
    path = cfg.assertion.key_file
    made = assertion_keys.create(path, now)
    if made is None:
        return {"key_file": str(path), "created": False}, f"assertion keys      {path} (kept)"
    data = {"key_file": str(path), "created": True, "kid": made.kid}
    return data, f"assertion keys      {path} (created, mode 0600; signing key {made.kid})"


def rotate(cfg: Config, now: float) -> tuple[dict[str, Any], str]:
    # Here, not at the top: every CLI command imports this module, and the data plane's import
    # costs ~130 ms of start-up that only this command needs.
    from gateway.housekeeping import ROUND_SECONDS

    settings = cfg.assertion
    rotation = assertion_keys.rotate(settings.key_file, now, settings.ttl_seconds)
    retired = [
        {"kid": key.kid, "published_until": rfc3339(key.published_until(settings.ttl_seconds))}
        for key in rotation.retired
    ]
    data = {
        "key_file": str(settings.key_file),
        "kid": rotation.new.kid,
        "retired": retired,
        "dropped": list(rotation.dropped),
    }
    lines = [
        f"New signing key {rotation.new.kid} in {settings.key_file}.",
        f"Running gateways sign with it within {ROUND_SECONDS:g} s (at once after "
        "`gateway reload`); upstreams fetch it from /.well-known/jwks.json.",
    ]
    lines += [
        f"Retired {item['kid']}: still in the JWKS until {item['published_until']}, "
        "when the last assertion it signed has expired."
        for item in retired
    ]
    lines += [f"Dropped {kid}: no assertion it signed is still valid." for kid in rotation.dropped]
    return data, "\n".join(lines)


def listing(cfg: Config, now: float) -> tuple[dict[str, Any], str]:
    settings = cfg.assertion
    keys = assertion_keys.load(settings.key_file)
    signer = assertion_keys.signing_key(keys)
    rows = []
    for key in sorted(keys, key=lambda key: key.created_at, reverse=True):
        until = key.published_until(settings.ttl_seconds)
        state = "signing" if key is signer else "retired" if until is not None else "unused"
        if until is not None and now >= until:
            state = "expired"
        rows.append(
            {
                "kid": key.kid,
                "state": state,
                "created_at": rfc3339(key.created_at),
                "published_until": rfc3339(until) if until is not None else None,
            }
        )
    text = "\n".join(
        f"{row['kid']}  {row['state']:<8} created {row['created_at']}"
        + (f", published until {row['published_until']}" if row["published_until"] else "")
        for row in rows
    )
    return {"key_file": str(settings.key_file), "keys": rows}, text


def cmd_assertion_key(args: argparse.Namespace, cfg: Config) -> tuple[dict[str, Any], str]:
    now = time.time()
    return rotate(cfg, now) if args.action == "rotate" else listing(cfg, now)
