"""Usage for billing: per UTC day and per key, bearer or plan, the requests allowed, denied
(401/403) and rate limited (429, usage_exceeded included), and the credits spent, from the
counts every gateway writes (``gateway.usage``), as JSON or CSV. Managers only: it covers the
whole organization. Revoked keys' usage is kept (billing outlives a key); a key's plan is the
one it (or its bearer) is on now."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from typing import Any

from admin.access import Actor, Invalid, Unprocessable, organization_of, require_manager
from core.store import Database
from core.store import usage as store_usage

GROUPS = ("key", "bearer", "plan")
FORMATS = ("json", "csv")
COLUMNS = ("day", "group", "allowed", "denied", "rate_limited", "credits_spent")
MAX_DAYS = 366


def _day(name: str, text: str) -> date:
    if not isinstance(text, str) or len(text) != 10:
        raise Invalid(f"{name} must be a day such as 2026-12-01", name)
    try:
        return date.fromisoformat(text)
    except ValueError:  # well-formed, but no such day (2026-02-30): 422, as the schema allows it
        raise Unprocessable(f"{name} {text!r} is not a day of the calendar", name) from None


async def export(
    db: Database, actor: Actor, start: str, end: str, group_by: str = "key", fmt: str = "json"
) -> tuple[str, str]:
    """The body and its media type, for the days ``start`` to ``end`` (both included)."""
    require_manager(actor, "exporting usage")
    first, last = _day("from", start), _day("to", end)
    if group_by not in GROUPS:
        raise Invalid(f"group_by must be one of {', '.join(GROUPS)}", "group_by")
    if fmt not in FORMATS:
        raise Invalid("format must be json or csv", "format")
    if last < first:
        raise Unprocessable("to must not be before from", "to")
    if (last - first).days >= MAX_DAYS:
        raise Unprocessable(f"at most {MAX_DAYS} days at a time", "to")
    epoch = datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()
    first_hour = int(epoch // 3600)
    end_hour = first_hour + ((last - first).days + 1) * 24
    org_id = await organization_of(db, actor)
    totals: dict[tuple[str, str], list[int]] = {}
    for hour, access_key, bearer, plan_id, counts in await store_usage.export_rows(
        db, org_id, first_hour, end_hour
    ):
        day = datetime.fromtimestamp(hour * 3600, UTC).date().isoformat()
        group = {"key": access_key, "bearer": bearer, "plan": plan_id or "(none)"}[group_by]
        sums = totals.setdefault((day, group), [0, 0, 0, 0])
        for i in range(4):
            sums[i] += counts[i]
    rows: list[dict[str, Any]] = [
        dict(zip(COLUMNS, (day, group, *sums), strict=True))
        for (day, group), sums in sorted(totals.items())
    ]
    if fmt == "json":
        body = {"from": first.isoformat(), "to": last.isoformat(), "group_by": group_by}
        return json.dumps({**body, "rows": rows}), "application/json"
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue(), "text/csv; charset=utf-8"
