"""The docs site builds strictly, its reference pages are made from the code (every config key,
command and admin route appears), a page missing from the nav is still listed, and the README
stays a short entry whose every link to the docs resolves."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from admin import openapi
from core import config as config_module
from core.config_keys import TABLES
from gatewaycli.cli import build_parser
from gatewaycli.completion import places
from tests.support import ROOT


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built from a copy of docs/ with one page that no nav line names."""
    work = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "docs", work / "docs")
    shutil.copy(ROOT / "mkdocs.yml", work / "mkdocs.yml")
    (work / "docs" / "unlisted-page.md").write_text("# A page the nav does not name\n")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(work / "mkdocs.yml")],
        capture_output=True,
        text=True,
        cwd=ROOT,  # the snippets (config.example.toml, deploy/...) are read from the checkout
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return work / "build" / "site"


def text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def test_the_config_reference_names_every_key_with_its_default(site: Path) -> None:
    page = text(site / "reference" / "config.html")
    for table in TABLES:
        assert f"[{table.name}]" in page
        for key in table.keys:
            assert key.name in page
            assert key.doc.replace("`", "")[:25] in page, key.name


def test_the_cli_reference_has_every_command(site: Path) -> None:
    page = text(site / "reference" / "cli.html")
    for place in places(build_parser()):
        if place.path:
            assert f"gateway {place.path}" in page, place.path
    assert "--expires-in" in page and "--version" in page


def test_the_admin_api_reference_has_every_operation(site: Path) -> None:
    page = text(site / "reference" / "admin-api.html")
    document = openapi.document()
    for path, item in document["paths"].items():
        for method in item:
            if method != "parameters":
                assert f"{method.upper()} {path}" in page, (method, path)
    for schema in document["components"]["schemas"]:
        assert schema in page


def test_the_example_config_and_deploy_files_are_included_whole(site: Path) -> None:
    example = (ROOT / "config.example.toml").read_text().splitlines()
    assert example[-1] in text(site / "getting-started.html")
    assert "ProtectSystem=strict" in text(site / "deploy.html")
    assert "auth_request" in text(site / "integration.html")


def test_a_page_missing_from_the_nav_is_listed_under_more(site: Path) -> None:
    index = (site / "index.html").read_text()
    assert "unlisted-page.html" in index and "More" in index


def slug(heading: str) -> str:
    """The anchor MkDocs (Python-Markdown's toc) gives a heading."""
    words = re.sub(r"[^\w\s-]", "", re.sub(r"`", "", heading)).strip().lower()
    return re.sub(r"[-\s]+", "-", words)


def test_the_readme_is_short_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert sum(link.startswith("docs/") for link in links) >= 9
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), f"README links to {link}, which is not a file"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(), re.M)
            assert anchor in {slug(h) for h in headings}, f"README links to {link}: no such heading"


def test_every_toml_block_in_the_docs_is_a_config_the_gateway_accepts(tmp_path: Path) -> None:
    """A key renamed or a value tightened in the code fails here, not in a reader's terminal."""
    blocks = 0
    for page in sorted((ROOT / "docs").glob("*.md")):
        for block in re.findall(r"```toml\n(.*?)```", page.read_text(), re.S):
            if block.startswith("--8<--"):  # an included file: config.example.toml, deploy/
                continue
            try:
                config_module.parse(tomllib.loads(block), tmp_path / "gateway.toml")
            except (config_module.ConfigError, tomllib.TOMLDecodeError) as exc:
                pytest.fail(f"{page.name}: {exc}\n{block}")
            blocks += 1
    assert blocks >= 5
