"""The ``gateway`` command: the composition root, and the local operator's key tools.

The commands that work on the store are in ``gatewaycli.commands``; this module is the parser,
``serve``, ``demo`` and the error handling every command shares. Every command takes
``--json``; errors go to stderr as one sentence (or a JSON object with ``--json``), exit status 2
for a usage, configuration or validation problem and 1 when the store cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import re
import signal
import sys
from typing import Any

from admin import access
from core import config as config_module
from core.assertion_keys import KeyFileError
from core.config import LOG_LEVELS, Config, ConfigError
from core.policies import PolicyError, RateLimit
from core.store import StoreMissing, StoreUnavailable
from gatewaycli import keylife_commands
from gatewaycli.assertion_key import cmd_assertion_key
from gatewaycli.commands import STORE_COMMANDS, emit, with_store

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``7d``, ``2w`` -> seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 1h, 7d or 2w")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _expiry(text: str) -> float | str:
    return "never" if text == "never" else parse_duration(text)


def _rate_limit(text: str) -> RateLimit:
    try:
        return RateLimit.parse(text)
    except PolicyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _policy_options(parser: argparse.ArgumentParser, editing: bool = False) -> None:
    """A key's policies; when editing, a list given replaces the key's, and --no-... clears it."""
    again = " (repeat for more; replaces the key's list)" if editing else " (repeat for more)"
    limits = parser.add_mutually_exclusive_group() if editing else parser
    limits.add_argument(
        "--rate-limit",
        action="append",
        type=_rate_limit,
        metavar="N/WINDOW",
        help="at most N requests in any WINDOW (100/60s, 10/1s, 1000/1h)" + again,
    )
    ips = parser.add_mutually_exclusive_group() if editing else parser
    ips.add_argument(
        "--allow-ip",
        action="append",
        metavar="CIDR",
        help="an address or network the key may be used from (10.0.0.0/8)" + again,
    )
    held = parser.add_mutually_exclusive_group() if editing else parser
    held.add_argument(
        "--permission",
        action="append",
        metavar="RESOURCE:read|write",
        help=(
            "a permission of a restricted key (billing:read)" + again
            if editing
            else "make a restricted key (secret gws_rk_...) with this permission" + again
        ),
    )
    if editing:
        limits.add_argument("--no-rate-limits", action="store_true", help="remove its limits")
        ips.add_argument("--no-allowed-ips", action="store_true", help="usable from anywhere")
        held.add_argument(
            "--no-permissions", action="store_true", help="a restricted key that may do nothing"
        )
    else:
        parser.add_argument(
            "--restricted",
            action="store_true",
            help="a restricted key even without --permission (it may do nothing until given some)",
        )


def cmd_serve(args: argparse.Namespace, cfg: Config) -> None:
    from gatewaycli import server

    server.setup_logging((args.log_level or cfg.log_level or "info").upper())
    server.serve(cfg, args.workers or cfg.workers)


def cmd_reload(args: argparse.Namespace, cfg: Config) -> None:
    """Tell the running `serve` (and so its workers) to re-read the config: SIGHUP."""
    if cfg.pid_file is None:
        raise access.Invalid(
            "set [server] pid_file so gateway reload can find the running gateway, "
            "or send it SIGHUP yourself (kill -HUP PID)",
            "pid_file",
        )
    try:
        pid = int(cfg.pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        raise access.Invalid(
            f"{cfg.pid_file}: no running gateway found there ({exc}); is it serving?", "pid_file"
        ) from None
    emit_text = f"Sent SIGHUP to the gateway (pid {pid}): it re-reads {cfg.source}"
    print(json.dumps({"reloaded": pid}) if args.json else emit_text)


def cmd_demo(args: argparse.Namespace, cfg: Config) -> None:
    from gatewaycli import demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    demo.run_demo(cfg)


# -- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default: $GATEWAY_CONFIG, else ./gateway.toml)",
    )
    common.add_argument(
        "--store",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="the store file to use instead of the config's [store] path",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = argparse.ArgumentParser(
        prog="gateway", parents=[common], description="API-key authentication gateway"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("init", parents=[common], help="create the store and the owner key (once)")
    serve = sub.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--workers", type=int, help="worker processes (default: [server] workers)")
    serve.add_argument("--log-level", choices=LOG_LEVELS, help="default: [log] level, else info")
    sub.add_parser("demo", parents=[common], help="echo upstream + gateway + a fresh key")
    sub.add_parser(
        "reload", parents=[common], help="make the running gateway re-read its config (SIGHUP)"
    )
    assertion = sub.add_parser(
        "assertion-key", parents=[common], help="the keys that sign identity assertions"
    )
    assertion_actions = assertion.add_subparsers(dest="action", required=True)
    assertion_actions.add_parser(
        "rotate", parents=[common], help="sign with a new key; the old one stays published"
    )
    assertion_actions.add_parser("list", parents=[common], help="the keys, without secrets")

    for name, extra in (("projects", "name"), ("users", "email"), ("applications", "name")):
        group = sub.add_parser(name, parents=[common], help=f"manage {name}")
        actions = group.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", parents=[common])
        create.add_argument(extra)
        if name != "projects":
            create.add_argument(
                "--permission-set",
                action="append",
                default=[],
                choices=sorted(access.PERMISSION_SETS),
            )
        actions.add_parser("list", parents=[common])

    store = sub.add_parser("store", parents=[common], help="copy or back up the whole store")
    store_actions = store.add_subparsers(dest="action", required=True)
    copy = store_actions.add_parser(
        "copy", parents=[common], help="copy everything into an empty store"
    )
    copy.add_argument(
        "--to", required=True, metavar="TARGET", help="postgresql://... URL or SQLite path"
    )
    backup = store_actions.add_parser(
        "backup", parents=[common], help="online backup of a SQLite store"
    )
    backup.add_argument("path", metavar="PATH")

    keylife_commands.add_parser(sub, common)
    keylife_commands.add_policy_parser(sub, common)

    keys = sub.add_parser("keys", parents=[common], help="manage API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", parents=[common])
    bearer = create.add_mutually_exclusive_group(required=True)
    bearer.add_argument("--user", metavar="ID")
    bearer.add_argument("--application", metavar="ID")
    create.add_argument("--project", metavar="ID")
    create.add_argument("--description", default="")
    create.add_argument("--expires-in", type=parse_duration, metavar="DURATION")
    create.add_argument("--mode", choices=["live", "test"], default="live")
    _policy_options(create)
    listing = actions.add_parser("list", parents=[common])
    listing.add_argument("--page", type=int, default=1)
    for name in ("show", "revoke", "usage"):
        actions.add_parser(name, parents=[common]).add_argument("access_key")
    edit = actions.add_parser("edit", parents=[common])
    edit.add_argument("access_key")
    edit.add_argument("--description")
    edit.add_argument("--project", metavar="ID")
    edit.add_argument("--expires-in", type=_expiry, metavar="DURATION|never")
    _policy_options(edit, editing=True)
    actions.add_parser(
        "audit-policy", parents=[common], help="keys that break the organization's key policy"
    )
    keylife_commands.add_import_parser(actions, common)
    roll = actions.add_parser("roll", parents=[common])
    roll.add_argument("access_key")
    roll.add_argument(
        "--grace",
        type=parse_duration,
        default=0.0,
        metavar="DURATION",
        help="how long the previous secret keeps working (default: 0)",
    )
    return parser


def fail(
    args: argparse.Namespace, status: int, kind: str, message: str, field: str | None = None
) -> int:
    if getattr(args, "json", False):
        error: dict[str, Any] = {"type": kind, "message": message}
        if field:
            error["field"] = field
        print(json.dumps({"error": error}), file=sys.stderr)
    else:
        print(f"gateway: {message}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    cfg_path = getattr(args, "config", None)
    try:
        cfg = config_module.load(config_module.resolve_path(cfg_path))
        if getattr(args, "store", None):
            cfg = dataclasses.replace(cfg, store=cfg.store.pointing_at(args.store))
        if args.command == "serve":
            cmd_serve(args, cfg)
        elif args.command == "demo":
            cmd_demo(args, cfg)
        elif args.command == "reload":
            cmd_reload(args, cfg)
        elif args.command == "assertion-key":
            emit(args, *cmd_assertion_key(args, cfg))
        else:
            asyncio.run(with_store(STORE_COMMANDS[args.command], args, cfg))
    except ConfigError as exc:
        return fail(args, 2, "invalid_config", str(exc))
    except access.ServiceError as exc:
        return fail(args, 2, exc.type, exc.message, exc.field)
    except StoreMissing as exc:
        init = f"gateway --config {cfg_path} init" if cfg_path else "gateway init"
        return fail(args, 1, "store_missing", f"{exc}; create it with `{init}`")
    except StoreUnavailable as exc:
        return fail(args, 1, "store_unavailable", str(exc))
    except KeyFileError as exc:
        return fail(args, 1, "assertion_key_file", str(exc))
    except KeyboardInterrupt:
        return 130
    return 0
