"""The reference pages of the docs, made from the code they describe when the site is built
(docs/hooks.py): the config file from ``core.config_keys``, the command line from the
``gateway`` parser, the admin API from its OpenAPI document. Nothing here is written by hand,
so none of it can fall behind the code.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from admin import openapi
from core.config_keys import ABSENT, TABLES, Key, Table
from gatewaycli.cli import build_parser

GENERATED = "<!-- Generated from the code when the site is built: edit the code, not this. -->\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


# -- the config file -----------------------------------------------------------------------------


def _toml(value: Any) -> str:
    if value is ABSENT:
        return "*(absent)*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, int):
        return f"`{value:_}`".replace("_", ",") if value >= 100_000 else f"`{value}`"
    return f"`{json.dumps(value)}`"


def _key_row(key: Key) -> str:
    default = "**required**" if key.required else _toml(key.default)
    return f"| `{key.name}` | {default} | {_cell(key.doc)} |"


def _table(table: Table) -> str:
    header = f"[[{table.name}]]" if table.array else f"[{table.name}]"
    rows = "\n".join(_key_row(key) for key in table.keys)
    return (
        f"## `{header}` {{#{table.name}}}\n\n{table.doc}\n\n"
        f"| Key | Default | Meaning |\n| --- | --- | --- |\n{rows}\n"
    )


def config_reference() -> str:
    tables = "\n".join(_table(table) for table in TABLES)
    return f"""{GENERATED}
# Configuration reference

