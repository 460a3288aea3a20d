"""FastAPI: what a handler needs of the caller's key, as a dependency beside the middleware.

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from core.identity import Identity
    from gateway.dependency import require_key
    from gateway.middleware import APIKeyMiddleware

    api = FastAPI()

    @api.post("/invoices")
    async def create(key: Annotated[Identity, Depends(require_key("billing", "write"))]) -> ...:
        ...

    app = APIKeyMiddleware(api, config="gateway.toml")

The middleware verifies the key and holds the route's rules; the dependency says what one
handler needs beyond them: a key at all (on an ``optional`` route or an ``exempt`` path the
middleware lets a request without one through), and for a restricted key a permission on a
resource (``RESOURCE:read``, which ``RESOURCE:write`` includes, or ``RESOURCE:write``; an
unrestricted key holds every permission, as on the proxy). A refusal is the gateway's JSON error
(401 ``missing_token`` with ``WWW-Authenticate``, 403 ``insufficient_permissions``) when the
middleware wraps the FastAPI app itself (it registers the handler); otherwise FastAPI's own
``{"detail": ...}`` with the same status.

The key's carriers are the app's OpenAPI security schemes (``X-Auth-Token``, and
``Authorization: Bearer``, either one), so a client generated from the document sends one. They
document only: the middleware has removed both headers before the app sees the request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from core.identity import Identity
from core.policies import RESOURCE, missing_permission
from gateway.middleware import KeyRefused

TOKEN = APIKeyHeader(
    name="X-Auth-Token",
    scheme_name="APIKey",
    description="The API key's secret (`<prefix>_live_...`), verified by the gateway.",
    auto_error=False,
)
BEARER = HTTPBearer(
    scheme_name="APIKeyBearer",
    description="The same secret as `Authorization: Bearer <secret>`.",
    auto_error=False,
)
_NOT_SET = object()


def require_key(
    resource: str | None = None,
    permission: str | None = None,
    *,
    state_key: str = "api_key",
) -> Callable[..., Awaitable[Identity]]:
    """A dependency that returns the caller's verified identity, or refuses: 401 without a key,
    403 when a restricted key lacks ``resource:permission``."""
    if (resource is None) != (permission is None):
        raise ValueError("require_key: give resource and permission together, or neither")
    if resource is not None and RESOURCE.fullmatch(resource) is None:
        raise ValueError(f"require_key: resource {resource!r} must be a name such as 'billing'")
    if permission not in (None, "read", "write"):
        raise ValueError(f"require_key: permission must be 'read' or 'write', not {permission!r}")
    method = "GET" if permission == "read" else "POST"  # what core.policies asks of each

    async def dependency(
        request: Request,
        token: Annotated[str | None, Security(TOKEN)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
    ) -> Identity:
        del token, bearer  # in the document only: the middleware took both headers out
        identity: Any = getattr(request.state, state_key, _NOT_SET)
        if identity is _NOT_SET:
            raise RuntimeError(
                "require_key: no verified key in request.state; wrap the app in "
                "gateway.middleware.APIKeyMiddleware"
            )
        if identity is None:
            raise KeyRefused(401, "missing_token")
        assert isinstance(identity, Identity)
        if resource is not None and identity.permissions is not None:
            missing = missing_permission(identity.permissions, resource, method)
            if missing is not None:
                message = f"This restricted key lacks the permission {missing!r} this needs."
                raise KeyRefused(403, "insufficient_permissions", message)
        return identity

    return dependency
