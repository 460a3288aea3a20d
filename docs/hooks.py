"""MkDocs hooks (mkdocs.yml): the reference pages made from the code at build time, and any page
not named in the nav listed under "More" so that a page added without a nav line is still
reachable. The generators live in gatewaycli/reference.py, where lint and mypy check them."""

from __future__ import annotations

from typing import Any

from mkdocs.structure.files import File, Files

from gatewaycli import reference

GENERATED = {
    "reference/config.md": reference.config_reference,
    "reference/cli.md": reference.cli_reference,
    "reference/admin-api.md": reference.admin_api_reference,
}


def on_files(files: Files, config: Any) -> Files:
    for path, make in GENERATED.items():
        files.append(File.generated(config, path, content=make()))
    named = set(_nav_paths(config["nav"]))
    more = sorted(
        f.src_uri
        for f in files.documentation_pages()
        if f.src_uri not in named and f.src_uri not in GENERATED
    )
    if more:
        config["nav"].append({"More": more})
    return files


def _nav_paths(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [p for item in nav for p in _nav_paths(item)]
    if isinstance(nav, dict):
        return [p for value in nav.values() for p in _nav_paths(value)]
    return []
