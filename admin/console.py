"""The admin web console: static files served at ``/`` of the admin listener.

Plain HTML, CSS and JavaScript shipped inside the package (no build step, no CDN, works offline);
the page calls the same ``/v1`` API as everyone else, so the service layer still decides who may
do what. The secret key lives in the tab's ``sessionStorage`` and travels only in ``X-Auth-Token``
(never a URL or a cookie, so there is nothing for CSRF to ride on).

Every console response carries strict headers: a Content-Security-Policy that allows only our
own script and style files (no ``unsafe-inline``, no ``eval``, no third party), so even a markup
injection could not run script; ``X-Frame-Options: DENY`` and ``frame-ancestors 'none'`` against
clickjacking; ``Referrer-Policy: no-referrer``; ``nosniff``; ``no-store``.
"""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/console.js": ("console.js", "text/javascript; charset=utf-8"),
    "/plans.js": ("plans.js", "text/javascript; charset=utf-8"),
    "/keylife.js": ("keylife.js", "text/javascript; charset=utf-8"),
    "/console.css": ("console.css", "text/css; charset=utf-8"),
}


def _load() -> dict[str, tuple[bytes, str]]:
    folder = files("admin") / "console"
    return {path: ((folder / name).read_bytes(), kind) for path, (name, kind) in ASSETS.items()}


def routes() -> list[Route]:
    loaded = _load()

    async def asset(request: Request) -> Response:
        body, media_type = loaded[request.url.path]
        return Response(body, media_type=media_type, headers=SECURITY_HEADERS)

    return [Route(path, asset, methods=["GET", "HEAD"]) for path in loaded]
