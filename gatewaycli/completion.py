"""`gateway completion bash|zsh`: a completion script generated from the argparse parser itself,
so a new command or option completes without anyone editing a script.

One shell function, ``_gateway_candidates``, holds the parser as ``case`` tables and works
unchanged in bash and zsh: given the words typed after ``gateway`` (the last one being completed)
it prints the commands and options that fit there, an option's choices, or ``<file>`` where a
path is expected. Each shell then adds a few lines of its own to offer those words.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

SHELLS = ("bash", "zsh")
# Options whose value is a path on this machine: completed with file names.
_FILE_OPTIONS = {"--config", "--store", "--to"}
_FILE_POSITIONALS = {"path"}


@dataclass(frozen=True)
class Place:
    """What may follow a command path such as ``keys create``."""

    path: str
    commands: tuple[str, ...]  # subcommands, or a positional's choices
    options: tuple[str, ...]
    values: tuple[tuple[str, str], ...]  # option -> its choices, "<file>" or "" (any word)
    file_argument: bool = False  # a positional that is a path


def places(parser: argparse.ArgumentParser, path: str = "") -> list[Place]:
    commands: list[str] = []
    options: list[str] = []
    values: list[tuple[str, str]] = []
    children: list[Place] = []
    file_argument = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                commands.append(name)
                children += places(child, f"{path} {name}".strip())
        elif not action.option_strings:
            if action.choices is not None:
                commands += [str(choice) for choice in action.choices]
            file_argument = file_argument or action.dest in _FILE_POSITIONALS
        else:
            options += action.option_strings
            if action.nargs != 0:
                for option in action.option_strings:
                    values.append((option, _values(option, action)))
    own = Place(path, tuple(commands), tuple(options), tuple(values), file_argument)
    return [own, *children]


def _values(option: str, action: argparse.Action) -> str:
    if action.choices is not None:
        return " ".join(str(choice) for choice in action.choices)
    return "<file>" if option in _FILE_OPTIONS else ""


def _candidates_function(parser: argparse.ArgumentParser) -> str:
    commands, options, valued, values = [], [], [], []
    for place in places(parser):
        key = f'"{place.path}"'
        words = " ".join(place.commands) + (" <file>" if place.file_argument else "")
        commands.append(f"        {key}) echo '{words.strip()}' ;;")
        options.append(f"        {key}) echo '{' '.join(place.options)}' ;;")
        valued.append(f"        {key}) echo '{' '.join(o for o, _ in place.values)}' ;;")
        for option, choices in place.values:
            if choices:
                values.append(f"        \"{place.path}|{option}\") echo '{choices}' ;;")
    return f"""\
# The commands (or a positional's choices) that may follow a command path.
_gateway_commands() {{
    case "$1" in
{chr(10).join(commands)}
    esac
}}
# The options of a command path.
_gateway_options() {{
    case "$1" in
{chr(10).join(options)}
    esac
}}
# The options of a command path that take a value.
_gateway_valued() {{
    case "$1" in
{chr(10).join(valued)}
    esac
}}
# An option's choices, or <file> for a path.
_gateway_values() {{
    case "$1|$2" in
{chr(10).join(values)}
        *"|--config"|*"|--store"|*"|--to") echo '<file>' ;;
    esac
}}
# The words that fit the last of the given words (the ones typed after `gateway`).
_gateway_candidates() {{
    local place="" word skip="" option=""
    while [ $# -gt 1 ]; do
        word="$1"
        shift
        if [ -n "$skip" ]; then
            skip=""
            continue
        fi
        case " $(_gateway_valued "$place") " in
            *" $word "*) skip=1; option="$word"; continue ;;
        esac
        case "$word" in -*) continue ;; esac
        case " $(_gateway_commands "$place") " in
            *" $word "*) place="${{place:+$place }}$word" ;;
        esac
    done
    if [ -n "$skip" ]; then
        _gateway_values "$place" "$option"
        return
    fi
    case "$1" in
        -*) _gateway_options "$place" ;;
        *) _gateway_commands "$place"; _gateway_options "$place" ;;
    esac
}}
"""


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for ``shell`` (one of SHELLS)."""
    shared = _candidates_function(parser)
    if shell == "bash":
        return f"""\
# bash completion for gateway: eval "$(gateway completion bash)" in ~/.bashrc, or save it as
# /etc/bash_completion.d/gateway.
{shared}
_gateway() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" words
    words="$(_gateway_candidates "${{COMP_WORDS[@]:1:COMP_CWORD}}")"
    if [[ " $words " == *" <file> "* ]]; then
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        words="${{words//<file>/}}"
    else
        COMPREPLY=()
    fi
    COMPREPLY+=($(compgen -W "$words" -- "$cur"))
}}
complete -F _gateway gateway
"""
    return f"""\
#compdef gateway
# zsh completion for gateway: save it as _gateway in a directory of $fpath (before compinit
# runs), or eval "$(gateway completion zsh)" in ~/.zshrc after compinit.
{shared}
_gateway() {{
    local -a found
    found=(${{=$(_gateway_candidates "${{(@)words[2,CURRENT]}}")}})
    if (( ${{found[(I)<file>]}} )); then
        _files
        found=(${{found:#<file>}})
    fi
    (( ${{#found}} )) && compadd -- "${{found[@]}}"
}}
# Autoloaded from $fpath, this file is the body of _gateway's first call: complete now.
if [[ ${{zsh_eval_context[-1]}} == loadautofunc ]]; then
    _gateway "$@"
else
    compdef _gateway gateway
fi
"""
