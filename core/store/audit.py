"""SQL for the audit log: append-only (triggers refuse UPDATE and DELETE)."""

from __future__ import annotations

from dataclasses import dataclass

from core.store.database import Database, Writer


@dataclass(frozen=True)
class AuditEvent:
    created_at: float
    organization_id: str | None
    actor_type: str  # user | application | cli
    actor_id: str | None
    actor_access_key: str | None
    action: str  # api_key.create, user.delete, ...
    target_type: str | None
    target_id: str | None
    source_ip: str | None
    outcome: str  # success | denied
    detail: str | None = None
    id: int | None = None


_COLUMNS = (
    "created_at, organization_id, actor_type, actor_id, actor_access_key, action, "
    "target_type, target_id, source_ip, outcome, detail"
)


async def record(w: Writer, e: AuditEvent) -> None:
    await w.execute(
        f"INSERT INTO audit_events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.created_at,
            e.organization_id,
            e.actor_type,
            e.actor_id,
            e.actor_access_key,
            e.action,
            e.target_type,
            e.target_id,
            e.source_ip,
            e.outcome,
            e.detail,
        ),
    )


@dataclass(frozen=True)
class AuditFilter:
    organization_id: str
    actor_id: str | None = None
    access_key: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None
    page: int = 1
    page_size: int = 50


async def search(db: Database, f: AuditFilter) -> tuple[list[AuditEvent], int]:
    where, params = ["(organization_id = ? OR organization_id IS NULL)"], [f.organization_id]
    if f.actor_id is not None:
        where.append("actor_id = ?")
        params.append(f.actor_id)
    if f.access_key is not None:
        where.append("(actor_access_key = ? OR (target_type = 'api_key' AND target_id = ?))")
        params += [f.access_key, f.access_key]
    if f.action is not None:
        where.append("action = ?")
        params.append(f.action)
    if f.since is not None:
        where.append("created_at >= ?")
        params.append(f.since)  # type: ignore[arg-type]
    if f.until is not None:
        where.append("created_at < ?")
        params.append(f.until)  # type: ignore[arg-type]
    clause = " AND ".join(where)
    total = await db.fetchone(f"SELECT count(*) FROM audit_events WHERE {clause}", params)
    rows = await db.fetchall(
        f"SELECT {_COLUMNS}, id FROM audit_events WHERE {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
        [*params, f.page_size, (f.page - 1) * f.page_size],
    )
    return [AuditEvent(*r) for r in rows], int(total[0]) if total else 0
