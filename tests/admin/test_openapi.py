"""schemathesis against /v1/openapi.json, every check, positive and negative data: no 5xx, every
response matches its schema, what the schema allows is accepted and what it forbids is refused.

Bounded (a few examples per operation) so `make test` stays fast; the owner key signs every call,
so the generated requests reach the handlers instead of stopping at 401. Positive data may also be
answered 422: a well-formed value the API cannot act on now (an expiry already past), which no
schema can express; 400 stays a failure there.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from admin.openapi import document
from tests.support import Gateway

# The document the API serves (test_document_is_served checks they are the same). Loaded from
# the function rather than over HTTP: schemathesis 4's fixture-based loader does not run under
# pytest 9 (it reads a private pytest attribute).
CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"mode": "all"},
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
            }
        },
    }
)
schema = schemathesis.openapi.from_dict(document(), config=CONFIG)


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("SCHEMATHESIS_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_admin_api_matches_its_schema(case: Any, module_gateway: Gateway) -> None:
    case.call_and_validate(
        base_url=module_gateway.admin_url, headers={"X-Auth-Token": module_gateway.secret_key}
    )


def test_document_is_served(module_gateway: Gateway) -> None:
    import httpx

    served = httpx.get(module_gateway.admin_url + "/v1/openapi.json").json()
    assert served == document()
    assert served["openapi"] == "3.1.0"
    paths = set(served["paths"])
    for expected in (
        "/v1/api-keys",
        "/v1/api-keys/{access_key}",
        "/v1/api-keys/{access_key}/roll",
        "/v1/projects/{id}",
        "/v1/users",
        "/v1/applications/{id}",
        "/v1/whoami",
        "/v1/audit-events",
    ):
        assert expected in paths
