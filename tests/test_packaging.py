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

import configparser
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
import yaml

from core import config as config_module
from tests.support import ROOT, run_demo, wait_for

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

    _, printed = run_demo(demo, check, command=[str(installed / "gateway")])
    # the line that revokes the demo's key names the command that ran it, not this checkout's
    assert f"{installed / 'gateway'} --config " in printed and ".venv/bin" not in printed


# -- deploy/: the image's install script, the systemd unit, the compose file ---------------------

DEPLOY = ROOT / "deploy"
# Fixed ports from this suite's own range: the unit's command line is run as written, and the
# installed config's listen addresses are the only thing changed in it.
PROXY_PORT, ADMIN_PORT = 25080, 25081


@pytest.fixture(scope="module")
def prefix(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/install.sh (the Dockerfile's one install step) run in a fresh directory, offline:
    the wheel without its dependencies, which are borrowed from this test's environment."""
    home = tmp_path_factory.mktemp("host")
    prefix = home / "opt" / "gateway"
    (wheel,) = dist.glob("authgateway-*.whl")
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "PIP_NO_INDEX": "1",
        "PIP_NO_DEPS": "1",
        "GATEWAY_BORROW_SITE_PACKAGES": sysconfig.get_paths()["purelib"],
    }
    env.pop("GATEWAY_USER", None)
    done = subprocess.run(
        ["sh", str(DEPLOY / "install.sh"), str(wheel), str(prefix)],
        capture_output=True,
        text=True,
        cwd=home,
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"gateway {VERSION}" in done.stdout
    return prefix


def test_install_script_lays_out_the_prefix(prefix: Path) -> None:
    config = config_module.load(prefix / "etc" / "gateway.toml")
    assert config.store.path == prefix / "data" / "gateway.db"
    assert config.pid_file == prefix / "data" / "gateway.pid"
    assert config.credits.journal_dir == prefix / "data" / "credits-journal"
    assert (prefix / "data").stat().st_mode & 0o777 == 0o700
    assert (
        "complete -F _gateway gateway"
        in (prefix / "share" / "bash-completion" / "completions" / "gateway").read_text()
    )
    assert (
        (prefix / "share" / "zsh" / "site-functions" / "_gateway")
        .read_text()
        .startswith("#compdef gateway")
    )


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "gateway.service")
    return parser


def test_the_systemd_units_commands_serve_reload_and_stop(prefix: Path) -> None:
    """ExecStart, Environment and WorkingDirectory as the unit says (its /opt/gateway being
    this prefix): the gateway serves, ExecReload's SIGHUP keeps it serving, SIGTERM stops it
    cleanly within TimeoutStopSec."""
    service = unit()["Service"]

    def here(value: str) -> str:
        return value.replace("/opt/gateway", str(prefix))

    config = prefix / "etc" / "gateway.toml"
    config.write_text(
        config.read_text()
        .replace('"127.0.0.1:8080"', f'"127.0.0.1:{PROXY_PORT}"')
        .replace('"127.0.0.1:8081"', f'"127.0.0.1:{ADMIN_PORT}"')
    )
    name, value = here(service["Environment"]).split("=", 1)
    env = {**os.environ, name: value}
    workdir = Path(here(service["WorkingDirectory"]))
    gateway = here(service["ExecStart"]).split()
    run(gateway[0], "--config", value, "init", cwd=workdir)  # the unit's documented first step
    process = subprocess.Popen(
        gateway, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        ready = f"http://127.0.0.1:{ADMIN_PORT}/readyz"

        def answers() -> bool:
            try:
                return httpx.get(ready).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(answers, timeout=30, interval=0.1)
        pid = int((prefix / "data" / "gateway.pid").read_text())
        assert pid == process.pid
        reload = service["ExecReload"].replace("$MAINPID", str(pid)).split()
        subprocess.run(reload, check=True, timeout=10)
        wait_for(answers, timeout=10, interval=0.1)
        assert process.poll() is None
        process.terminate()  # KillSignal=SIGTERM
        process.wait(timeout=float(service["TimeoutStopSec"]))
        assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def test_the_unit_runs_as_its_user_and_writes_only_its_data(prefix: Path) -> None:
    service = unit()["Service"]
    assert service["User"] == "gateway" and service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/opt/gateway/data" == service["WorkingDirectory"]
    # what the service writes (store, pid file) is under that directory in the installed config
    config = config_module.load(prefix / "etc" / "gateway.toml")
    for written in (config.store.path, config.pid_file):
        assert written is not None and written.is_relative_to(prefix / "data")


def test_the_image_and_compose_file_use_the_install_script_and_a_valid_config() -> None:
    """Containers cannot run here: what is held is that the Dockerfile's install step is the
    script tested above, and that compose mounts a config the gateway accepts where the image
    looks for it, beside PostgreSQL and Redis."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    runs = [line for line in dockerfile.splitlines() if line.startswith("RUN ")]
    assert len(runs) == 1 and "deploy/install.sh /src /opt/gateway" in runs[0]
    assert "GATEWAY_CONFIG=/opt/gateway/etc/gateway.toml" in dockerfile
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert set(compose["services"]) == {"gateway", "postgres", "redis"}
    gateway = compose["services"]["gateway"]
    assert "./gateway.toml:/opt/gateway/etc/gateway.toml:ro" in gateway["volumes"]
    assert gateway["build"]["dockerfile"] == "deploy/Dockerfile"
    config = config_module.load(DEPLOY / "gateway.toml")
    assert config.store.url == "postgresql://gateway@postgres:5432/gateway"
    assert config.ratelimit.backend == "redis" and config.ratelimit.url.startswith("redis://redis:")
    assert str(config.assertion.key_file).startswith("/opt/gateway/data/")
    assert str(config.credits.journal_dir).startswith("/opt/gateway/data/")
