"""The OpenAPI 3.1 document of the admin API, served at ``/v1/openapi.json``.

Request bodies and query parameters come from their declarations in ``admin.fields`` (the ones
the API validates with); response shapes are written here. schemathesis holds the two to each
other in ``make test``, both ways: every response validates against this document, data it allows
is accepted and data it forbids is refused.
"""

from __future__ import annotations

from typing import Any

from admin import fields
from admin.fields import Body, Field
from core.verification import CODES

Schema = dict[str, Any]

NULLABLE_STRING: Schema = {"type": ["string", "null"]}
TIME: Schema = {"type": "string", "format": "date-time"}
NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
UUID: Schema = {"type": "string"}
PERMISSION_SETS: Schema = fields.PERMISSION_SET_NAMES.schema()


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


KEY = obj(
    {
        "access_key": {"type": "string", "pattern": "^GWK[A-Z0-9]{17}$"},
        "description": fields.DESCRIPTION.schema(),
        "bearer_type": {"type": "string", "enum": ["user", "application"]},
        "user_id": NULLABLE_STRING,
        "application_id": NULLABLE_STRING,
        "organization_id": UUID,
        "default_project_id": UUID,
        "mode": fields.MODE.schema(),
        "created_at": TIME,
        "updated_at": TIME,
        "expires_at": NULLABLE_TIME,
        "last_used_at": NULLABLE_TIME,
        "creation_ip": NULLABLE_STRING,
        "secret_prefix": {"type": "string"},
        "rate_limits": {"type": "array", "items": fields.RATE_LIMIT_SCHEMA},
        "allowed_ips": {"type": "array", "items": {"type": "string"}},
        "permissions": {
            "type": ["array", "null"],
            "items": {"type": "string"},
            "description": "a restricted key's permissions; null: the key is not restricted",
        },
        "disabled": {"type": "boolean"},
        "metadata": {"type": "object"},
        "plan_id": NULLABLE_STRING,
        "credits": fields.KEY_CREDITS.schema(),
        "imported": {
            "type": "boolean",
            "description": "imported from another gateway, its old secret kept until rolled",
        },
    }
)
BUDGET = {
    "plan_id": NULLABLE_STRING,
    "rate_limits": {"type": "array", "items": fields.RATE_LIMIT_SCHEMA},
    "credits": fields.KEY_CREDITS.schema(),
}
PLAN = obj(
    {
        "id": {"type": "string"},
        "organization_id": {"type": "string"},
        "name": {"type": "string"},
        "rate_limits": {"type": "array", "items": fields.RATE_LIMIT_SCHEMA},
        "credits": fields.PLAN_CREDITS.schema(),
        "metadata": {"type": "object"},
        "created_at": TIME,
        "updated_at": TIME,
    }
)
BUCKET = obj(
    {
        "start": TIME,
        "allowed": {"type": "integer", "minimum": 0},
        "denied": {"type": "integer", "minimum": 0, "description": "answered 401 or 403"},
        "rate_limited": {"type": "integer", "minimum": 0, "description": "answered 429"},
    }
)
USAGE = obj(
    {
        "access_key": {"type": "string"},
        "hourly": {"type": "array", "items": BUCKET, "minItems": 24, "maxItems": 24},
        "daily": {"type": "array", "items": BUCKET, "minItems": 30, "maxItems": 30},
    }
)
KEY_WITH_SECRET = {"allOf": [ref("ApiKey"), obj({"secret_key": {"type": "string"}})]}
STAMPS = {"created_at": TIME, "updated_at": TIME}
PROJECT = obj({"id": UUID, "organization_id": UUID, "name": {"type": "string"}, **STAMPS})
USER = obj(
    {
        "id": UUID,
        "organization_id": UUID,
        "email": {"type": "string"},
        "permission_sets": PERMISSION_SETS,
        "is_owner": {"type": "boolean"},
        **STAMPS,
        **BUDGET,
    }
)
APPLICATION = obj(
    {
        "id": UUID,
        "organization_id": UUID,
        "name": {"type": "string"},
        "permission_sets": PERMISSION_SETS,
        **STAMPS,
        **BUDGET,
    }
)
USAGE_ROW = obj(
    {
        "day": {"type": "string"},
        "group": {"type": "string"},
        "allowed": {"type": "integer"},
        "denied": {"type": "integer"},
        "rate_limited": {"type": "integer"},
        "credits_spent": {"type": "integer"},
    }
)
USAGE_EXPORT = obj(
    {
        "from": {"type": "string"},
        "to": {"type": "string"},
        "group_by": {"type": "string"},
        "rows": {"type": "array", "items": USAGE_ROW},
    }
)
VERIFY_ANSWER = obj(
    {
        "valid": {"type": "boolean"},
        "code": {"type": "string", "enum": list(CODES)},
        "access_key": NULLABLE_STRING,
        "project_id": NULLABLE_STRING,
        "organization_id": NULLABLE_STRING,
        "bearer": {"type": ["object", "null"]},
        "plan": NULLABLE_STRING,
        "metadata": {"type": ["object", "null"]},
        "credits_remaining": {"type": ["integer", "null"]},
        "rate_limit": {"type": ["object", "null"]},
        "retry_after": {"type": ["integer", "null"]},
    }
)
PARTY = obj({"type": NULLABLE_STRING, "id": NULLABLE_STRING})
AUDIT = obj(
    {
        "id": {"type": "integer"},
        "created_at": TIME,
        "organization_id": NULLABLE_STRING,
        "actor": obj(
            {"type": {"type": "string"}, "id": NULLABLE_STRING, "access_key": NULLABLE_STRING}
        ),
        "action": {"type": "string"},
        "target": PARTY,
        "source_ip": NULLABLE_STRING,
        "outcome": {"type": "string", "enum": ["success", "denied"]},
        "detail": NULLABLE_STRING,
    }
)
ERROR = obj(
    {
        "type": {"type": "string"},
        "message": {"type": "string"},
        "request_id": {"type": "string"},
        "reason": {"type": "string"},
        "details": {
            "type": "array",
            "items": obj({"field": {"type": "string"}, "message": {"type": "string"}}),
        },
    },
    required=["type", "message", "request_id"],
)
WHOAMI = obj(
    {
        "bearer_type": {"type": "string", "enum": ["user", "application"]},
        "bearer_id": UUID,
        "name": {"type": "string", "description": "the user's email or the application's name"},
        "organization_id": UUID,
        "permission_sets": PERMISSION_SETS,
        "is_owner": {"type": "boolean"},
        "is_manager": {
            "type": "boolean",
            "description": "may manage every key, user and application of the organization",
        },
        "access_key": {"type": "string"},
    }
)


