"""Command-line options declared once: each a record, and everything about them derived from one table.

A command lists its options as `Option` records in an `OptionTable` bound to the frozen dataclass it works
from (builder.deploy.options.Options, for one). From that table come:

- `add_arguments()`: the argparse flags, each help text ending in its default rendered from the default value;
- `explicit()`: which fields the command line set;
- `parse()`: the typed values, the required ones checked first; every bad value costs one line (die());
- `to_json()` / `from_json()`: the plain-data form (for a journal), derived from the dataclass field types;
- `refused_on_resume()` / `resume()`: what a resumed run may change, and the options it then runs with.

Checks across fields (a gateway inside the address's network) stay small explicit functions that the
command runs after parse(); a default computed from another option (a file next to the image) likewise.

Adding an option is one typed field in the dataclass (without a default: the record holds it) and one
record here, for example:

    Option("retries", "--retries", whole_number(1), 3, "how often to try", "N", on_resume=OnResume.GIVEN)

A parser takes the command-line string and returns the typed value; for a bad one it either calls
die(message, hint=...) itself or raises Invalid(hint) for the standard "invalid --flag 'value'; hint".
A flag without a value (--no-register-node, or a group such as --dry-run/--resume/--rollback) is an
option whose `switches` each select one value of the field. If the field's type has no JSON form yet
(see codec_for), the table refuses to be built, so a missing one shows at import, not in a journal.

Why builder/config.py's `Setting` is a different record: a build setting is read from two layered sources
(a TOML file, then flags) whose values need not be strings, it has a TOML key, its defaults live in the
Config dataclass because finalize() computes several of them from others (the release and mirror from the
distribution), and the build has no journal, resume or required flags. Forcing both into one record would
give each side fields the other ignores. The value parsers (parse_ip, parse_interface, parse_size) are shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import ipaddress
import re
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from builder.errors import die

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")


class Invalid(Exception):
    """Raised by a parser for the standard one-line error: invalid --flag 'value'; hint."""

    def __init__(self, hint: str) -> None:
        super().__init__(hint)
        self.hint = hint


class Need(enum.Enum):
    OPTIONAL = "optional"
    # A run that starts new work must give it; a resumed or undone run has it recorded.
    FRESH = "fresh"
    # Every run must give it: it names what the run is about (the VMID of a deploy).
    ALWAYS = "always"


class OnResume(enum.Enum):
    # The recorded value stays; giving a different one is refused (changing it midway would mix two runs).
    FIXED = "fixed"
    # The recorded value stays; the command line's is not consulted.
    RECORDED = "recorded"
    # The resumed run's own value, given or default (how long to wait, how to reach the nodes).
    GIVEN = "given"


@dataclass(frozen=True)
class Switch:
    """A flag without a value that sets its option's field to `value`."""

    flag: str
    value: Any
    help: str


