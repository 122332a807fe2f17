"""Reading PVE's SectionConfig files (storage.cfg, ha/resources.cfg) the way PVE itself reads them.

pve-common `SectionConfig::parse_config` (proxmox.md section 3): a header `<type>: <id>`, indented
`key value` lines (a bare key means 1), `#` lines skipped without ending the section, and an empty
line ends it. A header right after property lines is not a header ("ignore config line") and the
indented lines after it still belong to the previous section. A key the section's type does not
have, a value that fails its type check and a second occurrence of a key are dropped with a warning;
a section without a required option is skipped. The tool never writes these files: every change
goes through PVE's own commands, which lock and rewrite them.

Only the types the tool reads have a key table here (`Schema`); sections of other types are kept
with every key, unchecked, since the tool never reads their keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HEADER = re.compile(r"^(\S+):\s*(\S+)\s*$")
PROPERTY = re.compile(r"^\s+(\S+)(\s+(.*\S))?\s*$")
COMMENT = re.compile(r"^\s*#")
BOOLEAN = {"1": "1", "on": "1", "yes": "1", "true": "1", "0": "0", "off": "0", "no": "0", "false": "0"}


@dataclass(frozen=True)
class Key:
    """One option of a section type: `kind` is string, boolean, integer or enum (with `values`)."""

    kind: str = "string"
    required: bool = False
    values: tuple[str, ...] = ()
    minimum: int | None = None


@dataclass(frozen=True)
class Schema:
    types: dict[str, dict[str, Key]]


@dataclass
class Section:
    type: str
    id: str
    values: dict[str, str] = field(default_factory=dict)
    # False for a type the schema has no key table for: its keys were kept unchecked.
    checked: bool = True


@dataclass
class Parsed:
    sections: dict[str, Section] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class _Invalid(Exception):
    pass


def _check(key: Key | None, name: str, value: str | None) -> str:
    """JSONSchema's check of one value, with PVE's messages; booleans come back as 1 or 0."""
    if key is None:
        raise _Invalid(f"unexpected property '{name}'")
    if key.kind == "boolean":
        normalized = BOOLEAN.get((value or "1").lower())
        if normalized is None:
            raise _Invalid(f"type check ('boolean') failed - got '{value}'")
        return normalized
    if value is None:
        raise _Invalid("got undefined value")
    if key.kind == "integer":
        if not re.fullmatch(r"[+-]?\d+", value):
            raise _Invalid(f"type check ('integer') failed - got '{value}'")
        if key.minimum is not None and int(value) < key.minimum:
            raise _Invalid(f"value must have a minimum value of {key.minimum}")
    if key.kind == "enum" and value not in key.values:
        raise _Invalid(f"value '{value}' does not have a value in the enumeration '{', '.join(key.values)}'")
    return value


def parse(text: str, schema: Schema, filename: str) -> Parsed:
    """SectionConfig::parse_config: the sections PVE ends up with, in file order, and its warnings."""
    result = Parsed()
    lines = text.split("\n")
    index = 0

    def next_line() -> tuple[int, str] | None:
        nonlocal index
        while index < len(lines):
            index += 1
            if not COMMENT.match(lines[index - 1]):
                return index, lines[index - 1]
        return None

    while index < len(lines):
        item = next_line()
        if item is None or not item[1]:
            continue
        number, line = item
        header = HEADER.match(line)
        if not header:
            result.warnings.append(f"file {filename} line {number} - ignore config line: {line}")
            continue
        section = Section(header.group(1).lower(), header.group(2))
        keys = schema.types.get(section.type)
        section.checked = keys is not None
        while (item := next_line()) is not None and item[1]:
            number, line = item
            prop = PROPERTY.match(line)
            if not prop:
                result.warnings.append(f"file {filename} line {number} (section '{section.id}') - "
                                       f"ignore config line: {line}")  # fmt: skip
                continue
            name, value = prop.group(1), prop.group(3)
            if keys is None:
                section.values.setdefault(name, "1" if value is None else value)
                continue
            try:
                if name in section.values:
                    raise _Invalid("duplicate attribute")
                section.values[name] = _check(keys.get(name), name, value)
            except _Invalid as err:
                result.warnings.append(f"file {filename} line {number} (section '{section.id}') - "
                                       f"unable to parse value of '{name}': {err}")  # fmt: skip
        missing = sorted(name for name, key in (keys or {}).items() if key.required and name not in section.values)
        if missing:
            result.warnings.append(f"file {filename} line {number} (skip section '{section.id}'): "
                                   f"missing value for required option '{missing[0]}'")  # fmt: skip
            continue
        result.sections.setdefault(section.id, section)
    return result


_S = Key()
_BOOL = Key("boolean")

# storage.cfg: the types the tool reads. drbd: linstor-proxmox 6.0 and later (linstor.md 2.2; 5.x also
# had `controllervm`, which later versions drop).
STORAGE = Schema(types={
    "drbd": {"controller": _S, "resourcegroup": Key(required=True), "preferlocal": _S,
             "statuscache": Key("integer", minimum=0), "apicrt": _S, "apikey": _S, "apica": _S, "exactsize": _S,
             "allowtwoprimaries": _S, "clusterlocktimeout": Key("integer", minimum=0), "searchdomain": _S,
             "content": _S, "disable": _BOOL, "nodes": _S},
    "dir": {"path": Key(required=True), "content": _S, "content-dirs": _S, "shared": _BOOL, "maxfiles": _S,
            "prune-backups": _S, "max-protected-backups": _S, "format": _S, "mkdir": _BOOL,
            "create-base-path": _BOOL, "create-subdirs": _BOOL, "is_mountpoint": _S, "bwlimit": _S,
            "preallocation": _S, "disable": _BOOL, "nodes": _S},
})  # fmt: skip

_HA = {"state": Key("enum", values=("started", "stopped", "enabled", "disabled", "ignored")), "group": _S,
       "max_restart": Key("integer", minimum=0), "max_relocate": Key("integer", minimum=0), "comment": _S}  # fmt: skip
# ha/resources.cfg (pve-ha-manager 4.0).
HA_RESOURCES = Schema(types={"vm": dict(_HA), "ct": dict(_HA)})


def parse_storage(text: str) -> Parsed:
    return parse(text, STORAGE, "/etc/pve/storage.cfg")


def parse_ha_resources(text: str) -> Parsed:
    return parse(text, HA_RESOURCES, "/etc/pve/ha/resources.cfg")
