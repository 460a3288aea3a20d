"""A client of the admin API's key verification, for Python services that receive keys without
the proxy in front (a queue worker, a gRPC service):

    from gateway.client import verify

    answer = verify("http://127.0.0.1:8081", VERIFIER_SECRET, secret_from_message, cost=3)
    if not answer.valid:
        refuse(answer.code)  # "unknown_token", "revoked", "usage_exceeded", ...

``VERIFIER_SECRET`` is a restricted key holding the ``keys:verify`` permission. Standard library
only, so a service takes nothing else with it. The admin API answers 200 with a code for every
outcome; anything else (the verifier's own key refused, the store away) raises `VerifyError`.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib follows a redirect with every header it was given, X-Auth-Token included, to
    wherever it points (another host, plain http): the verifier's secret is for the admin API
    alone, so a redirect is an answer like any other non-200 (`VerifyError`)."""

    def redirect_request(self, *args: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class VerifyError(Exception):
    """The admin API did not answer the question: its status and what it said."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Verified:
    valid: bool
    code: str
    access_key: str | None
    project_id: str | None
    organization_id: str | None
    bearer: dict[str, str] | None
    plan: str | None
    metadata: dict[str, Any] | None
    credits_remaining: int | None
    rate_limit: dict[str, str] | None
    retry_after: int | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def _refusal(exc: urllib.error.HTTPError) -> str:
    if 300 <= exc.code < 400:
        where = exc.headers.get("Location", "elsewhere")
        return (
            f"the admin API answered with a redirect to {where}, which is not followed: give "
            "verify() the admin listener's own URL"
        )
    try:
        return str(json.loads(exc.read()).get("message", exc.reason))
    except ValueError:
        return str(exc.reason)


def verify(
    admin_url: str,
    credential: str,
    secret_key: str,
    *,
    resource: str | None = None,
    method: str = "GET",
    cost: int = 0,
    ip: str | None = None,
    timeout: float = 5.0,
) -> Verified:
    """Ask whether ``secret_key`` is good for ``method`` on ``resource`` and may spend ``cost``
    credits (spent when it is); ``credential`` is the verifier's own secret."""
    if not admin_url.startswith(("http://", "https://")):
        raise ValueError(f"{admin_url!r} is not the admin listener's http(s) URL")
    body: dict[str, Any] = {"secret_key": secret_key, "method": method, "cost": cost}
    if resource is not None:
        body["resource"] = resource
    if ip is not None:
        body["ip"] = ip
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        admin_url.rstrip("/") + "/v1/keys/verify",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Auth-Token": credential},
        method="POST",
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            found: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:  # its connection, closed
            raise VerifyError(exc.code, _refusal(exc)) from None
    return Verified(
        valid=bool(found.get("valid")),
        code=str(found.get("code")),
        access_key=found.get("access_key"),
        project_id=found.get("project_id"),
        organization_id=found.get("organization_id"),
        bearer=found.get("bearer"),
        plan=found.get("plan"),
        metadata=found.get("metadata"),
        credits_remaining=found.get("credits_remaining"),
        rate_limit=found.get("rate_limit"),
        retry_after=found.get("retry_after"),
        raw=found,
    )
