"""The OpenAPI 3.1 document of the admin API, served at ``/v1/openapi.json``.

Written by hand next to the handlers, and held to them by schemathesis in ``make test``: every
response the API gives must validate against what is declared here.
"""

from __future__ import annotations

from typing import Any

from core.store.keys import ORDERS

Schema = dict[str, Any]

NULLABLE_STRING: Schema = {"type": ["string", "null"]}
TIME: Schema = {"type": "string", "format": "date-time"}
NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
UUID: Schema = {"type": "string"}
PERMISSION_SETS: Schema = {
    "type": "array",
    "items": {"type": "string", "enum": ["IAMManager", "OrganizationManager"]},
}


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
        "description": {"type": "string", "maxLength": 200},
        "bearer_type": {"type": "string", "enum": ["user", "application"]},
        "user_id": NULLABLE_STRING,
        "application_id": NULLABLE_STRING,
        "organization_id": UUID,
        "default_project_id": UUID,
        "mode": {"type": "string", "enum": ["live", "test"]},
        "created_at": TIME,
        "updated_at": TIME,
        "expires_at": NULLABLE_TIME,
        "last_used_at": NULLABLE_TIME,
        "creation_ip": NULLABLE_STRING,
        "secret_prefix": {"type": "string"},
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
    }
)
APPLICATION = obj(
    {
        "id": UUID,
        "organization_id": UUID,
        "name": {"type": "string"},
        "permission_sets": PERMISSION_SETS,
        **STAMPS,
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
        "reason": {"type": "string"},
        "details": {
            "type": "array",
            "items": obj({"field": {"type": "string"}, "message": {"type": "string"}}),
        },
    },
    required=["type", "message"],
)
WHOAMI = obj(
    {
        "bearer_type": {"type": "string", "enum": ["user", "application"]},
        "bearer_id": UUID,
        "name": {"type": "string", "description": "the user's email or the application's name"},
        "organization_id": UUID,
        "permission_sets": PERMISSION_SETS,
        "is_owner": {"type": "boolean"},
        "access_key": {"type": "string"},
    }
)


def listing(name: str, item: str) -> Schema:
    return obj({name: {"type": "array", "items": ref(item)}, "total_count": {"type": "integer"}})


def body(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    schema = obj(properties, required or [])
    schema["additionalProperties"] = False
    return {"required": True, "content": {"application/json": {"schema": schema}}}


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


def query(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def path(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


PAGING = [
    query("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000}),
    query("page_size", {"type": "integer", "minimum": 1, "maximum": 100}),
]
KEY_FIELDS: dict[str, Schema] = {
    "description": {"type": "string", "maxLength": 200},
    "default_project_id": {"type": "string"},
    "expires_at": NULLABLE_TIME,
}


def directory_paths(
    plural: str,
    schema: str,
    create: dict[str, Schema],
    required: list[str],
    edit: dict[str, Schema],
) -> dict[str, Any]:
    return {
        f"/v1/{plural}": {
            "get": {
                "operationId": f"list_{plural}",
                "responses": responses(200, listing(plural, schema), 403),
            },
            "post": {
                "operationId": f"create_{plural}",
                "requestBody": body(create, required),
                "responses": responses(201, ref(schema), 400, 403, 409),
            },
        },
        f"/v1/{plural}/{{id}}": {
            "parameters": [path("id")],
            "get": {"operationId": f"get_{plural}", "responses": responses(200, ref(schema), 404)},
            "patch": {
                "operationId": f"update_{plural}",
                "requestBody": body(edit),
                "responses": responses(200, ref(schema), 400, 403, 404),
            },
            "delete": {
                "operationId": f"delete_{plural}",
                "responses": responses(204, None, 403, 404, 409),
            },
        },
    }


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/whoami": {"get": {"operationId": "whoami", "responses": responses(200, WHOAMI)}},
        "/v1/api-keys": {
            "get": {
                "operationId": "list_api_keys",
                "parameters": [
                    query("user_id", {"type": "string"}),
                    query("application_id", {"type": "string"}),
                    query("bearer_type", {"type": "string", "enum": ["user", "application"]}),
                    query("project_id", {"type": "string"}),
                    query("mode", {"type": "string", "enum": ["live", "test"]}),
                    query("expired", {"type": "string", "enum": ["true", "false"]}),
                    query("order_by", {"type": "string", "enum": list(ORDERS)}),
                    *PAGING,
                ],
                "responses": responses(200, listing("api_keys", "ApiKey"), 400),
            },
            "post": {
                "operationId": "create_api_key",
                "requestBody": body(
                    {
                        "user_id": NULLABLE_STRING,
                        "application_id": NULLABLE_STRING,
                        "mode": {"type": "string", "enum": ["live", "test"]},
                        **KEY_FIELDS,
                    }
                ),
                "responses": responses(201, ref("ApiKeyWithSecret"), 400, 403, 404),
            },
        },
        "/v1/api-keys/{access_key}": {
            "parameters": [path("access_key")],
            "get": {"operationId": "get_api_key", "responses": responses(200, ref("ApiKey"), 404)},
            "patch": {
                "operationId": "update_api_key",
                "requestBody": body(KEY_FIELDS),
                "responses": responses(200, ref("ApiKey"), 400, 404),
            },
            "delete": {"operationId": "delete_api_key", "responses": responses(204, None, 404)},
        },
        "/v1/api-keys/{access_key}/roll": {
            "parameters": [path("access_key")],
            "post": {
                "operationId": "roll_api_key",
                "requestBody": body(
                    {
                        "expire_current_in_seconds": {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": 604800,
                        }
                    }
                ),
                "responses": responses(200, ref("ApiKeyWithSecret"), 400, 404),
            },
        },
        "/v1/audit-events": {
            "get": {
                "operationId": "list_audit_events",
                "parameters": [
                    query("actor_id", {"type": "string"}),
                    query("access_key", {"type": "string"}),
                    query("action", {"type": "string"}),
                    query("since", TIME),
                    query("until", TIME),
                    *PAGING,
                ],
                "responses": responses(200, listing("audit_events", "AuditEvent"), 400, 403),
            },
        },
        **directory_paths(
            "projects",
            "Project",
            {"name": {"type": "string"}},
            ["name"],
            {"name": {"type": "string"}},
        ),
        **directory_paths(
            "users",
            "User",
            {"email": {"type": "string"}, "permission_sets": PERMISSION_SETS},
            ["email"],
            {"permission_sets": PERMISSION_SETS},
        ),
        **directory_paths(
            "applications",
            "Application",
            {"name": {"type": "string"}, "permission_sets": PERMISSION_SETS},
            ["name"],
            {"name": {"type": "string"}, "permission_sets": PERMISSION_SETS},
        ),
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
                "AuditEvent": AUDIT,
                "Error": ERROR,
            },
        },
        "security": [{"XAuthToken": []}],
    }
