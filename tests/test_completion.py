"""`gateway completion bash|zsh`: the scripts the command prints, loaded into a real bash and a
real zsh, offer the parser's commands, options and choices."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatewaycli.cli import build_parser
from gatewaycli.completion import places

# (words after `gateway`, the last being completed) -> words that must be offered
CASES = [
    (["k"], {"keys"}),
    (["keys", ""], {"create", "list", "revoke", "roll", "--json"}),
    (["keys", "create", "--"], {"--user", "--project", "--expires-in", "--mode", "--config"}),
    (["keys", "create", "--mode", ""], {"live", "test"}),
    (["--config", "x.toml", "keys", "roll", "--"], {"--grace"}),
    (["serve", "--log-level", ""], {"debug", "info", "warning", "error"}),
    (["completion", ""], {"bash", "zsh"}),
    (["users", "create", "--permission-set", "I"], {"IAMManager"}),
]


def completion_script(shell: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gatewaycli", "completion", shell],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "gateway.bash"
    path.write_text(completion_script("bash"))
    return path


@pytest.fixture(scope="module")
def zsh_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("zsh") is None:
        pytest.fail("zsh is not installed (apt-get install zsh; .ci/run installs it)")
    path = tmp_path_factory.mktemp("completion") / "_gateway"
    path.write_text(completion_script("zsh"))
    return path


def bash_offers(script: Path, words: list[str]) -> set[str]:
    quoted = " ".join(f"'{w}'" for w in ["gateway", *words])
    program = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; _gateway; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "--norc", "-c", program], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def zsh_offers(script: Path, words: list[str]) -> set[str]:
    """The words the completion function hands to compadd (and _files for paths), as a zsh
    completion widget would call it; compadd's own prefix filter is applied here."""
    quoted = " ".join(f"'{w}'" for w in ["gateway", *words])
    program = (
        f"compdef() {{ : }}; source {script}; "
        'compadd() { [[ $1 == -- ]] && shift; print -l -- "$@" }; _files() { print "<files>" }; '
        f"words=({quoted}); CURRENT={len(words) + 1}; _gateway"
    )
    done = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return {w for w in done.stdout.split() if w.startswith(words[-1]) or w == "<files>"}


@pytest.mark.parametrize(("words", "expected"), CASES)
def test_bash_offers_the_parsers_words(
    bash_script: Path, words: list[str], expected: set[str]
) -> None:
    offered = bash_offers(bash_script, words)
    assert expected <= offered, offered
    assert all(w.startswith(words[-1]) for w in offered), offered


@pytest.mark.parametrize(("words", "expected"), CASES)
def test_zsh_offers_the_parsers_words(
    zsh_script: Path, words: list[str], expected: set[str]
) -> None:
    assert expected <= zsh_offers(zsh_script, words)


def test_paths_complete_with_file_names(bash_script: Path, zsh_script: Path) -> None:
    prefix = str(bash_script)[:-3]
    assert str(bash_script) in bash_offers(bash_script, ["--config", prefix])
    assert "<files>" in zsh_offers(zsh_script, ["store", "backup", ""])


def test_every_command_of_the_parser_completes(bash_script: Path) -> None:
    """Generated from the parser: a command added later completes with nothing else to edit."""
    for place in places(build_parser()):
        if not place.commands:
            continue
        typed = place.path.split() if place.path else []
        assert set(place.commands) <= bash_offers(bash_script, [*typed, ""]), place.path


def test_zsh_registers_the_function_through_compinit(zsh_script: Path, tmp_path: Path) -> None:
    """Saved as _gateway in $fpath, compinit binds it to the gateway command."""
    shutil.copy(zsh_script, tmp_path / "_gateway")
    program = (
        f"fpath=({tmp_path} $fpath); autoload -U compinit; compinit -u -d {tmp_path}/dump; "
        "print ${_comps[gateway]}"
    )
    done = subprocess.run(["zsh", "-f", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "_gateway", done.stderr
