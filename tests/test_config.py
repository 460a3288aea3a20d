"""Configuration: the example loads, and each mistake stops start-up with a useful sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import config
from core.config import ConfigError
from tests.support import ROOT, run_cli


def test_example_config_loads() -> None:
    cfg = config.load(ROOT / "config.example.toml")
    assert cfg.listen.port == 8080 and cfg.admin_listen is not None
    assert cfg.store.path == ROOT / "gateway.db"  # relative to the config file
    assert cfg.routes[0].prefix == "/echo" and cfg.routes[0].auth == "required"
    assert cfg.cache.invalidation_interval_seconds == 1.0


ROUTE = '[[routes]]\nprefix = "/x"\nupstream = "http://127.0.0.1:1"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[cache]\nttl = 5\n", "[cache]: unknown key 'ttl' (known keys: "),
        ("[server]\nworkers = 'two'\n", "[server]: workers must be an int, not 'two'"),
        ("[server]\nworkers = 0\n", "workers must be at least 1"),
        ("[server]\naccept_grace_seconds = -1\n", "accept_grace_seconds must be at least 0"),
        (
            "[server]\ntrusted_proxies = ['localhost']\n",
            "trusted_proxies entry 'localhost' is not an IP address or network",
        ),
        ("[server]\ntrusted_proxies = '127.0.0.1'\n", "trusted_proxies must be a list"),
        ("[server]\nlisten = 'localhost'\n", "listen 'localhost' must be 'host:port'"),
        ("[keys]\nprefix = 'Bad_One'\n", "[keys]: prefix 'Bad_One' must be"),
        ("[cache]\nttl_seconds = true\n", "ttl_seconds must be an int or float, not True"),
        (
            '[[routes]]\nprefix = "/x"\nupstream = "htp://x"\n',
            "routes[0]: upstream 'htp://x' is not an http(s) URL",
        ),
        ('[[routes]]\nprefix = "x"\nupstream = "http://x"\n', "routes[0]: prefix 'x' must start"),
        ('[[routes]]\nprefix = "/x/"\nupstream = "http://x"\n', "and not end with one"),
        ('[[routes]]\nprefix = "/a/../b"\nupstream = "http://x"\n', "must not contain empty"),
        ('[[routes]]\nupstream = "http://x"\n', "routes[0]: prefix and upstream are required"),
        (ROUTE + 'auth = "sometimes"\n', "auth must be one of required, optional, none"),
        (ROUTE + "projects = [1]\n", "projects must be a list of project ids"),
        (ROUTE + "timeout_seconds = 0\n", "timeout_seconds must be at least"),
        (ROUTE + "colour = 'red'\n", "routes[0]: unknown key 'colour'"),
        (ROUTE + ROUTE, "routes[1]: prefix '/x' is already routed"),
        ("routes = 3\n", "routes must be an array of tables"),
        (
            '[store]\npath = "a.db"\nurl = "postgresql://u@h/d"\n',
            "[store]: path and url name two stores: keep exactly one of them",
        ),
        ('[store]\nurl = "mysql://u:pw@h/d"\n', "url 'mysql://u:***@h/d' is not a postgresql://"),
        (
            '[store]\nurl = "postgresql://h/d"\npool_max_size = 0\n',
            "pool_max_size must be at least 1",
        ),
        (
            '[store]\nurl = "postgresql://h/d"\npool_min_size = 5\npool_max_size = 2\n',
            "pool_max_size must be at least pool_min_size (5)",
        ),
        (
            '[store]\nurl = "postgresql://pgbouncer/d"\ntransaction_pooler = true\n',
            "listen_url is needed with transaction_pooler = true: LISTEN and the migrations",
        ),
        (
            '[store]\nurl = "postgresql://h/d"\nlisten_url = "h:5432"\n',
            "listen_url 'h:5432' is not a postgresql://",
        ),
        (
            '[store]\npath = "a.db"\nlisten_url = "postgresql://h/d"\n',
            "listen_url applies to a PostgreSQL store only",
        ),
        (
            '[store]\nurl = "postgresql://h/d"\npool_idle_seconds = 0\n',
            "pool_idle_seconds must be at least 0.1",
        ),
        ("[server\n", "is not valid TOML"),
    ],
)
def test_mistakes(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pass --config, set GATEWAY_CONFIG"):
        config.load(tmp_path / "nope.toml")


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_CONFIG", "/from/env.toml")
    assert config.resolve_path("/explicit.toml") == Path("/explicit.toml")
    assert config.resolve_path(None) == Path("/from/env.toml")
    monkeypatch.delenv("GATEWAY_CONFIG")
    assert config.resolve_path(None) == Path("gateway.toml")


def test_cli_reports_config_errors_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[[routes]]\nprefix = "/x"\nupstream = "htp://x"\n')
    result = run_cli("--config", str(path), "keys", "list", check=False)
    assert result.returncode == 2
    assert "upstream 'htp://x' is not an http(s) URL" in result.stderr
    assert "Traceback" not in result.stderr
