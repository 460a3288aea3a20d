"""Secrets kept out of every log line, whoever writes it (the gateway, uvicorn, websockets).

uvicorn's WebSocket protocol logs the handshake at debug level (``< x-auth-token: ...``, the
request line with its query string) and its ``"WebSocket /path?query"`` lines at info, and an
exception's message may quote a header: a key could reach a log however carefully the gateway's
own lines are written. So `RedactSecrets`, set on the process's log handlers, rewrites each
record before it is written:

- every string of our secret's shape (``<prefix>_live_...``, ``_test_``, ``_rk_``) becomes
  ``<prefix>_live_[redacted]``, whatever the prefix (one process may read another's keys);
- the value of a key-carrying header line (``X-Auth-Token``, ``Authorization``,
  ``Proxy-Authorization``, ``Cookie``) is dropped whatever its shape: a mistyped key is still
  most of a key;
- the query string of a request line or a ``"WebSocket ..."`` line is dropped: only the access
  log may carry a query, and only with ``[log] access_query`` (its secrets redacted there too).
"""

from __future__ import annotations

import logging
import re

# A key's secret: <prefix>_[rk_]live|test_<random> (core.tokens), in any text.
# Its underscores may come percent-encoded (%5F) in a query, which is logged as sent.
_SECRET = re.compile(
    r"\b([a-z0-9]{1,16}(?:_|%5[fF])(?:rk(?:_|%5[fF]))?(?:live|test)(?:_|%5[fF]))[A-Za-z0-9]+"
)
_CARRIER = re.compile(
    r"^([<>] (?:x-auth-token|authorization|proxy-authorization|cookie)\s*:).*$",
    re.IGNORECASE | re.MULTILINE,
)
# `< GET /ws/x?token=... HTTP/1.1` (the handshake at debug) and `"WebSocket /ws/x?token=..."`.
_QUERY = re.compile(r'^([<>] [A-Z]+ [^?\s]*)\?\S*|("WebSocket [^?"\s]*)\?[^"\s]*', re.MULTILINE)


def redact(text: str) -> str:
    """``text`` with every string of our secret's shape cut to its prefix."""
    if "_live_" not in text and "_test_" not in text and "%5" not in text:
        return text
    return _SECRET.sub(r"\1[redacted]", text)


def redact_line(text: str) -> str:
    """A log message with secrets, key-carrying header values and query strings removed."""
    text = _CARRIER.sub(r"\1 [redacted]", text)
    text = _QUERY.sub(lambda m: (m.group(1) or m.group(2)) + "?[query]", text)
    return redact(text)


class RedactSecrets(logging.Filter):
    """Rewrites a record whose message would carry a secret (a handler's filter: it sees the
    records of every logger, uvicorn's included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_line(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # The traceback's text is made here, once, so that it is redacted too.
            record.exc_text = redact_line(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_line(record.exc_text)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Set `RedactSecrets` on every handler of ``logger`` (the root logger) not holding one."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
