"""SQL for leak reports: which key, when, who reported it and where it was found. Kept after the
key is revoked, so the console can say where a revoked key leaked."""

from __future__ import annotations

from dataclasses import dataclass

from core.store.database import Database, Writer


@dataclass(frozen=True)
class Leak:
    id: int | None
    access_key: str
    organization_id: str
    reported_at: float
    reporter: str  # github | public
    url: str | None
    source: str | None


async def record(w: Writer, leak: Leak) -> None:
    await w.execute(
        "INSERT INTO key_leaks (access_key, organization_id, reported_at, reporter, url, source) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            leak.access_key,
            leak.organization_id,
            leak.reported_at,
            leak.reporter,
            leak.url,
            leak.source,
        ),
    )


async def list_of(db: Database, org_id: str, limit: int = 100) -> list[Leak]:
    rows = await db.fetchall(
        "SELECT id, access_key, organization_id, reported_at, reporter, url, source "
        "FROM key_leaks WHERE organization_id = ? ORDER BY id DESC LIMIT ?",
        (org_id, limit),
    )
    return [Leak(*r) for r in rows]


async def last_of(db: Database, access_key: str) -> Leak | None:
    """The latest report of a key, if it was ever reported leaked."""
    row = await db.fetchone(
        "SELECT id, access_key, organization_id, reported_at, reporter, url, source "
        "FROM key_leaks WHERE access_key = ? ORDER BY id DESC LIMIT 1",
        (access_key,),
    )
    return Leak(*row) if row else None
