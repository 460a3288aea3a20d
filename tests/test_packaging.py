"""The distribution as a user gets it: `python -m build` makes an sdist and, from that sdist, a
wheel; the wheel installs into a fresh virtual environment in a temporary directory outside the
checkout, and `gateway demo` runs from there with the console's files served.

The fresh environment gets the wheel with ``--no-deps`` and borrows the dependencies this test
runs with (one path line in a .pth file): fetching them from the package index on every run
would make the suite slow and dependent on the network. That path is added as a plain entry, so
the checkout's editable install (a finder hook that a .pth in a *site* directory would run) is
not loaded; `pip check` then holds the wheel's declared requirements against what is there, and
every module of the project is asserted to come from the new environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT, run_demo

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]


def run(*command: str | Path, cwd: Path, timeout: float = 180) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel built from this checkout (without isolation: the build backend is one of
    the test dependencies, so no download)."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT, cwd=out)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment outside the checkout with the wheel installed; its bin/."""
    home = tmp_path_factory.mktemp("installed")
    assert not home.is_relative_to(ROOT)
    venv = home / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=home)
    borrowed = sysconfig.get_paths()["purelib"] + "\n"
    Path(_purelib(venv, home), "borrowed-dependencies.pth").write_text(borrowed)
    (wheel,) = dist.glob("authgateway-*.whl")
    pip = (sys.executable, "-m", "pip", "--python", venv / "bin" / "python")
    run(*pip, "install", "-q", "--no-deps", "--no-index", wheel, cwd=home)
    run(*pip, "check", cwd=home)
    return venv / "bin"


def _purelib(venv: Path, cwd: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return run(venv / "bin" / "python", "-c", code, cwd=cwd).strip()


def test_the_sdist_and_wheel_hold_what_a_user_needs(dist: Path) -> None:
    (sdist,) = dist.glob(f"authgateway-{VERSION}.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "config.example.toml", "admin/console/index.html"} <= names
    (wheel,) = dist.glob(f"authgateway-{VERSION}-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as whl:
        files = set(whl.namelist())
        metadata = whl.read(f"authgateway-{VERSION}.dist-info/METADATA").decode()
        entry_points = whl.read(f"authgateway-{VERSION}.dist-info/entry_points.txt").decode()
    for console_file in ("index.html", "console.js", "console.css"):
        assert f"admin/console/{console_file}" in files
    assert f"authgateway-{VERSION}.dist-info/licenses/LICENSE" in files
    assert "License-Expression: Apache-2.0" in metadata
    # the distribution is authgateway, the command it installs is gateway
    assert "gateway = gatewaycli.cli:main" in entry_points


def test_the_installed_command_says_its_version(installed: Path) -> None:
    home = installed.parent.parent
    out = run(installed / "gateway", "--version", cwd=home)
    assert out.strip() == f"gateway {VERSION} (the authgateway distribution)"
    where = run(
        installed / "python",
        "-c",
        "import core, gateway, admin, gatewaycli; "
        "print('\\n'.join(m.__file__ for m in (core, gateway, admin, gatewaycli)))",
        cwd=home,
    )
    for module in where.split():
        assert Path(module).is_relative_to(installed.parent), where


def test_gateway_demo_runs_from_the_installed_wheel(installed: Path) -> None:
    home = installed.parent.parent
    demo = home / "demo"
    demo.mkdir()

    def check(text: str) -> None:
        console = text.split("The admin console: ", 1)[1].split()[0]
        page = httpx.get(console)
        assert page.status_code == 200 and "Gateway console" in page.text
        for static in ("console.js", "console.css"):
            assert httpx.get(console + static).status_code == 200, static
        secret = text.split("secret key", 1)[1].split()[0]
        metrics = httpx.get(console + "metrics", headers={"X-Auth-Token": secret})
        assert 'gateway_build_info{python="' in metrics.text
        assert f'version="{VERSION}"' in metrics.text

    run_demo(demo, check, command=[str(installed / "gateway")])
