"""The ``gateway`` command: the composition root, and the local operator's key tools.

The commands that work on the store are declared in ``gatewaycli.commands``, ``.keys``,
``.entities`` and ``.plans`` (how: ``gatewaycli.registry``); this module declares ``serve``,
``demo``, ``reload`` and ``assertion-key``, builds the parser from every declaration, and handles
the errors every command shares. Every command takes ``--json``; errors go to stderr as one
sentence (or a JSON object with ``--json``), exit status 2 for a usage, configuration or
validation problem and 1 when the store cannot be used.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from typing import Any, NoReturn

from admin import access
from core import config as config_module
from core.assertion_keys import KeyFileError
from core.config import LOG_LEVELS, Config, ConfigError
from core.store import StoreMissing, StoreUnavailable
from core.version import DISTRIBUTION, VERSION
from gatewaycli import entities as entities  # declares its commands
from gatewaycli import keylife as keylife  # declares its commands (after keys: it adds to them)
from gatewaycli import keys as keys  # declares its commands
from gatewaycli import pidfile, registry
from gatewaycli import plans as plans  # declares its commands
from gatewaycli.assertion_key import cmd_assertion_key
from gatewaycli.commands import with_store  # declares init and store
from gatewaycli.completion import SHELLS, script
from gatewaycli.options import join_dashed_values
from gatewaycli.output import emit

# The order of `gateway --help`; commands declared elsewhere follow in their declaration order.
HELP_ORDER = (
    "init",
    "serve",
    "demo",
    "reload",
    "keys",
    "projects",
    "users",
    "applications",
    "plans",
    "usage",
)


def _serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, help="worker processes (default: [server] workers)")
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="the process log's level (default: [log] level, else info)",
    )


@registry.command("serve", "run the gateway", _serve_options, store=False)
def cmd_serve(args: argparse.Namespace, cfg: Config) -> None:
    from gatewaycli import server

    server.setup_logging((args.log_level or cfg.log_level or "info").upper())
    server.serve(cfg, args.workers or cfg.workers)


@registry.command("reload", "make the running gateway re-read its config (SIGHUP)", store=False)
def cmd_reload(args: argparse.Namespace, cfg: Config) -> None:
    """Tell the running `serve` (and so its workers) to re-read the config: SIGHUP."""
    if cfg.pid_file is None:
        raise access.Invalid(
            "set [server] pid_file so gateway reload can find the running gateway, "
            "or send it SIGHUP yourself (kill -HUP PID)",
            "pid_file",
        )
    # A pid file left by a gateway killed with SIGKILL may name another program by now:
    # SIGHUP goes only to a process that runs `serve` (``gatewaycli.pidfile``).
    pid = pidfile.running(cfg.pid_file)
    try:
        if pid is None:
            raise ProcessLookupError(
                "no such file" if not cfg.pid_file.exists() else "no process of its pid serves"
            )
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise access.Invalid(
            f"{cfg.pid_file}: no running gateway found there ({why}); is it serving?", "pid_file"
        ) from None
    emit_text = f"Sent SIGHUP to the gateway (pid {pid}): it re-reads {cfg.source}"
    print(json.dumps({"reloaded": pid}) if args.json else emit_text)


@registry.command("demo", "an echo upstream, a gateway and a fresh key, to try", store=False)
def cmd_demo(args: argparse.Namespace, cfg: Config) -> None:
    from gatewaycli import demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    demo.run_demo(cfg)


assertion_key = registry.group("assertion-key", "the keys that sign identity assertions")


@assertion_key.command("rotate", "sign with a new key; the old one stays published", store=False)
@assertion_key.command("list", "the keys, without secrets", store=False)
def cmd_assertion_keys(args: argparse.Namespace, cfg: Config) -> None:
    emit(args, *cmd_assertion_key(args, cfg))


# -- parser -------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse's, answering a usage error with ``--json`` as one JSON object, like the other
    errors (exit status 2 either way)."""

    def error(self, message: str) -> NoReturn:
        if "--json" in sys.argv[1:]:
            error = {"type": "invalid_arguments", "message": f"{self.prog}: {message}"}
            print(json.dumps({"error": error}), file=sys.stderr)
            raise SystemExit(2)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help="config file (default: $GATEWAY_CONFIG, else ./gateway.toml)",
    )
    common.add_argument(
        "--store",
        default=argparse.SUPPRESS,
        metavar="PATH|URL",
        help="the store to use instead of the config's [store]: a SQLite path or a "
        "postgresql:// URL",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser = _Parser(prog="gateway", parents=[common], description="API-key authentication gateway")
    parser.add_argument(
        "--version",
        action="version",
        version=f"gateway {VERSION} (the {DISTRIBUTION} distribution)",
        help="print the version and exit",
    )
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    registry.add_commands(sub, common, HELP_ORDER)
    # Needs no config and no store: it describes the parser (`_main` answers it first).
    completion = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description='bash: eval "$(gateway completion bash)" in ~/.bashrc; '
        'zsh: eval "$(gateway completion zsh)" in ~/.zshrc after compinit',
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete in")
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
    try:
        status = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe can be caught, not at the exit
        return status
    except BrokenPipeError:
        # The reader went away (`gateway keys list | head -1`): nothing more to say, and no
        # traceback. stdout is pointed at /dev/null so the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: list[str] | None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(join_dashed_values(raw))
    if args.command == "completion":
        print(script(args.shell, parser), end="")
        return 0
    args.json = getattr(args, "json", False)
    cfg_path = getattr(args, "config", None)
    declared: registry.Command = args.declared
    try:
        cfg = config_module.load(config_module.resolve_path(cfg_path))
        if getattr(args, "store", None):
            cfg = dataclasses.replace(cfg, store=cfg.store.pointing_at(args.store))
        if declared.store:
            asyncio.run(with_store(declared.run, args, cfg))
        else:
            declared.run(args, cfg)
    except ConfigError as exc:
        return fail(args, 2, "invalid_config", str(exc))
    except access.ServiceError as exc:
        return fail(args, 2, exc.type, exc.message, exc.field)
    except StoreMissing as exc:
        init = f"gateway --config {cfg_path} init" if cfg_path else "gateway init"
        first = f"{exc.before_init}, then " if exc.before_init else ""
        return fail(args, 1, "store_missing", f"{exc}; {first}create the store with `{init}`")
    except StoreUnavailable as exc:
        return fail(args, 1, "store_unavailable", str(exc))
    except KeyFileError as exc:
        return fail(args, 1, "assertion_key_file", str(exc))
    except KeyboardInterrupt:
        return 130
    return 0
