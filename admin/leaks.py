"""What is done to a key of ours reported leaked: by GitHub's secret scanning (``admin.leaks_app``)
or by anyone through the public revocation endpoint.

A report is checked offline first (our prefix, our checksum: no store lookup for noise, and never
a false positive), then looked up by its hash in one query. Each key found is put out of use at
once (``[leaks] action``: revoked for good, or disabled: refused, kept, restorable), in one
transaction with: the ``key.leaked`` webhook event (where it leaked) before its ``key.revoked``
(or ``key.updated`` and ``key.disabled``), a
``key_leaks`` row (the console shows it), and the audit events, the URL in their detail. Every
gateway refuses the key within the revocation bound, through the key feed as for any revocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from admin.access import Actor, record
from core.store import Database
from core.store import keys as store_keys
from core.store import leaks as store_leaks
from core.store import webhooks as store_webhooks
from core.store.leaks import Leak
from core.tokens import SecretFormat, hash_secret

MAX_REPORTS = 1000  # tokens in one report or one revocation request


@dataclass(frozen=True)
class Report:
    token: str
    url: str | None = None
    source: str | None = None


async def handle(
    db: Database,
    fmt: SecretFormat,
    reports: Sequence[Report],
    reporter: str,
    ip: str | None,
    now: float,
    action: str = "revoke",
) -> list[bool]:
    """For each report, whether it was one of our keys (now revoked, or disabled when
    ``action`` is "disable"). ``reporter``: github or public, as the audit log and the leak
    records name it."""
    digests: list[bytes | None] = []
    for report in reports:
        ours = fmt.mode_of(report.token) is not None
        digests.append(hash_secret(report.token) if ours else None)
    wanted = [d for d in dict.fromkeys(digests) if d is not None]
    found = await store_keys.lookup_many(db, wanted) if wanted else {}
    actor = Actor(kind=reporter, ip=ip)
    revoked: set[str] = set()
    for digest, report in zip(digests, reports, strict=True):
        row = found.get(digest) if digest is not None else None
        if row is not None and row.access_key not in revoked:
            revoked.add(row.access_key)
            await _put_out(db, actor, row.access_key, report, reporter, now, action)
    return [d is not None and d in found for d in digests]


async def _put_out(
    db: Database,
    actor: Actor,
    access_key: str,
    report: Report,
    reporter: str,
    now: float,
    action: str,
) -> None:
    where = report.url or "an unnamed place"
    async with db.transaction() as w:
        key = await store_keys.get(w, access_key)
        if key is None:  # revoked meanwhile
            return
        leak = {"reporter": reporter, "url": report.url, "source": report.source}
        await store_webhooks.key_event(w, "key.leaked", key, now, leak=leak)
        if action == "disable":
            await store_keys.update(
                w, access_key, {"disabled": True}, now, reason="leaked", leak=leak
            )
        else:
            await store_keys.delete(w, access_key, now, reason="leaked", leak=leak)
        await store_leaks.record(
            w,
            Leak(None, access_key, key.organization_id, now, reporter, report.url, report.source),
        )
        detail = f"reported leaked by {reporter} at {where}"
        if report.source:
            detail += f" ({report.source})"
        await record(w, actor, key.organization_id, "api_key.leaked", "api_key", access_key, detail)
        done = "api_key.disable" if action == "disable" else "api_key.delete"
        await record(w, actor, key.organization_id, done, "api_key", access_key, "leaked")
