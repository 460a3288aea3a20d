"""Log lines rewritten so no secret is written: a table of lines as uvicorn and the gateway
write them, and a record through a real handler."""

from __future__ import annotations

import io
import logging

import pytest

from gateway.redaction import RedactSecrets, redact, redact_line

SECRET = "gws_live_mxDT6symBTSsHDLpgvDXfrDlJjmnIzs03SoBfZ"


@pytest.mark.parametrize(
    ("line", "written"),
    [
        (f"< x-auth-token: {SECRET}", "< x-auth-token: [redacted]"),
        ("< X-Auth-Token: gws_live_typo!", "< X-Auth-Token: [redacted]"),
        (f"< authorization: Bearer {SECRET}", "< authorization: [redacted]"),
        ("< cookie: session=abc", "< cookie: [redacted]"),
        (f"< GET /ws/x?token={SECRET} HTTP/1.1", "< GET /ws/x?[query] HTTP/1.1"),
        (
            f'127.0.0.1:5 - "WebSocket /ws/x?api_key=a&token={SECRET}" [accepted]',
            '127.0.0.1:5 - "WebSocket /ws/x?[query]" [accepted]',
        ),
        (f"failed: header was {SECRET}.", "failed: header was gws_live_[redacted]."),
        (
            "acme_rk_test_abcDEF123 and gws_test_x",
            "acme_rk_test_[redacted] and gws_test_[redacted]",
        ),
        ("upstream http://x failed: refused", "upstream http://x failed: refused"),
        ("< host: gw.example", "< host: gw.example"),
    ],
)
def test_lines(line: str, written: str) -> None:
    assert redact_line(line) == written


def test_the_access_logs_query_keeps_all_but_the_secret() -> None:
    assert redact(f"page=2&token={SECRET}") == "page=2&token=gws_live_[redacted]"


def test_a_record_through_a_handler() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("%s - %s", "< x-auth-token:", SECRET)
        try:
            raise ValueError(SECRET)
        except ValueError:
            logger.exception("while handling %s", SECRET)
    finally:
        logger.removeHandler(handler)
    assert SECRET[9:] not in out.getvalue() and "gws_live_[redacted]" in out.getvalue()


def test_a_secret_with_its_underscores_percent_encoded_is_cut() -> None:
    """A query is logged as sent: ``gws%5Flive%5F...`` is our secret all the same."""
    assert redact("token=gws%5Flive%5FabcDEF123&x=1") == "token=gws%5Flive%5F[redacted]&x=1"
    assert redact("token=gws%5flive%5fabc") == "token=gws%5flive%5f[redacted]"
