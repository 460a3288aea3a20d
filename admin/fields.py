"""Every admin request body and query parameter, declared once with its limits.

A :class:`Field` is a value's type and limits; a :class:`Body` is the fields a request may send.
From these one declaration come the validation of the API (:meth:`Body.parse`,
:meth:`Field.parse`), the service layer's checks that the CLI goes through too, the OpenAPI
document (:meth:`Body.schema`, :meth:`Field.schema`) and, through that document, the console's
limits. JSON Schema semantics are kept so the document and the API agree both ways: an integer
may be written ``36881.0``; a ``pattern`` is searched, not matched whole; a ``null`` is a value
only where ``nullable`` says so.

Two kinds of refusal: a value the schema forbids is ``400 invalid_arguments``; a well-formed value
the API cannot act on now (an expiry already past) is ``422`` with the same body.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from admin.access import PERMISSION_SETS, Invalid
from core import plans
from core.policies import (
    MAX_ALLOWED_IPS,
    MAX_LIMIT,
    MAX_PERMISSIONS,
    MAX_RATE_LIMITS,
    MAX_WINDOW_SECONDS,
    PolicyError,
    RateLimit,
)
from core.store.keys import ORDERS
from core.store.webhooks import EVENT_TYPES
from core.tokens import MODES

Schema = dict[str, Any]

# RFC 3339 §5.6 date-time: "T"/"t" between date and time, "Z"/"z" or an offset, optional fraction.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)
TIME_EXAMPLE = "2030-01-01T00:00:00Z"
# 9999-12-31T23:59:59Z: RFC 3339 writes four-digit years, and Python's datetime stops there.
LATEST_TIME = 253402300799.0

# White space as JSON Schema patterns read it (ECMA-262 \s), spelled out: Python's \s differs
# (it has \x1c-\x1f and \x85, not \ufeff), and the API must refuse exactly what the document does.
_WHITE_SPACE_CHARS = (
    "\t\n\v\f\r \u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029"
    "\u202f\u205f\u3000\ufeff"
)
WHITE_SPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


def strip_white_space(value: str) -> str:
    return value.strip(_WHITE_SPACE_CHARS)


def _python_pattern(pattern: str) -> str:
    r"""An ECMA-262 pattern for Python's re: its "$" (not multi-line) is Python's "\Z", which,
    unlike Python's "$", does not match before a final newline."""
    if pattern.endswith("$") and not pattern.endswith(r"\$"):
        return pattern[:-1] + r"\Z"
    return pattern


def parse_time(value: str) -> float:
    """An RFC 3339 date-time as epoch seconds; raises ValueError. A leap second (``:60``) is
    read as the second after ``:59``. A time past ``LATEST_TIME`` is refused: no RFC 3339 time
    could show it back (a key's JSON, its webhook events)."""
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(value)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    leap = second == 60
    fraction, zone = match.group(7) or "", match.group(8).upper()
    stamp = datetime(year, month, day, hour, minute, 59 if leap else second, tzinfo=UTC)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(value)
        try:
            stamp -= sign * timedelta(hours=hours, minutes=minutes)
        except OverflowError:  # 9999-12-31T23:59:59-01:00 is in the year 10000
            raise ValueError(value) from None
    seconds = stamp.timestamp() + (1 if leap else 0) + (float(fraction) if fraction else 0.0)
    return checked_time(seconds, value)


def checked_time(seconds: float, value: object = None) -> float:
    """``seconds`` if an RFC 3339 time can show it (finite, not past ``LATEST_TIME``); raises
    ValueError."""
    if not math.isfinite(seconds) or seconds > LATEST_TIME:
        raise ValueError(value if value is not None else seconds)
    return seconds