The gateway reads one TOML file: `--config PATH`, else `$GATEWAY_CONFIG`, else `./gateway.toml`.
A key not listed here stops start-up with an error naming the file, the table and the keys it
knows; so does a value of the wrong type or range, each with a sentence saying what to write
instead. Relative paths are relative to the config file. `gateway reload` (SIGHUP) re-reads the
file; see [Operations](../operations.md#operating-it) for what a reload changes.

This page is made from the declaration the parser itself uses (`core/config_keys.py`), with
every default as the parser applies it. The example config, with every key, is in
[Getting started](../getting-started.md#the-example-config).

{tables}"""


# -- the command line ----------------------------------------------------------------------------


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().split()).removeprefix("usage: ")


def _option_row(action: argparse.Action) -> str:
    names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
    if action.nargs != 0 and action.option_strings:
        choices = "{" + ",".join(map(str, action.choices)) + "}" if action.choices else ""
        metavar = action.metavar or choices or action.dest.upper()
        names += f" `{metavar}`"
    elif action.choices and not action.option_strings:
        names += " (" + ", ".join(f"`{c}`" for c in action.choices) + ")"
    text = action.help if action.help and action.help != argparse.SUPPRESS else ""
    default = action.default
    if default not in (None, False, [], argparse.SUPPRESS) and action.option_strings:
        text += f" (default: `{default}`)"
    return f"| {names} | {_cell(text)} |"


_COMMON = {"--config", "--store", "--json", "--help"}


def _command(parser: argparse.ArgumentParser, path: str, helptext: str) -> list[str]:
    sections: list[str] = []
    own = [
        a
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction)
        and not (set(a.option_strings) & _COMMON)
        and not (path and "--version" in a.option_strings)
    ]
    children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if path:
        level = "#" * min(path.count(" ") + 2, 4)
        lines = [f"{level} `gateway {path}`", ""]
        if helptext:
            lines += [helptext[0].upper() + helptext[1:] + ".", ""]
        if parser.description:
            lines += [parser.description, ""]
        lines += ["```", _usage(parser), "```", ""]
        if own:
            lines += ["| Argument | Meaning |", "| --- | --- |", *map(_option_row, own), ""]
        sections.append("\n".join(lines))
    for group in children:
        helps = {a.dest: a.help or "" for a in group._choices_actions}
        for name, child in group.choices.items():
            sections += _command(child, f"{path} {name}".strip(), helps.get(name, ""))
    return sections


def cli_reference() -> str:
    parser = build_parser()
    common = [a for a in parser._actions if set(a.option_strings) & (_COMMON | {"--version"})]
    rows = "\n".join(_option_row(a) for a in common)
    commands = "\n".join(_command(parser, "", ""))
    return f"""{GENERATED}
# Command line reference

`gateway` is the command the `authgateway` distribution installs. Every command takes the
options below. Errors go to stderr as one sentence (a JSON object with `--json`); the exit
status is 2 for a usage, configuration or validation problem and 1 when the store cannot be
used. `gateway completion bash|zsh` prints a completion script for your shell.

This page is made from the command's own parser (`gatewaycli/cli.py`).

## Options of every command

| Option | Meaning |
| --- | --- |
{rows}

## Commands

{commands}"""


# -- the admin API -------------------------------------------------------------------------------


def _schema_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name.lower()})"
    if "allOf" in schema:
        return " and ".join(_schema_text(part) for part in schema["allOf"])
    kind = schema.get("type", "object")
    kind = " or ".join(kind) if isinstance(kind, list) else kind
    if kind == "array" and "items" in schema:
        return f"array of {_schema_text(schema['items'])}"
    details = []
    if "enum" in schema:
        details.append("one of " + ", ".join(f"`{v}`" for v in schema["enum"]))
    for word in ("minLength", "maxLength", "minimum", "maximum", "maxItems", "pattern", "format"):
        if word in schema:
            details.append(f"{word} `{schema[word]}`")
    return kind + (f" ({'; '.join(details)})" if details else "")


def _properties(schema: dict[str, Any]) -> list[str]:
    props = schema.get("properties", {})
    if not props:
        return []
    required = set(schema.get("required", []))
    rows = [
        f"| `{name}` | {_cell(_schema_text(prop))} | {'yes' if name in required else ''} | "
        f"{_cell(prop.get('description', ''))} |"
        for name, prop in props.items()
    ]
    return ["| Field | Type | Required | Meaning |", "| --- | --- | --- | --- |", *rows, ""]


def _operation(method: str, path: str, op: dict[str, Any], shared: list[Any]) -> str:
    title = op.get("summary") or op["operationId"].replace("_", " ").capitalize()
    lines = [f"### {title}", "", f"`{method.upper()} {path}`", ""]
    if op.get("description"):
        lines += [op["description"], ""]
    params = [*shared, *op.get("parameters", [])]
    if params:
        lines += ["| Parameter | In | Type | Meaning |", "| --- | --- | --- | --- |"]
        for p in params:
            lines.append(
                f"| `{p['name']}` | {p['in']} | {_cell(_schema_text(p.get('schema', {})))} | "
                f"{_cell(p.get('description', ''))} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if body:
        schema = body["content"]["application/json"]["schema"]
        lines += [f"Request body: {_schema_text(schema)}", ""]
    answers = []
    for status, response in op.get("responses", {}).items():
        content = response.get("content", {}).get("application/json", {})
        shape = _schema_text(content["schema"]) if "schema" in content else "no body"
        answers.append(f"`{status}` {shape}")
    lines += ["Responses: " + ", ".join(answers), ""]
    return "\n".join(lines)


def admin_api_reference() -> str:
    document = openapi.document()
    operations = []
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method != "parameters":
                operations.append(_operation(method, path, op, shared))
    schemas = []
    for name, schema in document["components"]["schemas"].items():
        schemas += [f"### {name}", "", _schema_text(schema) + ".", "", *_properties(schema)]
    info = document["info"]
    return f"""{GENERATED}
# Admin API reference

{info["description"]}

The admin API listens on `[admin] listen` (loopback by default). Every request carries a key's
secret in `X-Auth-Token` (or `Authorization: Bearer`); what it may do follows from that key's
bearer and permission sets. Errors are JSON objects: `{{"error": {{"type", "message", ...}}}}`.
The running gateway serves this document at `/v1/openapi.json`; this page is made from it
(`admin/openapi.py`), whose request bodies are the declarations the API validates with.

## Operations

{chr(10).join(operations)}
## Schemas

{chr(10).join(schemas)}"""
