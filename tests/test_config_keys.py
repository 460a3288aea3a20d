"""The declaration of the config's keys (core.config_keys) is what the parser uses: the keys it
accepts, and defaults equal to what it makes of an empty table; config.example.toml shows every
declared key and no other."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from core.config import ConfigError, parse
from core.config_keys import ABSENT, ROUTES, TABLES, Table
from tests.support import ROOT

ROUTE = {"prefix": "/a", "upstream": "http://127.0.0.1:9"}


def declared(table: Table) -> dict[str, Any]:
    return {key.name: key.default for key in table.keys if key.default is not ABSENT}


def test_every_declared_default_is_the_parsers(tmp_path: Path) -> None:
    """A file that writes out every declared default parses to the same config as one that
    writes none: a default changed on one side only fails here."""
    source = tmp_path / "gateway.toml"
    written: dict[str, Any] = {t.name: declared(t) for t in TABLES if not t.array}
    written["routes"] = [{**declared(ROUTES), **ROUTE}]
    assert parse(written, source) == parse({"routes": [ROUTE]}, source)


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_the_parser_accepts_exactly_the_declared_keys(table: Table, tmp_path: Path) -> None:
    data: dict[str, Any] = (
        {"routes": [dict(ROUTE, unknown_key=1)]}
        if table.array
        else {table.name: {"unknown_key": 1}}
    )
    with pytest.raises(ConfigError) as caught:
        parse(data, tmp_path / "gateway.toml")
    known = re.search(r"known keys: (.*)\)", str(caught.value))
    assert known is not None, caught.value
    assert set(known.group(1).split(", ")) == table.names()


def example_keys() -> dict[str, set[str]]:
    """table -> the keys config.example.toml shows in it, commented out or not."""
    shown: dict[str, set[str]] = {}
    table = ""
    for line in (ROOT / "config.example.toml").read_text().splitlines():
        header = re.fullmatch(r"\[\[?(\w+)\]\]?", line.strip())
        if header:
            table = header.group(1)
            continue
        key = re.match(r"#? ?(\w+) = ", line)
        if key and table:
            shown.setdefault(table, set()).add(key.group(1))
    return shown


def test_the_example_config_shows_every_declared_key() -> None:
    shown = example_keys()
    assert set(shown) == {t.name for t in TABLES}
    for table in TABLES:
        assert shown[table.name] == table.names(), table.name
