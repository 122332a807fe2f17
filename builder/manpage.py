"""Manual pages in roff, written from the argument parser: linstor-appliance(1) and one page per subcommand.

The package build (tools/make-cli-docs) calls this, so the pages always describe the options the tool
really has. argparse has no public API to walk a parser; the private attributes used here
(_actions, _action_groups, _get_formatter, _expand_help, _format_args) are the ones its own help uses.
"""

from __future__ import annotations

import argparse
import datetime
from dataclasses import dataclass

SECTION = "1"


@dataclass(frozen=True)
class Page:
    name: str
    text: str


def escape(text: str) -> str:
    """Plain text as roff: backslashes escaped, no line may start a request."""
    lines = text.replace("\\", "\\e").splitlines() or [""]
    return "\n".join(f"\\&{line}" if line.startswith((".", "'")) else line for line in lines)


def literal(text: str) -> str:
    """An option or command name: its dashes are minus signs, so it can be copied and searched for."""
    return escape(text).replace("-", "\\-")


def subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def summaries(action: argparse._SubParsersAction[argparse.ArgumentParser]) -> dict[str, str]:
    """Subcommand name -> its one-line help."""
    return {choice.dest: choice.help or "" for choice in action._choices_actions}


def pages(parser: argparse.ArgumentParser, version: str, date: datetime.date) -> list[Page]:
    """The tool's page, then one per subcommand (named <prog>-<subcommand>)."""
    prog = parser.prog
    commands = subparsers(parser)
    names = list(commands.choices) if commands else []
    see_also = [f"{prog}-{name}" for name in names]
    result = [Page(prog, _page(prog, parser, parser.description or "", version, date, see_also, nested=False))]
    if commands:
        helps = summaries(commands)
        for name, sub in commands.choices.items():
            others = [prog] + [page for page in see_also if page != f"{prog}-{name}"]
            result.append(Page(f"{prog}-{name}", _page(f"{prog}-{name}", sub, helps[name], version, date, others,
                                                       nested=True)))
    return result


def _page(name: str, parser: argparse.ArgumentParser, summary: str, version: str, date: datetime.date,
          see_also: list[str], nested: bool) -> str:  # fmt: skip
    """One page; `nested`: its subcommands have no pages of their own, so their options are described here."""
    out = [
        f'.TH "{literal(name.upper())}" "{SECTION}" "{date.isoformat()}" "{escape(version)}" "User Commands"',
        # Left-adjusted and unhyphenated: option names and paths must survive being copied.
        ".ad l",
        ".nh",
        ".SH NAME",
        f"{literal(name)} \\- {escape(_sentence(summary))}",
        ".SH SYNOPSIS",
        *_synopsis(parser),
    ]
    if parser.description and _sentence(parser.description) != _sentence(summary):
        out += [".SH DESCRIPTION", escape(parser.description)]
    out += _arguments(parser)
    commands = subparsers(parser)
    if commands:
        helps = summaries(commands)
        metavar = commands.metavar if isinstance(commands.metavar, str) else "COMMAND"
        title = metavar.upper() + "S"
        out.append(f".SH {title}")
        for command in commands.choices:
            out += [".TP", f"\\fB{literal(command)}\\fR", escape(_sentence(helps[command]))]
        for command, sub in commands.choices.items() if nested else ():
            if sub.description and sub.description != helps[command]:
                out += [f'.SS "{literal(sub.prog)}"', escape(sub.description)]
            else:
                out.append(f'.SS "{literal(sub.prog)}"')
            out += [".PP", *_synopsis(sub)]
            out += _arguments(sub, heading=".PP")
    if see_also:
        out += [".SH SEE ALSO", ",\n".join(f"\\fB{literal(page)}\\fR({SECTION})" for page in see_also)]
    return "\n".join(out) + "\n"


def _sentence(text: str) -> str:
    return text.strip().rstrip(".")


def _synopsis(parser: argparse.ArgumentParser) -> list[str]:
    usage = " ".join(parser.format_usage().split())
    usage = usage.removeprefix("usage:").strip().removeprefix(parser.prog).strip()
    return [f"\\fB{literal(parser.prog)}\\fR {escape(usage)}".rstrip()]


def _arguments(parser: argparse.ArgumentParser, heading: str = ".SH") -> list[str]:
    """Positionals, then each group of options, as tagged paragraphs."""
    formatter = parser._get_formatter()
    out: list[str] = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions
                   if a.help != argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)]  # fmt: skip
        if not actions:
            continue
        title = group.title or "options"
        items: list[str] = []
        for action in actions:
            text = formatter._expand_help(action) if action.help else ""
            items += [".TP", _invocation(formatter, action), escape(text)]
        if heading == ".SH":
            out += [f".SH {escape(title.upper())}", *items]
        else:
            out += [".PP", f"\\fI{escape(title)}:\\fR", *items]
    return out


def _invocation(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    if not action.option_strings:
        metavar = formatter._format_args(action, action.dest)
        return f"\\fI{escape(metavar)}\\fR"
    value = ""
    if action.nargs != 0:
        value = " \\fI" + escape(formatter._format_args(action, action.dest.upper())) + "\\fR"
    return ", ".join(f"\\fB{literal(option)}\\fR{value}" for option in action.option_strings)
