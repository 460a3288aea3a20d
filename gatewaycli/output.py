"""What the commands print: one JSON document with ``--json``, else text a person reads.

Results go to stdout; warnings and errors to stderr, so ``--json`` output stays one document
that a script can parse whatever else was said.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def warn(args: argparse.Namespace, message: str) -> None:
    """A warning on stderr: the command still did what it was asked."""
    if args.json:
        print(json.dumps({"warning": message}), file=sys.stderr)
    else:
        print(f"gateway: warning: {message}", file=sys.stderr)


def _shown(name: str, value: Any) -> str:
    if name == "permissions" and value is None:
        return "(not restricted)"
    if name == "credits" and value is None:
        return "(unlimited, or its plan's)"
    if value is None or value == []:
        return "-" if value is None else "(anywhere)" if name == "allowed_ips" else "(none)"
    if name == "rate_limits":
        return ", ".join(f"{r['limit']}/{r['window_seconds']}s" for r in value)
    if name == "credits" and isinstance(value, dict):
        refill = value.get("refill")
        each = {"daily": "UTC day", "monthly": "UTC month"}
        again = f", back to {refill['amount']} each {each[refill['interval']]}" if refill else ""
        return f"{value['remaining']}{again}"
    if name == "metadata":
        return json.dumps(value) if value else "(none)"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def fields_text(item: dict[str, Any]) -> str:
    """One ``name  value`` line per field."""
    return "\n".join(f"{name:<19} {_shown(name, value)}" for name, value in item.items())


def key_text(key: dict[str, Any], secret: str | None = None) -> str:
    lines = [fields_text(key)]
    if secret is not None:
        lines += [
            "",
            f"secret_key          {secret}",
            "  (shown once: store it now; only its hash is kept)",
        ]
    return "\n".join(lines)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(x.rstrip() for x in [line, *body])


def _cell(value: Any) -> str:
    if value is None or value == []:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def command_prefix(args: argparse.Namespace) -> str:
    """How this command was pointed at its store, for the commands we suggest."""
    words = ["gateway"]
    if getattr(args, "config", None):
        words += ["--config", args.config]
    if getattr(args, "store", None):
        words += ["--store", args.store]
    return " ".join(words)