WEBHOOK = obj(
    {
        "id": UUID,
        "organization_id": UUID,
        "url": {"type": "string"},
        "events": fields.WEBHOOK_EVENTS.schema(),
        "description": {"type": "string"},
        **STAMPS,
    }
)
WEBHOOK_WITH_SECRET = {
    "allOf": [
        ref("Webhook"),
        obj({"secret": {"type": "string", "description": "whsec_...: shown once"}}),
    ]
}
DELIVERY = obj(
    {
        "id": {"type": "integer"},
        "message_id": {"type": "string"},
        "event_type": {"type": "string"},
        "access_key": NULLABLE_STRING,
        "created_at": TIME,
        "status": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        "attempts": {"type": "integer", "minimum": 0},
        "next_attempt_at": NULLABLE_TIME,
        "last_status_code": {"type": ["integer", "null"]},
        "last_error": NULLABLE_STRING,
        "last_attempt_at": NULLABLE_TIME,
        "delivered_at": NULLABLE_TIME,
    }
)
LEAK = obj(
    {
        "id": {"type": "integer"},
        "access_key": {"type": "string"},
        "reported_at": TIME,
        "reporter": {"type": "string", "enum": ["github", "public"]},
        "url": NULLABLE_STRING,
        "source": NULLABLE_STRING,
    }
)
POLICY = obj(
    {
        "organization_id": UUID,
        "max_key_lifetime_days": {"type": ["integer", "null"]},
        "disable_unused_after_days": {"type": ["integer", "null"]},
        "updated_at": NULLABLE_TIME,
    }
)
VIOLATIONS = obj(
    {
        "violations": {
            "type": "array",
            "items": obj(
                {
                    "access_key": {"type": "string"},
                    "reason": {
                        "type": "string",
                        "enum": ["no_expiry", "lifetime_too_long", "unused"],
                    },
                    "detail": {"type": "string"},
                }
            ),
        }
    }
)


def listing(name: str, item: str) -> Schema:
    return obj({name: {"type": "array", "items": ref(item)}, "total_count": {"type": "integer"}})


