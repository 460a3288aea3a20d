"""How a command of ``gateway`` is declared: one decorated function per command.

A command is a function and a sentence of help; its options are declared by a function beside it::

    keys = group("keys", "manage API keys")

    def _revoke_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("access_key", help="the key's access key (GWK...)")

    @keys.command("revoke", "revoke a key for good", _revoke_options)
    async def revoke(args, cfg, db) -> None: ...

``gateway keys revoke GWK...`` then opens the store, runs ``revoke`` and closes the store; a
command declared with ``store=False`` is called as ``run(args, cfg)`` instead (``serve``). A
top-level command is declared with :func:`command`. The parser (``gatewaycli.cli``) is built from
what the command modules it imports have declared, in that order; every command and option must
carry help (a test walks the parser).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.config import Config
from core.store import Database

StoreRun = Callable[[argparse.Namespace, Config, Database], Awaitable[None]]
PlainRun = Callable[[argparse.Namespace, Config], None]
Options = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Any  # StoreRun, or PlainRun when ``store`` is False
    options: Options | None = None
    store: bool = True  # open the store around ``run`` (``init`` creates it)
    description: str = ""  # a longer text for ``--help``, when the one line is not enough


@dataclass
class Group:
    """A command with actions (``gateway keys create``)."""

    name: str
    help: str
    commands: list[Command] = field(default_factory=list)

    def command(
        self,
        name: str,
        help: str,
        options: Options | None = None,
        store: bool = True,
        description: str = "",
    ) -> Callable[[Any], Any]:
        def register(run: Any) -> Any:
            self.commands.append(Command(name, help, run, options, store, description))
            return run

        return register


# In declaration order: the order of `gateway --help`.
DECLARED: list[Group | Command] = []


def group(name: str, help: str) -> Group:
    declared = Group(name, help)
    DECLARED.append(declared)
    return declared


def command(
    name: str, help: str, options: Options | None = None, store: bool = True, description: str = ""
) -> Callable[[Any], Any]:
    """A top-level command (``gateway init``)."""

    def register(run: Any) -> Any:
        DECLARED.append(Command(name, help, run, options, store, description))
        return run

    return register


def add_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    order: tuple[str, ...] = (),
) -> None:
    """Every declared command under ``subparsers``, those named in ``order`` first; each
    parser's defaults name its Command."""
    ranked = sorted(DECLARED, key=lambda d: order.index(d.name) if d.name in order else len(order))
    for declared in ranked:
        if isinstance(declared, Command):
            _add(subparsers, declared, common)
            continue
        parser = subparsers.add_parser(
            declared.name, parents=[common], help=declared.help, description=declared.help
        )
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        for cmd in declared.commands:
            _add(actions, cmd, common)


def _add(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    cmd: Command,
    common: argparse.ArgumentParser,
) -> None:
    parser = subparsers.add_parser(
        cmd.name,
        parents=[common],
        help=cmd.help,
        description=cmd.description or cmd.help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if cmd.options is not None:
        cmd.options(parser)
    parser.set_defaults(declared=cmd)