@dataclass(frozen=True)
class Option:
    """One option: the dataclass field it fills, how the command line gives it, and how runs treat it."""

    field: str
    flag: str | None  # --flag VALUE; None for an option given only by its switches
    parse: Callable[[str], Any] | None  # one command-line string -> the typed value, or die()/Invalid
    default: Any
    help: str = ""
    metavar: str | None = None
    default_help: str | None = None  # how help describes a default that is no plain value ("next to the image")
    repeat: bool = False  # the flag may be given again; the field is a tuple of the parsed items
    commas: bool = False  # with repeat: one value may also list several items, separated by commas
    need: Need = Need.OPTIONAL
    missing_hint: str | None = None  # for a required option (default: see the command's --help)
    on_resume: OnResume = OnResume.FIXED
    switches: tuple[Switch, ...] = ()  # more than one: mutually exclusive

    @property
    def label(self) -> str:
        """How messages name the option: as the user types it."""
        return self.flag or "/".join(s.flag for s in self.switches)

    @property
    def fixed_on_resume(self) -> bool:
        return self.on_resume is OnResume.FIXED

    @property
    def required_for_fresh(self) -> bool:
        return self.need is not Need.OPTIONAL


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A parser for a whole number of at least `minimum` (and at most `maximum`)."""

    def parse(value: str) -> int:
        if not re.fullmatch(r"\d+", value) or int(value) < minimum or (maximum is not None and int(value) > maximum):
            raise Invalid(f"use a whole number from {minimum} to {maximum}" if maximum is not None
                          else f"use a whole number of at least {minimum}")  # fmt: skip
        return int(value)

    return parse


def render(value: Any) -> str:
    """A default as help shows it; empty for none (None, an empty list, a switch's off state)."""
    if value is None or value == () or isinstance(value, bool):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


@dataclass(frozen=True)
class Codec:
    """A field's value to JSON-ready plain data and back."""

    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


_SCALARS: dict[Any, Callable[[Any], Any]] = {bool: bool, int: int, float: float, str: str}
_UNIONS: dict[frozenset[Any], Callable[[Any], Any]] = {
    frozenset({ipaddress.IPv4Interface, ipaddress.IPv6Interface}): ipaddress.ip_interface,
    frozenset({ipaddress.IPv4Address, ipaddress.IPv6Address}): ipaddress.ip_address,
    frozenset({ipaddress.IPv4Network, ipaddress.IPv6Network}): ipaddress.ip_network,
}


def codec_for(kind: Any) -> Codec:
    """The JSON form of a field type: scalars as they are, paths, enums and addresses as text, tuples as lists."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(kind) if m is not type(None)]
        if len(members) == 1:
            inner = codec_for(members[0])
        elif frozenset(members) in _UNIONS:
            inner = Codec(str, _UNIONS[frozenset(members)])
        else:
            raise TypeError(f"no JSON form for {kind}")
        if len(members) == len(typing.get_args(kind)):
            return inner
        return Codec(lambda v: None if v is None else inner.encode(v),
                     lambda v: None if v is None else inner.decode(v))  # fmt: skip
    if typing.get_origin(kind) is tuple:
        item, rest = typing.get_args(kind)
        if rest is not Ellipsis:
            raise TypeError(f"no JSON form for {kind}: only tuple[X, ...] is supported")
        each = codec_for(item)
        return Codec(lambda v: [each.encode(x) for x in v], lambda v: tuple(each.decode(x) for x in v))
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return Codec(lambda v: v.value, kind)
    if kind in _SCALARS:
        return Codec(_same, _SCALARS[kind])
    if kind is Path:
        return Codec(str, Path)
    raise TypeError(f"no JSON form for {kind}")


class OptionTable(Generic[C]):
    """The options of one command, bound to the dataclass their values fill.

    `outside` names the dataclass's fields that the command sets itself rather than from the command
    line or the JSON form (a root prefix, say); every other field must have a record.
    """

    def __init__(self, target: type[C], command: str, options: Iterable[Option],
                 outside: Collection[str] = ()) -> None:  # fmt: skip
        self.target = target
        self.command = command
        self.options = tuple(options)
        self.outside = frozenset(outside)
        self.by_field = {o.field: o for o in self.options}
        hints = typing.get_type_hints(target)
        fields = [f.name for f in dataclasses.fields(target)]
        unknown = set(self.by_field) - set(fields)
        missing = set(fields) - set(self.by_field) - self.outside
        if len(self.by_field) != len(self.options) or unknown or missing:
            raise TypeError(f"the options of {command} do not match {target.__name__}: "
                            f"not fields {sorted(unknown)}, without a record {sorted(missing)}")  # fmt: skip
        for option in self.options:
            if (option.flag is None) == (not option.switches) or (option.parse is None) != (option.flag is None):
                raise TypeError(f"option {option.field} needs either a flag and a parser or switches")
        self.codecs = {o.field: codec_for(hints[o.field]) for o in self.options}

    # --- command line --------------------------------------------------------------------------
    def help_text(self, option: Option) -> str:
        text = option.help
        if option.repeat:
            text += " (repeatable, or comma-separated)" if option.commas else " (repeatable)"
        shown = option.default_help or render(option.default)
        if shown:
            text += f" (default: {shown})"
        return text

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        # Values arrive as strings and are typed by parse(), not argparse, so every bad value gets the
        # same one-line error; None marks what the command line did not set.
        for option in self.options:
            if option.flag is not None:
                parser.add_argument(option.flag, dest=option.field, metavar=option.metavar, default=None,
                                    action="append" if option.repeat else "store",
                                    help=_escape(self.help_text(option)))  # fmt: skip
                continue
            group: Any = parser.add_mutually_exclusive_group() if len(option.switches) > 1 else parser
            for switch in option.switches:
                group.add_argument(switch.flag, dest=option.field, action="store_const", const=switch.value,
                                   default=None, help=_escape(switch.help))  # fmt: skip

    def explicit(self, args: argparse.Namespace) -> set[str]:
        """The fields the command line set."""
        return {o.field for o in self.options if getattr(args, o.field, None) is not None}

    def read(self, args: argparse.Namespace, field: str) -> Any:
        """One option's typed value (or default), e.g. the mode that decides what else is required."""
        option = self.by_field[field]
        return self._value(option, getattr(args, field, None))

    def parse(self, args: argparse.Namespace, fresh: bool = True) -> dict[str, Any]:
        """Every option's typed value or default.

        What every run needs is checked and parsed first, then a fresh run's required options must all be
        present, then the rest is parsed in table order.
        """
        raw = {o.field: getattr(args, o.field, None) for o in self.options}
        values: dict[str, Any] = {}
        for option in self.options:
            if option.need is Need.ALWAYS:
                self._require(option, raw[option.field])
                values[option.field] = self._value(option, raw[option.field])
        if fresh:
            for option in self.options:
                if option.need is Need.FRESH:
                    self._require(option, raw[option.field])
        for option in self.options:
            if option.field not in values:
                values[option.field] = self._value(option, raw[option.field])
        return values

    def build(self, values: Mapping[str, Any], **outside: Any) -> C:
        return self.target(**values, **outside)

    def _require(self, option: Option, raw: Any) -> None:
        if raw is None:
            die(f"{option.label} is required", hint=option.missing_hint or f"see '{self.command} --help'")

    def _value(self, option: Option, raw: Any) -> Any:
        if raw is None:
            return option.default
        if option.switches:
            return raw  # argparse stored the switch's value
        if option.repeat:
            items = [v for item in raw for v in item.split(",") if v.strip()] if option.commas else list(raw)
            return tuple(self._parse_one(option, item) for item in items)
        return self._parse_one(option, raw)

    def _parse_one(self, option: Option, text: str) -> Any:
        assert option.parse is not None
        try:
            return option.parse(text)
        except Invalid as error:
            die(f"invalid {option.label} '{text}'", hint=error.hint)

    # --- JSON form -----------------------------------------------------------------------------
    def to_json(self, obj: C) -> dict[str, Any]:
        return {o.field: self.codecs[o.field].encode(getattr(obj, o.field)) for o in self.options}

    def from_json(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The values in `data`; a key it lacks (written before the option existed) gets the default."""
        values: dict[str, Any] = {}
        for option in self.options:
            if option.field in data:
                values[option.field] = self.codecs[option.field].decode(data[option.field])
            elif option.need is Need.ALWAYS:
                raise KeyError(option.field)
            else:
                values[option.field] = option.default
        return values

    # --- resume --------------------------------------------------------------------------------
    def refused_on_resume(self, given: C, recorded: C, explicit: Collection[str]) -> Option | None:
        """The first fixed option the command line set to something other than the recorded value."""
        for option in self.options:
            if (option.fixed_on_resume and option.field in explicit
                    and getattr(given, option.field) != getattr(recorded, option.field)):  # fmt: skip
                return option
        return None

    def resume(self, given: C, recorded: C) -> C:
        """The recorded values, with the options a resumed run chooses itself (and `outside`) from `given`."""
        changes = {o.field: getattr(given, o.field) for o in self.options if o.on_resume is OnResume.GIVEN}
        changes.update({name: getattr(given, name) for name in self.outside})
        return dataclasses.replace(recorded, **changes)


def _escape(text: str) -> str:
    # argparse %-formats help texts.
    return text.replace("%", "%%")