SCHEMA_NAMES = {"project": "Project", "user": "User", "application": "Application"}
# Every request body, under components so clients (the console among them) read its limits by name.
BODIES: dict[str, Body] = {
    "ApiKeyCreate": fields.CREATE_KEY,
    "ApiKeyUpdate": fields.UPDATE_KEY,
    "ApiKeyRoll": fields.ROLL_KEY,
    "VerifyKey": fields.VERIFY_KEY,
    "PlanCreate": fields.CREATE_PLAN,
    "PlanUpdate": fields.UPDATE_PLAN,
    "WebhookCreate": fields.CREATE_WEBHOOK,
    "WebhookUpdate": fields.UPDATE_WEBHOOK,
    "LifetimePolicyUpdate": fields.UPDATE_POLICY,
    **{f"{SCHEMA_NAMES[kind]}Create": declared for kind, declared in fields.CREATE.items()},
    **{f"{SCHEMA_NAMES[kind]}Update": declared for kind, declared in fields.UPDATE.items()},
}


def body(name: str) -> Schema:
    return {
        "required": bool(BODIES[name].required),
        "content": {"application/json": {"schema": ref(name)}},
    }


def responses(ok: int, schema: Schema | None, *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if schema is None:
        out[str(ok)] = {"description": "done"}
    else:
        out[str(ok)] = {"description": "ok", "content": {"application/json": {"schema": schema}}}
    error = {"content": {"application/json": {"schema": ref("Error")}}}
    for status in (401, 503, *errors):
        out[str(status)] = {"description": "error", **error}
    return out


def query(name: str, declared: Field) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": declared.schema()}


def path(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def directory_paths(plural: str, schema: str) -> dict[str, Any]:
    return {
        f"/v1/{plural}": {
            "get": {
                "operationId": f"list_{plural}",
                "responses": responses(200, listing(plural, schema), 403),
            },
            "post": {
                "operationId": f"create_{plural}",
                "requestBody": body(f"{schema}Create"),
                # 422: a well-formed value the API cannot act on (rate limits, metadata).
                "responses": responses(201, ref(schema), 400, 403, 409, 422),
            },
        },
        f"/v1/{plural}/{{id}}": {
            "parameters": [path("id")],
            "get": {"operationId": f"get_{plural}", "responses": responses(200, ref(schema), 404)},
            "patch": {
                "operationId": f"update_{plural}",
                "requestBody": body(f"{schema}Update"),
                "responses": responses(200, ref(schema), 400, 403, 404, 409, 422),
            },
            "delete": {
                "operationId": f"delete_{plural}",
                "responses": responses(204, None, 403, 404, 409),
            },
        },
    }


def webhook_paths() -> dict[str, Any]:
    return {
        "/v1/webhooks": {
            "get": {
                "operationId": "list_webhooks",
                "responses": responses(200, listing("webhooks", "Webhook"), 403),
            },
            "post": {
                "operationId": "create_webhook",
                "requestBody": body("WebhookCreate"),
                "responses": responses(201, ref("WebhookWithSecret"), 400, 403, 422),
            },
        },
        "/v1/webhooks/{id}": {
            "parameters": [path("id")],
            "get": {
                "operationId": "get_webhook",
                "responses": responses(200, ref("Webhook"), 403, 404),
            },
            "patch": {
                "operationId": "update_webhook",
                "requestBody": body("WebhookUpdate"),
                "responses": responses(200, ref("Webhook"), 400, 403, 404, 422),
            },
            "delete": {
                "operationId": "delete_webhook",
                "responses": responses(204, None, 403, 404),
            },
        },
        "/v1/webhooks/{id}/test": {
            "parameters": [path("id")],
            "post": {
                "operationId": "test_webhook",
                "description": "Queue a webhook.test event for this webhook alone.",
                "responses": responses(
                    202,
                    obj({"message_id": {"type": "string"}, "status": {"type": "string"}}),
                    403,
                    404,
                ),
            },
        },
        "/v1/organizations/{id}/policy": {
            "parameters": [path("id")],
            "get": {
                "operationId": "get_organization_policy",
                "responses": responses(200, ref("LifetimePolicy"), 404),
            },
            "patch": {
                "operationId": "update_organization_policy",
                "requestBody": body("LifetimePolicyUpdate"),
                "responses": responses(200, ref("LifetimePolicy"), 400, 403, 404),
            },
        },
        "/v1/organizations/{id}/policy/violations": {
            "parameters": [path("id")],
            "get": {
                "operationId": "list_policy_violations",
                "description": "Existing keys that break the policy: they keep working.",
                "responses": responses(200, VIOLATIONS, 403, 404),
            },
        },
        "/v1/leaks": {
            "get": {
                "operationId": "list_leaks",
                "description": "Keys reported leaked (and so revoked), newest first.",
                "responses": responses(
                    200, obj({"leaks": {"type": "array", "items": ref("Leak")}}), 403
                ),
            },
        },
        "/v1/webhooks/{id}/deliveries": {
            "parameters": [path("id")],
            "get": {
                "operationId": "list_webhook_deliveries",
                "description": "The delivery log, newest first.",
                "parameters": [query(name, f) for name, f in fields.DELIVERIES_QUERY.items()],
                "responses": responses(
                    200,
                    obj({"deliveries": {"type": "array", "items": ref("WebhookDelivery")}}),
                    400,
                    403,
                    404,
                ),
            },
        },
    }


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/whoami": {"get": {"operationId": "whoami", "responses": responses(200, WHOAMI)}},
        "/v1/api-keys": {
            "get": {
                "operationId": "list_api_keys",
                "parameters": [query(name, f) for name, f in fields.LIST_KEYS_QUERY.items()],
                "responses": responses(200, listing("api_keys", "ApiKey"), 400),
            },
            "post": {
                "operationId": "create_api_key",
                "requestBody": body("ApiKeyCreate"),
                "responses": responses(201, ref("ApiKeyWithSecret"), 400, 403, 404, 422),
            },
        },
        "/v1/api-keys/{access_key}": {
            "parameters": [path("access_key")],
            "get": {"operationId": "get_api_key", "responses": responses(200, ref("ApiKey"), 404)},
            "patch": {
                "operationId": "update_api_key",
                "requestBody": body("ApiKeyUpdate"),
                "responses": responses(200, ref("ApiKey"), 400, 403, 404, 422),
            },
            "delete": {
                "operationId": "delete_api_key",
                "responses": responses(204, None, 404, 409),
            },
        },
        "/v1/api-keys/{access_key}/roll": {
            "parameters": [path("access_key")],
            "post": {
                "operationId": "roll_api_key",
                "requestBody": body("ApiKeyRoll"),
                "responses": responses(200, ref("ApiKeyWithSecret"), 400, 404),
            },
        },
        "/v1/api-keys/{access_key}/usage": {
            "parameters": [path("access_key")],
            "get": {
                "operationId": "get_api_key_usage",
                "description": "Requests per hour over the last 24 hours and per day over the "
                "last 30 days, oldest first, the current hour and day last (still counting).",
                "responses": responses(200, USAGE, 404),
            },
        },
        "/v1/audit-events": {
            "get": {
                "operationId": "list_audit_events",
                "parameters": [query(name, f) for name, f in fields.AUDIT_QUERY.items()],
                "responses": responses(200, listing("audit_events", "AuditEvent"), 400, 403),
            },
        },
        **directory_paths("projects", "Project"),
        **directory_paths("users", "User"),
        **directory_paths("applications", "Application"),
        **directory_paths("plans", "Plan"),
        "/v1/usage": {
            "get": {
                "operationId": "export_usage",
                "description": "Per UTC day and per key, bearer or plan: requests allowed, "
                "denied, rate limited, and credits spent (managers only).",
                "parameters": [
                    {**query(name, f), "required": name in ("from", "to")}
                    for name, f in fields.USAGE_QUERY.items()
                ],
                "responses": {
                    **responses(200, USAGE_EXPORT, 400, 403, 422),
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {"schema": USAGE_EXPORT},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                },
            },
        },
        "/v1/keys/verify": {
            "post": {
                "operationId": "verify_key",
                "description": "Whether a key is good for a use (and spends cost credits "
                "when it is): the proxy's cache, rules and credits. For a restricted key "
                "holding keys:verify, or a manager's key.",
                "requestBody": body("VerifyKey"),
                "responses": responses(200, VERIFY_ANSWER, 400, 403),
            },
        },
        **webhook_paths(),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Gateway admin API",
            "version": "1",
            "description": "Issue, edit, roll and revoke API keys; manage the directory; "
            "read the audit log. Times are RFC 3339 UTC.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "XAuthToken": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
            },
            "schemas": {
                "ApiKey": KEY,
                "ApiKeyWithSecret": KEY_WITH_SECRET,
                "Project": PROJECT,
                "User": USER,
                "Application": APPLICATION,
                "Plan": PLAN,
                "AuditEvent": AUDIT,
                "Webhook": WEBHOOK,
                "WebhookWithSecret": WEBHOOK_WITH_SECRET,
                "WebhookDelivery": DELIVERY,
                "Leak": LEAK,
                "LifetimePolicy": POLICY,
                "Error": ERROR,
                **{name: declared.schema() for name, declared in BODIES.items()},
            },
        },
        "security": [{"XAuthToken": []}],
    }
