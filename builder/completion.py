"""Bash completion for linstor-appliance, written from the argument parser at package build time.

The script holds, per command path ("linstor-appliance", "linstor-appliance deploy", ...), the subcommands, the
options, which options take a value, which of those name files, and fixed choices. A small bash
function walks the words typed so far through that table. Runs under bash-completion (which loads it
from /usr/share/bash-completion/completions/ on first use).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

# Values that are paths: typed as Path, or named like one in the help.
FILE_METAVARS = ("FILE", "DIR", "PATH", "IMAGE")

TEMPLATE = """\
# bash completion for {prog} (generated from its argument parser; do not edit)
# shellcheck shell=bash

{function}() {{
    local cur prev words cword
    _init_completion || return

    local -A subcommands=(
{subcommands}
    )
    local -A options=(
{options}
    )
    local -A valued=(
{valued}
    )
    local -A files=(
{files}
    )
    local -A choices=(
{choices}
    )
    local -A positional_files=(
{positional_files}
    )

    # The command path so far: subcommand words, skipping options and the values they take.
    local path={root} i word
    for ((i = 1; i < cword; i++)); do
        word=${{words[i]}}
        if [[ $word == -* ]]; then
            [[ $word != *=* && " ${{valued[$path]-}} " == *" $word "* ]] && ((i++))
        elif [[ " ${{subcommands[$path]-}} " == *" $word "* ]]; then
            path="$path $word"
        fi
    done

    if [[ " ${{valued[$path]-}} " == *" $prev "* ]]; then
        if [[ -v "choices[$path $prev]" ]]; then
            mapfile -t COMPREPLY < <(compgen -W "${{choices[$path $prev]}}" -- "$cur")
        elif [[ " ${{files[$path]-}} " == *" $prev "* ]]; then
            _filedir
        fi
        return
    fi
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${{options[$path]-}}" -- "$cur")
    elif [[ -n ${{subcommands[$path]-}} ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${{subcommands[$path]}}" -- "$cur")
    elif [[ -v "positional_files[$path]" ]]; then
        _filedir
    fi
}} &&
    complete -F {function} {prog}
"""


def script(parser: argparse.ArgumentParser) -> str:
    table: dict[str, dict[str, str]] = {
        "subcommands": {}, "options": {}, "valued": {}, "files": {}, "choices": {}, "positional_files": {},
    }  # fmt: skip
    _walk(parser, parser.prog, table)
    prog = parser.prog
    return TEMPLATE.format(
        prog=prog,
        root=shlex.quote(prog),
        function="_" + prog.replace("-", "_"),
        **{name: "\n".join(f"        [{shlex.quote(key)}]={shlex.quote(value)}" for key, value in sorted(rows.items()))
           for name, rows in table.items()},
    )  # fmt: skip


def _walk(parser: argparse.ArgumentParser, path: str, table: dict[str, dict[str, str]]) -> None:
    options: list[str] = []
    valued: list[str] = []
    files: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            table["subcommands"][path] = " ".join(action.choices)
            for name, sub in action.choices.items():
                _walk(sub, f"{path} {name}", table)
            continue
        if not action.option_strings:
            if _is_file(action):
                table["positional_files"][path] = "1"
            continue
        if action.help == argparse.SUPPRESS:
            continue
        options += action.option_strings
        if action.nargs == 0:
            continue
        valued += action.option_strings
        if action.choices is not None:
            for option in action.option_strings:
                table["choices"][f"{path} {option}"] = " ".join(str(choice) for choice in action.choices)
        elif _is_file(action):
            files += action.option_strings
    table["options"][path] = " ".join(options)
    table["valued"][path] = " ".join(valued)
    table["files"][path] = " ".join(files)


def _is_file(action: argparse.Action) -> bool:
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    return action.type is Path or any(word in metavar.upper() for word in FILE_METAVARS)
