"""POST /v1/keys/verify: every outcome its own code, the proxy's cache, rules and credits, for
a restricted key holding keys:verify; and the Python client, `gateway.client.verify`."""

from __future__ import annotations

import http.server
import threading
from typing import Any

import pytest

from core.plans import Credits
from core.policies import RateLimit
from gateway.client import VerifyError, verify
from tests.support import BOTH_STORES, BOUND, Gateway, wait_for

BACKENDS = BOTH_STORES


@pytest.fixture
def verifier(gateway: Gateway) -> str:
    return gateway.new_key(permissions=["keys:verify"]).secret_key


def ask(gateway: Gateway, verifier: str, secret: str, **extra: Any) -> dict[str, Any]:
    return verify(gateway.admin_url, verifier, secret, **extra).raw


def test_every_outcome_has_its_own_code(gateway: Gateway, verifier: str) -> None:
    gateway.clock.freeze()
    good = gateway.new_key(metadata={"customer": "c-9"}, credits=Credits(2))
    answer = ask(gateway, verifier, good.secret_key, cost=1)
    assert answer["valid"] is True and answer["code"] == "valid"
    assert answer["access_key"] == good.key.access_key
    assert answer["bearer"] == {"type": "user", "id": gateway.owner_id}
    assert answer["metadata"] == {"customer": "c-9"} and answer["credits_remaining"] == 1
    assert ask(gateway, verifier, good.secret_key, cost=1)["credits_remaining"] == 0
    spent = ask(gateway, verifier, good.secret_key, cost=1)
    assert (spent["valid"], spent["code"]) == (False, "usage_exceeded")
    assert ask(gateway, verifier, good.secret_key)["code"] == "valid"  # cost 0: only asks

    unknown = gateway.resources.secret_format.generate("live")
    assert ask(gateway, verifier, unknown)["code"] == "unknown_token"
    assert ask(gateway, verifier, "gws_live_nonsense")["code"] == "malformed_token"

    revoked = gateway.new_key()
    with gateway.admin() as admin:
        assert admin.delete(f"/v1/api-keys/{revoked.key.access_key}").status_code == 204
    wait_for(lambda: ask(gateway, verifier, revoked.secret_key)["code"] == "revoked", BOUND + 1)

    expiring = gateway.new_key(expires_at=gateway.clock() + 60)
    gateway.clock.advance(61)
    assert ask(gateway, verifier, expiring.secret_key)["code"] == "expired_token"

    disabled = gateway.new_key()
    with gateway.admin() as admin:
        admin.patch(f"/v1/api-keys/{disabled.key.access_key}", json={"disabled": True})
    assert ask(gateway, verifier, disabled.secret_key)["code"] == "key_disabled"

    limited = gateway.new_key(rate_limits=[RateLimit(1, 60)])
    assert ask(gateway, verifier, limited.secret_key)["code"] == "valid"
    refused = ask(gateway, verifier, limited.secret_key)
    assert refused["code"] == "rate_limited" and refused["retry_after"] == 60

    kept = gateway.new_key(allowed_ips=["10.0.0.0/8"])
    assert ask(gateway, verifier, kept.secret_key, ip="10.1.2.3")["code"] == "valid"
    assert ask(gateway, verifier, kept.secret_key, ip="192.0.2.1")["code"] == "ip_not_allowed"

    reader = gateway.new_key(permissions=["billing:read"])
    assert ask(gateway, verifier, reader.secret_key, resource="billing")["code"] == "valid"
    wrote = ask(gateway, verifier, reader.secret_key, resource="billing", method="POST")
    assert wrote["code"] == "insufficient_permissions"


def test_only_a_key_with_keys_verify_may_ask(gateway: Gateway) -> None:
    other = gateway.new_key(permissions=["billing:read"]).secret_key
    with pytest.raises(VerifyError) as refused:
        verify(gateway.admin_url, other, gateway.secret_key)
    assert refused.value.status == 403
    with gateway.admin() as admin:  # a manager's own key may
        answer = admin.post("/v1/keys/verify", json={"secret_key": gateway.secret_key})
    assert answer.json()["code"] == "valid"
    verifier = gateway.new_key(permissions=["keys:verify"]).secret_key
    with gateway.admin(verifier) as admin:  # and may do nothing else
        assert admin.get("/v1/api-keys").status_code == 403
        assert admin.post("/v1/keys/verify", json={"secret": "x"}).status_code == 400


class _Redirecting(http.server.BaseHTTPRequestHandler):
    """Answers every request with a redirect to ``sink``, and records what reached it."""

    sink = ""
    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:
        self.send_response(int(self.path.strip("/").split("/")[0]))
        self.send_header("Location", f"{self.sink}/v1/keys/verify")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_the_client_never_sends_its_credential_where_a_redirect_points(status: int) -> None:
    """A load balancer's redirect (http to https, another host) is not the admin API: the
    verifier's own secret stays with the URL it was given to."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    _Redirecting.sink = f"http://127.0.0.1:{server.server_address[1]}"
    _Redirecting.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(VerifyError) as refused:
            verify(f"{_Redirecting.sink}/{status}", "gws_rk_VERIFIER", "gws_live_ASKED")
    finally:
        server.shutdown()
        server.server_close()
    assert refused.value.status == status and "redirect" in str(refused.value)
    assert _Redirecting.seen == []


@pytest.mark.parametrize(
    ("method", "path", "body", "says"),
    [
        (
            "POST",
            "/v1/keys/verify",
            {"secret_key": "x", "resource": "/api/x"},
            "resource '/api/x' has the wrong form: write a route's resource, a lower-case name "
            "such as billing",
        ),
        (
            "POST",
            "/v1/keys/verify",
            {"secret_key": "x", "ip": "not-an-ip"},
            "ip 'not-an-ip' has the wrong form: write an IPv4 or IPv6 address such as 192.0.2.7",
        ),
        (
            "GET",
            "/v1/usage?from=2026-12-07T00:00:00Z&to=2026-12-07",
            None,
            "from '2026-12-07T00:00:00Z' has the wrong form: write a day such as 2026-12-01",
        ),
    ],
)
def test_a_refused_value_is_a_sentence_saying_what_to_write(
    gateway: Gateway, method: str, path: str, body: dict[str, Any] | None, says: str
) -> None:
    with gateway.admin() as admin:
        refused = admin.request(method, path, json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["message"] == says


def test_only_asking_says_how_many_credits_are_left(gateway: Gateway, verifier: str) -> None:
    """cost 0 asks without spending: the answer still says what is left (null would read as
    unlimited), before this process has reserved anything and after."""
    gateway.clock.freeze()
    new = gateway.new_key(credits=Credits(5))
    assert ask(gateway, verifier, new.secret_key)["credits_remaining"] == 5
    assert ask(gateway, verifier, new.secret_key, cost=2)["credits_remaining"] == 3
    assert ask(gateway, verifier, new.secret_key)["credits_remaining"] == 3
    assert ask(gateway, verifier, gateway.secret_key)["credits_remaining"] is None  # unlimited