@dataclass(frozen=True)
class Field:
    # "string", "integer", "time" (RFC 3339 date-time), "names" (a list of choices), "strings" (a
    # list of strings, each held to the limits below) or "rate_limits" ({limit, window_seconds}s)
    kind: str
    description: str = ""
    nullable: bool = False
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    max_items: int | None = None
    form: str = ""  # how a value (or an entry of a list) is written, for the refusal's sentence
    # kind "json": the value's JSON Schema, and what reads it (raising PolicyError)
    shape: Schema | None = None
    reader: Callable[[Any], Any] | None = None

    def schema(self) -> Schema:
        out: Schema
        if self.kind == "json":
            assert self.shape is not None
            out = dict(self.shape)
            if self.description:
                out["description"] = self.description
            return out
        if self.kind == "boolean":
            out = {"type": "boolean"}
        elif self.kind == "rate_limits":
            out = {"type": "array", "items": RATE_LIMIT_SCHEMA}
        elif self.kind == "strings":
            item = replace(self, kind="string", description="", max_items=None)
            out = {"type": "array", "items": item.schema()}
        elif self.kind == "names":
            items: Schema = {"type": "string"}
            if self.choices:
                items["enum"] = list(self.choices)
            out = {"type": "array", "items": items}
        else:
            kind = "integer" if self.kind == "integer" else "string"
            out = {"type": [kind, "null"] if self.nullable else kind}
            if self.kind == "time":
                out["format"] = "date-time"
            for key, value in (
                ("minLength", self.min_length),
                ("maxLength", self.max_length),
                ("pattern", self.pattern),
                ("minimum", self.minimum),
                ("maximum", self.maximum),
            ):
                if value is not None:
                    out[key] = value
            if self.choices:
                out["enum"] = [*self.choices, *([None] if self.nullable else [])]
        if self.max_items is not None and out.get("type") == "array":
            out["maxItems"] = self.max_items
        if self.description:
            out["description"] = self.description
        return out

    def parse(self, name: str, value: Any) -> Any:
        """The value, checked against this declaration (an integer-valued float becomes an
        int, a time becomes epoch seconds); raises Invalid with a sentence naming ``name``."""
        if value is None:
            if self.nullable:
                return None
            raise Invalid(f"{name} must be {self._what()}, not null", name)
        if self.kind == "integer":
            return self._integer(name, value)
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise Invalid(f"{name} must be true or false", name)
            return value
        if self.kind == "json":
            assert self.reader is not None
            try:
                return self.reader(value)
            except PolicyError as exc:
                raise Invalid(str(exc), name) from None
        if self.kind == "names":
            return self._names(name, value)
        if self.kind in ("strings", "rate_limits"):
            return self._list(name, value)
        if not isinstance(value, str):
            raise Invalid(f"{name} must be {self._what()}", name)
        if self.kind == "time":
            try:
                return parse_time(value)
            except ValueError:
                raise Invalid(f"{name} must be {self._what()}", name) from None
        if self.min_length is not None and len(value) < self.min_length:
            raise Invalid(f"{name} must have at least {self.min_length} character(s)", name)
        if self.max_length is not None and len(value) > self.max_length:
            raise Invalid(
                f"{name} must be at most {self.max_length} characters (it has {len(value)})", name
            )
        if self.pattern is not None and re.search(_python_pattern(self.pattern), value) is None:
            if self.form:
                shown = value if len(value) <= 60 else value[:57] + "..."
                raise Invalid(f"{name} {shown!r} {ENTRY}: write {self.form}", name)
            raise Invalid(f"{name} {self.description or ENTRY}", name)
        if self.choices and value not in self.choices:
            raise Invalid(f"{name} must be one of {', '.join(self.choices)}", name)
        return value

    def _what(self) -> str:
        return {
            "string": "a string",
            "integer": self._range(),
            "time": f"an RFC 3339 time such as {TIME_EXAMPLE}",
            "names": "a list of names",
            "strings": "a list of strings",
            "rate_limits": "a list of {limit, window_seconds} objects",
            "boolean": "true or false",
            "json": "a JSON value",
        }[self.kind]

    def _range(self) -> str:
        return f"a whole number from {self.minimum} to {self.maximum}"

    def _integer(self, name: str, value: Any) -> int:
        # JSON Schema counts 36881.0 as an integer; JSON booleans are not numbers.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"{name} must be {self._range()}", name)
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise Invalid(f"{name} must be {self._range()}", name)
        return value

    def _names(self, name: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise Invalid(f"{name} must be a list of names", name)
        unknown = [v for v in value if v not in self.choices]
        if unknown:
            raise Invalid(
                f"unknown {name} entry {unknown[0]!r}; known: {', '.join(self.choices)}", name
            )
        return tuple(dict.fromkeys(value))

    def _list(self, name: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise Invalid(f"{name} must be {self._what()}", name)
        if self.max_items is not None and len(value) > self.max_items:
            raise Invalid(f"{name} must have at most {self.max_items} entries", name)
        if self.kind == "strings":
            item = replace(self, kind="string", max_items=None, description=ENTRY)
            return tuple(item.parse(f"{name} entry", v) for v in value)
        found = []
        for entry in value:
            if not isinstance(entry, dict) or set(entry) != {"limit", "window_seconds"}:
                raise Invalid(
                    f"{name} entries must be objects such as "
                    '{"limit": 100, "window_seconds": 60}',
                    name,
                )
            found.append(
                RateLimit(
                    LIMIT.parse(f"{name} limit", entry["limit"]),
                    WINDOW.parse(f"{name} window_seconds", entry["window_seconds"]),
                )
            )
        return tuple(found)

    def parse_query(self, name: str, raw: str | None) -> Any:
        """A query parameter (always a string on the wire) against this declaration."""
        if raw is None:
            return None
        if self.kind == "integer":
            if not re.fullmatch(r"-?\d{1,12}", raw):
                raise Invalid(f"{name} must be {self._range()}", name)
            return self._integer(name, int(raw))
        return self.parse(name, raw)


def _unicode(value: Any) -> bool:
    """Can ``value`` (a parsed JSON value) be written as UTF-8?"""
    if isinstance(value, str):
        return value.isascii() or _encodes(value)
    if isinstance(value, list):
        return all(_unicode(item) for item in value)
    if isinstance(value, dict):
        return all(_unicode(k) and _unicode(v) for k, v in value.items())
    return True


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class Body:
    """A JSON object body: its fields, the required ones, and fields of which at most one may be
    given (not null)."""

    fields: dict[str, Field]
    required: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()
    description: str = field(default="")

    def schema(self) -> Schema:
        out: Schema = {
            "type": "object",
            "properties": {name: f.schema() for name, f in self.fields.items()},
            "required": list(self.required),
            "additionalProperties": False,
        }
        if self.one_of:
            out["not"] = {
                "required": list(self.one_of),
                "properties": {name: {"not": {"type": "null"}} for name in self.one_of},
            }
        if self.description:
            out["description"] = self.description
        return out

    def parse(self, raw: bytes) -> dict[str, Any]:
        """The checked fields the client sent (absent ones absent; a missing body is ``{}``)."""
        if raw:  # a body of white space is not JSON, so it is refused, not taken for "none"
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise Invalid("the body is not valid JSON", "body") from None
            except RecursionError:  # nesting deeper than the parser's stack: no body we declare
                raise Invalid("the body nests arrays or objects too deeply", "body") from None
        else:
            body = {}
        if not isinstance(body, dict):
            raise Invalid("the body must be a JSON object", "body")
        for name, value in body.items():
            # JSON may escape a lone surrogate (\ud800), which no UTF-8 text (the store, the
            # answer) can hold: refused here, without echoing it.
            if not _unicode(name):
                raise Invalid("a field name is not valid Unicode text (a lone surrogate)", "body")
            try:
                readable = _unicode(value)
            except RecursionError:
                raise Invalid(f"{name} nests arrays or objects too deeply", name) from None
            if not readable:
                raise Invalid(f"{name} is not valid Unicode text (a lone surrogate)", name)
        for name in body:
            if name not in self.fields:
                accepted = ", ".join(self.fields) or "nothing"
                raise Invalid(f"{name} is not accepted here (accepted: {accepted})", name)
        for name in self.required:
            if name not in body:
                raise Invalid(f"{name} is required", name)
        given = [name for name in self.one_of if body.get(name) is not None]
        if len(given) > 1:
            raise Invalid(f"give {' or '.join(self.one_of)}, not both", given[-1])
        return {name: self.fields[name].parse(name, value) for name, value in body.items()}


# -- the values -----------------------------------------------------------------------------------

ID = Field("string")
NULLABLE_ID = Field("string", nullable=True)
DESCRIPTION = Field("string", max_length=200)
MODE = Field("string", choices=MODES)
EXPIRES_AT = Field("time", nullable=True, description="RFC 3339; null: never expires")
GRACE = Field(
    "integer",
    minimum=0,
    maximum=7 * 24 * 3600,
    description="how long the current secret keeps working, in seconds (0: stop it at once)",
)
NAME = Field(
    "string",
    min_length=1,
    max_length=100,
    pattern=f"[^{WHITE_SPACE}]",
    description="must not be blank",
)
# A plan's name goes upstream in the X-Auth-Plan header: no control characters, which would
# split it into headers of the writer's choosing (RFC 9110 §5.5: CR, LF and NUL are never in a
# field value).
_CONTROL = r"\x00-\x1f\x7f"
PLAN_NAME = replace(
    NAME,
    pattern=f"^[^{_CONTROL}]*[^{WHITE_SPACE}{_CONTROL}][^{_CONTROL}]*$",
    description="must not be blank nor hold control characters such as a line break (it goes "
    "upstream in the X-Auth-Plan header)",
)
EMAIL = Field(
    "string",
    max_length=254,
    pattern=f"^[^{WHITE_SPACE}@]+@[^{WHITE_SPACE}@]+$",
    description="must be an email address such as ops@example.com",
)
PERMISSION_SET_NAMES = Field("names", choices=tuple(sorted(PERMISSION_SETS)))
ORDER_BY = Field("string", choices=tuple(ORDERS))
PAGE = Field("integer", minimum=1, maximum=1_000_000)
PAGE_SIZE = Field("integer", minimum=1, maximum=100)
TIME = Field("time")
LIMIT = Field("integer", minimum=1, maximum=MAX_LIMIT)
WINDOW = Field("integer", minimum=1, maximum=MAX_WINDOW_SECONDS)
RATE_LIMIT_SCHEMA: Schema = {
    "type": "object",
    "properties": {"limit": LIMIT.schema(), "window_seconds": WINDOW.schema()},
    "required": ["limit", "window_seconds"],
    "additionalProperties": False,
}
RATE_LIMITS = Field(
    "rate_limits",
    max_items=MAX_RATE_LIMITS,
    description="requests per sliding window, every one held; at most one limit per window",
)
PERMISSIONS = Field(
    "strings",
    max_items=MAX_PERMISSIONS,
    pattern="^([a-z][a-z0-9_-]{0,62}:(read|write)|keys:verify)$",
    form="RESOURCE:read or RESOURCE:write, RESOURCE being a route's resource (billing:read), "
    "or keys:verify",
    description="a restricted key's RESOURCE:read / RESOURCE:write permissions; given at "
    "creation (even empty), the key is restricted and its secret starts <prefix>_rk_",
)
ENTRY = "has the wrong form"  # what a refused list entry is said to have
ALLOWED_IPS = Field(
    "strings",
    max_items=MAX_ALLOWED_IPS,
    max_length=49,
    pattern="^[0-9A-Fa-f.:]+(/[0-9]{1,3})?$",
    form="an IPv4 or IPv6 address or CIDR network (10.0.0.0/8, 192.0.2.7, 2001:db8::/32); "
    "names such as localhost are not resolved",
    description="IPv4/IPv6 addresses and CIDR networks the key may be used from; empty: anywhere",
)

DISABLED = Field(
    "boolean",
    description="true: refused with 403 key_disabled (not revoked: false restores it, with the "
    "same secret)",
)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PolicyError("metadata must be a JSON object")
    return value


METADATA = Field(
    "json",
    shape={"type": "object"},
    reader=_object,
    description=f"sent upstream as X-Auth-Key-Metadata (merged over its plan's); at most "
    f"{plans.MAX_METADATA_BYTES} bytes as compact JSON",
)
_COUNT: Schema = {"type": "integer", "minimum": 0, "maximum": plans.MAX_CREDITS}
_INTERVAL: Schema = {"type": "string", "enum": list(plans.INTERVALS)}
KEY_CREDITS = Field(
    "json",
    shape={
        "type": ["object", "null"],
        "properties": {
            "remaining": _COUNT,
            "refill": {
                "type": ["object", "null"],
                "properties": {"amount": _COUNT, "interval": _INTERVAL},
                "required": ["amount", "interval"],
                "additionalProperties": False,
            },
        },
        "required": ["remaining"],
        "additionalProperties": False,
    },
    reader=plans.key_credits,
    nullable=True,
    description="the credits it may spend (each request spends its route's cost), refilled at "
    "each UTC day or month; null: unlimited (or its plan's or bearer's)",
)
PLAN_CREDITS = Field(
    "json",
    shape={
        "type": ["object", "null"],
        "properties": {
            "amount": _COUNT,
            "refill": {"type": ["string", "null"], "enum": [*plans.INTERVALS, None]},
        },
        "required": ["amount"],
        "additionalProperties": False,
    },
    reader=plans.plan_credits,
    nullable=True,
    description="each budget on the plan starts at amount and goes back to it at each refill",
)
WEBHOOK_URL = Field(
    "string",
    max_length=2000,
    pattern=f"^https?://[^{WHITE_SPACE}/?#]+[^{WHITE_SPACE}]*$",
    description="must be an http:// or https:// URL",
)
WEBHOOK_EVENTS = Field("names", choices=EVENT_TYPES)
DELIVERY_STATUS = Field("string", choices=("pending", "delivered", "failed"))
DELIVERY_LIMIT = Field("integer", minimum=1, maximum=500)

LIFETIME_DAYS = Field(
    "integer", nullable=True, minimum=1, maximum=3650, description="days; null: no limit"
)

# Filters of GET /v1/api-keys, named as KeyFilter names them.
LIST_KEYS_FILTERS = {
    "user_id": ID,
    "application_id": ID,
    "bearer_type": Field("string", choices=("user", "application")),
    "project_id": ID,
    "mode": MODE,
    "expired": Field("string", choices=("true", "false")),
}
AUDIT_FILTERS = {"actor_id": ID, "access_key": ID, "action": ID, "since": TIME, "until": TIME}
PAGING = {"page": PAGE, "page_size": PAGE_SIZE}
# The query parameters of each listing; every other request takes none.
LIST_KEYS_QUERY = {**LIST_KEYS_FILTERS, "order_by": ORDER_BY, **PAGING}
AUDIT_QUERY = {**AUDIT_FILTERS, **PAGING}
DELIVERIES_QUERY = {"status": DELIVERY_STATUS, "limit": DELIVERY_LIMIT}

# -- the bodies -----------------------------------------------------------------------------------

CREATE_KEY = Body(
    {
        "user_id": NULLABLE_ID,
        "application_id": NULLABLE_ID,
        "description": DESCRIPTION,
        "default_project_id": NULLABLE_ID,
        "expires_at": EXPIRES_AT,
        "mode": MODE,
        "rate_limits": RATE_LIMITS,
        "allowed_ips": ALLOWED_IPS,
        "permissions": PERMISSIONS,
        "metadata": METADATA,
        "plan_id": NULLABLE_ID,
        "credits": KEY_CREDITS,
    },
    one_of=("user_id", "application_id"),
    description="With neither user_id nor application_id, the key is the caller's own.",
)
UPDATE_KEY = Body(
    {
        "description": DESCRIPTION,
        "default_project_id": ID,
        "expires_at": EXPIRES_AT,
        "rate_limits": RATE_LIMITS,
        "allowed_ips": ALLOWED_IPS,
        "permissions": PERMISSIONS,
        "disabled": DISABLED,
        "metadata": METADATA,
        "plan_id": NULLABLE_ID,
        "credits": KEY_CREDITS,
    }
)
ROLL_KEY = Body(
    {
        "expire_current_in_seconds": GRACE,
        "expires_at": replace(
            EXPIRES_AT,
            nullable=False,
            description="RFC 3339: the key's new expiry. Without it the key keeps its expiry, "
            "unless it has expired: then it is renewed for the lifetime it was created with",
        ),
    }
)
# A bearer's budget: one plan, rate limits and credits for all its keys.
BUDGET = {"plan_id": NULLABLE_ID, "rate_limits": RATE_LIMITS, "credits": KEY_CREDITS}
CREATE_WEBHOOK = Body(
    {"url": WEBHOOK_URL, "events": WEBHOOK_EVENTS, "description": DESCRIPTION},
    required=("url", "events"),
)
UPDATE_WEBHOOK = Body({"url": WEBHOOK_URL, "events": WEBHOOK_EVENTS, "description": DESCRIPTION})
UPDATE_POLICY = Body(
    {"max_key_lifetime_days": LIFETIME_DAYS, "disable_unused_after_days": LIFETIME_DAYS},
    description="Only what is given changes; null removes that limit.",
)
CREATE = {
    "project": Body({"name": NAME}, required=("name",)),
    "user": Body({"email": EMAIL, "permission_sets": PERMISSION_SET_NAMES}, required=("email",)),
    "application": Body(
        {"name": NAME, "permission_sets": PERMISSION_SET_NAMES}, required=("name",)
    ),
}
UPDATE = {
    "project": Body({"name": NAME}),
    "user": Body({"permission_sets": PERMISSION_SET_NAMES, **BUDGET}),
    "application": Body({"name": NAME, "permission_sets": PERMISSION_SET_NAMES, **BUDGET}),
}
PLAN_FIELDS = {
    "name": PLAN_NAME,
    "rate_limits": RATE_LIMITS,
    "credits": PLAN_CREDITS,
    "metadata": METADATA,
}
CREATE_PLAN = Body(PLAN_FIELDS, required=("name",))
METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE")
_DAY = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
USAGE_QUERY = {
    "from": Field(
        "string",
        pattern=_DAY,
        description="first day (UTC)",
        form="a day such as 2026-12-01",
    ),
    "to": Field(
        "string",
        pattern=_DAY,
        description="last day (UTC)",
        form="a day such as 2026-12-31",
    ),
    "group_by": Field("string", choices=("key", "bearer", "plan")),
    "format": Field("string", choices=("json", "csv")),
}
VERIFY_KEY = Body(
    {
        "secret_key": Field("string", max_length=200, description="the secret to verify"),
        "resource": Field(
            "string",
            nullable=True,
            pattern="^[a-z][a-z0-9_-]{0,62}$",
            description="as a route's resource: what a restricted key needs permission for",
            form="a route's resource, a lower-case name such as billing",
        ),
        "method": Field("string", choices=METHODS),
        "cost": Field("integer", minimum=0, maximum=1_000_000, description="credits to spend"),
        "ip": Field(
            "string",
            nullable=True,
            max_length=45,
            pattern="^[0-9A-Fa-f.:]+$",
            description="the address the caller's client came from (for allowed_ips)",
            form="an IPv4 or IPv6 address such as 192.0.2.7",
        ),
    },
    required=("secret_key",),
)
UPDATE_PLAN = Body(PLAN_FIELDS)
