"""The config of what happens around a key: ``[webhooks]`` (delivery of key events) and
``[leaks]`` (the listener GitHub's secret scanning and finders of our secrets report to).
Read by ``core.config.parse``; the tables are checked like every other one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.config_keys import LEAKS, WEBHOOKS

if TYPE_CHECKING:
    from core.config import Listen, _Section

LEAK_ACTIONS = ("revoke", "disable")


@dataclass(frozen=True)
class WebhooksConfig:
    """`[webhooks]`: this process's share of delivering webhook events."""

    deliver: bool = True  # every node may deliver: the store's claims let one send each event
    timeout_seconds: float = 10.0  # one attempt's bound; a slower receiver is retried later
    poll_interval_seconds: float = 1.0  # how often the outbox is asked for due events
    concurrency: int = 8  # attempts in flight at once in this process
    keep_days: int = 30  # delivered and failed events stay in the delivery log this long


@dataclass(frozen=True)
class LeaksConfig:
    """`[leaks]`: the leak-response listener (off unless ``listen`` is set)."""

    listen: Listen | None = None
    # GitHub's published public keys: a URL (fetched and kept an hour) or a file of the same JSON.
    github_keys_url: str = "https://api.github.com/meta/public_keys/secret_scanning"
    github_keys_file: str = ""
    action: str = "revoke"  # what is done to a key of ours reported leaked (or "disable")
    # POST /v1/credentials/revoke: requests per client address and minute.
    revoke_requests_per_minute: int = 10


def webhooks(section: _Section) -> WebhooksConfig:
    section.check_unknown(WEBHOOKS.names())
    return WebhooksConfig(
        deliver=section.get("deliver", bool, True),
        timeout_seconds=float(section.number("timeout_seconds", 10.0, 0.1)),
        poll_interval_seconds=float(section.number("poll_interval_seconds", 1.0, 0.01)),
        concurrency=section.number("concurrency", 8, 1, integer=True),
        keep_days=section.number("keep_days", 30, 1, integer=True),
    )


def leaks(section: _Section, listen: Listen | None) -> LeaksConfig:
    section.check_unknown(LEAKS.names())
    action = section.get("action", str, "revoke")
    if action not in LEAK_ACTIONS:
        raise section.fail("action", f'must be "revoke" or "disable", not {action!r}')
    url = section.get("github_keys_url", str, LeaksConfig.github_keys_url)
    if not url.startswith(("https://", "http://")):
        raise section.fail("github_keys_url", f"{url!r} is not an http(s) URL")
    return LeaksConfig(
        listen=listen,
        github_keys_url=url,
        github_keys_file=section.get("github_keys_file", str, ""),
        action=action,
        revoke_requests_per_minute=section.number(
            "revoke_requests_per_minute", 10, 1, integer=True
        ),
    )
