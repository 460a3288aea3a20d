"""The JSON error body (core.errors): the same bytes as ``json.dumps`` of its four fields."""

from __future__ import annotations

import json

import pytest

from core.errors import MESSAGES, REASON_TYPES, TYPES, error_json

STATUS_OF = {"no_route": 404, "body_too_large": 413, "rate_limited": 429}


@pytest.mark.parametrize("reason", sorted(MESSAGES))
@pytest.mark.parametrize("request_id", ["0f" * 16, 'a"b\\c\u00e9\u2028\x01', ""])
def test_an_error_body_is_json_dumps_of_its_fields(reason: str, request_id: str) -> None:
    status = STATUS_OF.get(reason, 401 if reason.endswith("_token") else 503)
    for message in (None, 'Custom: "quoted" caf\u00e9.'):
        expected = {
            "type": REASON_TYPES.get(reason) or TYPES[status],
            "reason": reason,
            "message": message or MESSAGES[reason],
            "request_id": request_id,
        }
        # Twice: the second answer comes from what the first one kept.
        for _ in range(2):
            body = error_json(status, reason, request_id, message)
            assert body == json.dumps(expected).encode()
            assert json.loads(body) == expected
