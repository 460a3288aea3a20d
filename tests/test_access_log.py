"""The access log: one JSON line per request for every outcome, never a secret, written off the
request path, and a log that cannot be written never stops the proxy."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.access_log import Stamp, _lines
from tests.support import Gateway, wait_for

EXTRA = """
[[routes]]
prefix = "/theirs"
upstream = "http://127.0.0.1:9"
projects = ["someone-elses-project"]
"""


def lines(path: Path, count: int) -> list[dict[str, Any]]:
    wait_for(lambda: path.exists() and len(path.read_text().splitlines()) >= count, timeout=5)
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_outcome_is_one_line_without_secrets(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway(EXTRA)
    log_path = gateway.config.source.parent / "access.log"
    expiring = gateway.new_key(expires_at=gateway.clock() + 60)
    unknown = gateway.resources.secret_format.generate()
    other = gateway.new_key()
    key = {"X-Auth-Token": gateway.secret_key}
    with gateway.client() as client:
        answered = client.get("/echo/ok?token=not-in-the-log", headers=key)
        assert answered.status_code == 200
        client.get("/echo/expired", headers={"X-Auth-Token": expiring.secret_key})  # cached
        gateway.clock.advance(61)
        outcomes = [
            (client.get("/echo/missing"), 401, "missing_token"),
            (
                client.get("/echo/m", headers={"X-Auth-Token": "gws_live_typo"}),
                401,
                "malformed_token",
            ),
            (client.get("/echo/i", headers={"X-Auth-Token": unknown}), 401, "invalid_token"),
            (
                client.get("/echo/e", headers={"X-Auth-Token": expiring.secret_key}),
                401,
                "expired_token",
            ),
            (
                client.get(
                    "/echo/d",
                    headers=[
                        ("X-Auth-Token", gateway.secret_key),
                        ("X-Auth-Token", other.secret_key),
                    ],
                ),
                401,
                "duplicate_token",
            ),
            (client.get("/theirs/x", headers=key), 403, "project_not_allowed"),
            (client.get("/nowhere"), 404, "no_route"),
            (client.post("/small/upload", content=b"x" * 2000), 413, "body_too_large"),
            (client.get("/down/x", headers=key), 502, "upstream_unreachable"),
            (client.get("/api/slow?seconds=2", headers=key), 504, "upstream_timeout"),
        ]
        store = gateway.config.store.path
        assert store is not None
        store.rename(store.with_name("away.db"))
        try:
            fresh = gateway.resources.secret_format.generate()
            outcomes.append(
                (client.get("/echo/s", headers={"X-Auth-Token": fresh}), 503, "store_unavailable")
            )
        finally:
            store.with_name("away.db").rename(store)
    for response, status, _ in outcomes:
        assert response.status_code == status, response.text
    entries = lines(log_path, 2 + len(outcomes))
    text = log_path.read_text()
    for secret in (gateway.secret_key, expiring.secret_key, unknown, other.secret_key):
        assert secret not in text
    assert "not-in-the-log" not in text  # no query string unless [log] access_query
    ok = entries[0]
    assert ok["status"] == 200 and ok["path"] == "/echo/ok" and ok["route"] == "/echo"
    assert ok["access_key"] == gateway.access_key and ok["project_id"] == gateway.project_id
    assert ok["reason"] is None and ok["upstream_ms"] is not None
    assert ok["response_bytes"] == len(answered.content) > 0
    assert ok["request_id"] and ok["client"] == "127.0.0.1" and ok["time"].endswith("Z")
    seen = [(e["status"], e["reason"]) for e in entries[2:]]
    assert seen == [(status, reason) for _, status, reason in outcomes]
    # The bytes answered, noted where each answer is made (the engine, the refusals).
    assert [e["response_bytes"] for e in entries[2:]] == [len(r.content) for r, _, _ in outcomes]
    too_large = next(e for e in entries if e["reason"] == "body_too_large")
    assert too_large["request_bytes"] == 0  # refused on its Content-Length, nothing read


def test_a_log_that_cannot_be_written_never_stops_the_proxy(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway()
    gateway.resources.access_log.destination = "/dev/full"  # type: ignore[union-attr]
    gateway.resources.access_log.reopen()  # type: ignore[union-attr]
    with gateway.client() as client:
        for _ in range(20):
            assert client.get("/echo/x", headers={"X-Auth-Token": gateway.secret_key}).is_success
    wait_for(lambda: gateway.resources.access_log.failed > 0, timeout=5)  # type: ignore[union-attr]


def test_reopen_writes_to_a_new_file_after_rotation(make_gateway: Any) -> None:
    gateway: Gateway = make_gateway()
    log_path = gateway.config.source.parent / "access.log"
    with gateway.client() as client:
        client.get("/echo/before", headers={"X-Auth-Token": gateway.secret_key})
        lines(log_path, 1)
        log_path.rename(log_path.with_name("access.log.1"))
        gateway.resources.access_log.reopen()  # type: ignore[union-attr]  # what SIGUSR1 does
        client.get("/echo/after", headers={"X-Auth-Token": gateway.secret_key})
    assert [e["path"] for e in lines(log_path, 1)] == ["/echo/after"]


def test_the_time_of_a_line_is_what_isoformat_says_to_the_millisecond() -> None:
    """The stamp is made once per second and the milliseconds by arithmetic: it must agree
    with ``datetime`` (microseconds rounded half to even, then cut), next to second
    boundaries too."""
    rng = random.Random(12)
    stamp = Stamp()
    times = [rng.uniform(0, 4e9) for _ in range(5000)]
    times += [
        second + fraction
        for second in (0, 1764000000, 1764000001)
        for fraction in (0.0, 0.0004999, 0.0005, 0.9994999, 0.9995, 0.9999995, 0.999999)
    ]
    for when in sorted(times) + times:  # in order (the usual batch) and out of it
        expected = datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
        assert stamp(when) == expected.replace("+00:00", "Z"), when


def test_lines_are_the_fields_in_order_and_a_string_msgspec_refuses_loses_no_line() -> None:
    entry = (
        1764000000.25,
        "0f" * 16,
        "127.0.0.1",
        "GET",
        "/caf\u00e9",
        "/api",
        200,
        None,
        "AK0123",
        "project-1",
        0,
        42,
        0.312,
        0.2,
    )
    expected = {
        "time": "2025-11-24T16:00:00.250Z",
        "request_id": "0f" * 16,
        "client": "127.0.0.1",
        "method": "GET",
        "path": "/caf\u00e9",
        "route": "/api",
        "status": 200,
        "reason": None,
        "access_key": "AK0123",
        "project_id": "project-1",
        "request_bytes": 0,
        "response_bytes": 42,
        "total_ms": 0.312,
        "upstream_ms": 0.2,
    }
    text = _lines([entry, entry]).decode()
    assert text.endswith("\n") and len(text.splitlines()) == 2
    for line in text.splitlines():
        assert list(json.loads(line).items()) == list(expected.items())
    # A lone surrogate (no field can hold one today): the batch is written whole, escaped.
    odd = (*entry[:4], "/\udcff", *entry[5:])
    written = _lines([entry, odd]).decode("ascii").splitlines()
    assert [json.loads(line)["path"] for line in written] == ["/caf\u00e9", "/\udcff"]
