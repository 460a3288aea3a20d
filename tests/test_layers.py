"""The layers point one way: core <- gateway (data plane), core <- admin (control plane), and only
gatewaycli (the `gateway` command) knows both planes."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

# package -> the top-level packages of the project it may import
ALLOWED = {
    "core": {"core"},
    "gateway": {"core", "gateway"},
    "admin": {"core", "admin"},
    "gatewaycli": {"core", "gateway", "admin", "gatewaycli"},
}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", list(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        wrong = imported_packages(path) - ALLOWED[package]
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def gateway_modules(path: Path) -> set[str]:
    """The modules of ``gateway`` that ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("gateway"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gateway"):
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_http_engine_knows_nothing_of_keys_or_routes() -> None:
    """gateway/http/ (server, exchange, upstream pool, watchdog, write batching) imports only
    itself and core: a reader learns HTTP there, admission in gateway/gate.py."""
    for path in sorted((ROOT / "gateway" / "http").rglob("*.py")):
        wrong = {name for name in gateway_modules(path) if not name.startswith("gateway.http")}
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_the_data_plane_loads_without_the_control_plane() -> None:
    probe = (
        "import sys, gateway.app, gateway.verifier, gateway.resources; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'admin', 'gatewaycli'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "[]"


def test_no_code_points_outside_the_repository() -> None:
    """Design notes live in docs/; code cites reasons, not issue numbers or outside files."""
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*")):
            if path.suffix not in (".py", ".js", ".css", ".html"):
                continue
            text = path.read_text(encoding="utf-8")
            for needle in ("issue #", "ARCHITECTURE.md", "STYLE.md", "../shared"):
                assert needle not in text, f"{path.relative_to(ROOT)} mentions {needle!r}"


def test_the_docs_layout_matches_the_tree() -> None:
    layout = (ROOT / "docs" / "layout.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`([a-z_]+/[a-z_/]*(?:\.py)?)`", layout))
    for path in named:
        assert (ROOT / path).exists(), f"docs/layout.md names {path}, which does not exist"
    for package in ALLOWED:
        for module in sorted((ROOT / package).rglob("*.py")):
            relative = module.relative_to(ROOT).as_posix()
            if module.name == "__init__.py" and module.parent.name in ALLOWED:
                continue
            covered = relative in named or any(
                name.endswith("/") and relative.startswith(name) for name in named
            )
            assert covered, f"{relative} is not in docs/layout.md's table"
