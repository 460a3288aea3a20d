"""The leak-response listener (``[leaks] listen``, off by default): its own listener, since
GitHub must reach it from outside while the admin listener stays inside.

- ``POST /v1/github/secret-scanning``: GitHub's secret scanning partner endpoint. The body is
  ``[{"token", "type", "url", "source"}]``, signed (``admin.github_keys``); a wrong or missing
  signature is 401 and nothing is read further. Each token of ours is revoked (``admin.leaks``).
  The answer is the label list GitHub takes: ``[{"token_hash", "token_type", "label"}]``,
  ``true_positive`` for a live key of ours, ``false_positive`` for anything else (the hash, not
  the token, so no secret is written back).
- ``POST /v1/credentials/revoke``: anyone who finds one of our secrets may hand it in,
  ``{"credentials": [...]}`` (at most 1,000), rate limited per client address. Always 202: the
  answer never says whether a secret existed, not even by its time, since it is given before
  any lookup. Found keys are revoked just after (``Revocations``) and their owners told.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from admin import leaks
from admin.access import Invalid
from admin.github_keys import GitHubKeys, KeysUnavailable
from admin.http import EXCEPTION_HANDLERS, ApiError, RequestIds
from core.lifeconfig import LeaksConfig
from core.store import Database, StoreUnavailable
from core.tokens import SecretFormat

log = logging.getLogger("admin.leaks")

MAX_BODY_BYTES = 1024 * 1024
MAX_CLIENTS = 100_000  # addresses counted in one minute; past it, every new one is refused


class PerMinute:
    """Requests per client address in the current minute: fixed windows, bounded memory."""

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit, self.clock = limit, clock
        self._minute = -1
        self._counts: dict[str, int] = {}

    def allow(self, client: str) -> bool:
        minute = int(self.clock() // 60)
        if minute != self._minute:
            self._minute, self._counts = minute, {}
        count = self._counts.get(client, 0)
        if count >= self.limit or (count == 0 and len(self._counts) >= MAX_CLIENTS):
            return False
        self._counts[client] = count + 1
        return True


class Revocations:
    """The public endpoint's work, done after its 202: a secret found is revoked (a write), noise
    is not, and an answer that waited for that would tell them apart by its time (or by a 503
    when the store cannot write). Tried again while the store is unavailable, so a report is
    not lost to a busy moment; the tasks are held here until done."""

    RETRY_SECONDS = (1.0, 5.0, 30.0, 120.0)

    def __init__(self, db: Database, fmt: SecretFormat, action: str) -> None:
        self.db, self.fmt, self.action = db, fmt, action
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, reports: list[leaks.Report], client: str, now: float) -> None:
        task = asyncio.get_running_loop().create_task(self._run(reports, client, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, reports: list[leaks.Report], client: str, now: float) -> None:
        for wait in (0.0, *self.RETRY_SECONDS):
            await asyncio.sleep(wait)
            try:
                await leaks.handle(self.db, self.fmt, reports, "public", client, now, self.action)
                return
            except StoreUnavailable as exc:
                problem = exc
        log.error(
            "a revocation request from %s could not be carried out (%s): the keys among its %d "
            "credentials, if any, still work",
            client,
            problem,
            len(reports),
        )


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, {"type": "payload_too_large", "message": "at most 1 MiB"})
        chunks.append(chunk)
    return b"".join(chunks)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Invalid("the body is not valid JSON", "body") from None


def _text(entry: dict[str, Any], name: str) -> str | None:
    value = entry.get(name)
    return value[:2000] if isinstance(value, str) else None


def make_leaks_app(
    db: Database,
    secret_format: SecretFormat,
    config: LeaksConfig,
    clock: Callable[[], float] = time.time,
) -> RequestIds:
    github = GitHubKeys(config, clock)
    per_minute = PerMinute(config.revoke_requests_per_minute, clock)
    revocations = Revocations(db, secret_format, config.action)

    async def secret_scanning(request: Request) -> Response:
        raw = await _body(request)
        try:
            signed = await github.verify(
                request.headers.get("github-public-key-identifier", ""),
                request.headers.get("github-public-key-signature", ""),
                raw,
            )
        except KeysUnavailable as exc:
            raise ApiError(
                503,
                {"type": "keys_unavailable", "message": f"GitHub's public keys: {exc}"},
                {"Retry-After": "60"},
            ) from None
        if not signed:
            raise ApiError(
                401,
                {
                    "type": "invalid_signature",
                    "message": "the report is not signed by a GitHub secret-scanning key",
                },
            )
        found = _json(raw)
        if not isinstance(found, list) or not all(isinstance(e, dict) for e in found):
            raise Invalid("the body must be a list of {token, type, url, source}", "body")
        if len(found) > leaks.MAX_REPORTS:
            raise Invalid(f"at most {leaks.MAX_REPORTS} tokens per report", "body")
        reports = [
            leaks.Report(_text(e, "token") or "", _text(e, "url"), _text(e, "source"))
            for e in found
        ]
        client = request.client.host if request.client else None
        ours = await leaks.handle(
            db, secret_format, reports, "github", client, clock(), config.action
        )
        return JSONResponse(
            [
                {
                    "token_hash": _sha256(report.token),
                    "token_type": _text(entry, "type") or "",
                    "label": "true_positive" if mine else "false_positive",
                }
                for report, entry, mine in zip(reports, found, ours, strict=True)
            ]
        )

    async def revoke(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        if not per_minute.allow(client):
            raise ApiError(
                429,
                {"type": "rate_limited", "message": "too many revocation requests; wait a minute"},
                {"Retry-After": str(60 - int(clock()) % 60)},
            )
        body = _json(await _body(request))
        credentials = body.get("credentials") if isinstance(body, dict) else None
        if not isinstance(credentials, list) or not all(isinstance(c, str) for c in credentials):
            raise Invalid('the body must be {"credentials": ["secret", ...]}', "credentials")
        if len(credentials) > leaks.MAX_REPORTS:
            raise Invalid(f"at most {leaks.MAX_REPORTS} credentials per request", "credentials")
        reports = [leaks.Report(c, None, "revocation request") for c in credentials]
        revocations.submit(reports, client, clock())
        return JSONResponse(
            {"message": "Received. Every one of our secrets among them is revoked."}, 202
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v1/github/secret-scanning", secret_scanning, methods=["POST"]),
            Route("/v1/credentials/revoke", revoke, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    return RequestIds(app)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
