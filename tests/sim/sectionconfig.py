"""PVE::SectionConfig parse and write rules (pve-common src/PVE/SectionConfig.pm), used for
storage.cfg, ha/resources.cfg, ha/groups.cfg and jobs.cfg.

Only what matters for fidelity is modelled: line handling, warnings with their exact texts,
`check_value` ("unexpected property", type checks), required options, and the canonical
writer (comment, disable, required sorted, optional sorted, tab-indented, blank line after
each section).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HEADER = re.compile(r"^(\S+):\s*(\S+)\s*$")
PROPERTY = re.compile(r"^\s+(\S+)(\s+(.*\S))?\s*$")
COMMENT = re.compile(r"^\s*#")


class ConfigError(Exception):
    """A Perl `die` inside SectionConfig; the message carries no trailing newline."""


@dataclass(frozen=True)
class Prop:
    """A JSONSchema property of the global (unified) list."""

    kind: str = "string"  # string | boolean | integer
    minimum: int | None = None
    maximum: int | None = None
    enum: tuple[str, ...] = ()
    pattern: str | None = None


@dataclass(frozen=True)
class Opt:
    optional: bool = True
    fixed: bool = False


@dataclass
class Schema:
    properties: dict[str, Prop]
    options: dict[str, dict[str, Opt]]
    # Hooks for per-file value conversion (storage.cfg's content/nodes lists).
    decode: Callable[[str, str, Any, list[str]], Any] | None = None
    encode: Callable[[str, str, Any], str] | None = None

    def check_value(self, section_type: str, key: str, value: str | None) -> Any:
        opts = self.options.get(section_type)
        if opts is None:
            raise ConfigError(f"unknown section type '{section_type}'")
        if key not in opts:
            raise ConfigError(f"unexpected property '{key}'")
        prop = self.properties.get(key)
        if prop is None:
            raise ConfigError("unknown property type")
        if prop.kind == "boolean" and value is None:
            value = "1"
        if value is None:
            raise ConfigError("got undefined value")
        check_prop(prop, value)
        if prop.kind in ("boolean", "integer"):
            return _perl_number(value)
        return value


def _perl_number(value: str) -> int:
    # JSONSchema already vetted the value; booleans may be spelled on/yes/true as well.
    lowered = value.lower()
    if lowered in ("on", "yes", "true"):
        return 1
    if lowered in ("off", "no", "false"):
        return 0
    return int(value)


def check_prop(prop: Prop, value: str) -> None:
    """PVE::JSONSchema::check_prop messages for the types the simulation uses."""
    if prop.kind == "integer":
        if not re.fullmatch(r"[+-]?\d+", value):
            raise ConfigError(f"type check ('integer') failed - got '{value}'")
        number = int(value)
        if prop.minimum is not None and number < prop.minimum:
            raise ConfigError(f"value must have a minimum value of {prop.minimum}")
        if prop.maximum is not None and number > prop.maximum:
            raise ConfigError(f"value must have a maximum value of {prop.maximum}")
    elif prop.kind == "boolean":
        if value.lower() not in ("0", "1", "on", "off", "yes", "no", "true", "false"):
            raise ConfigError(f"type check ('boolean') failed - got '{value}'")
    elif prop.enum and value not in prop.enum:
        raise ConfigError(f"value '{value}' does not have a value in the enumeration '{', '.join(prop.enum)}'")
    elif prop.pattern and not re.fullmatch(prop.pattern, value):
        raise ConfigError("value does not match the regex pattern")


@dataclass
class Parsed:
    ids: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    def ordered_ids(self) -> list[str]:
        return sorted(self.ids, key=lambda sid: self.order.get(sid, 0))


def parse(schema: Schema, filename: str, raw: str, allow_unknown: bool = False) -> Parsed:
    """SectionConfig::parse_config; every `warn` of the Perl code lands in .warnings."""
    result = Parsed()
    lines = raw.split("\n")
    # Perl's split drops trailing empty fields; it makes no difference for line numbers.
    while lines and lines[-1] == "":
        lines.pop()
    lineno = 0
    position = 0
    pri = 1

    def next_line() -> str | None:
        nonlocal lineno, position
        while position < len(lines):
            line = lines[position]
            position += 1
            lineno += 1
            if not COMMENT.match(line):
                return line
        return None

    while position < len(lines):
        line = next_line()
        # Perl: `next if !$line` - an empty line (or "0") between sections is skipped.
        if not line or line == "0":
            continue
        errprefix = f"file {filename} line {lineno}"
        header = HEADER.match(line)
        if not header:
            result.warnings.append(f"{errprefix} - ignore config line: {line}")
            continue
        section_type, section_id = header.group(1), header.group(2)
        config: dict[str, Any] = {}
        skip = False
        unknown = False
        if section_type not in schema.options:
            if allow_unknown:
                unknown = True
            else:
                skip = True
                result.warnings.append(f"{errprefix} (skip section '{section_id}'): unsupported type '{section_type}'")
        while True:
            line = next_line()
            # An empty line (or end of file) ends the section.
            if not line or line == "0":
                break
            if skip:
                continue
            errprefix = f"file {filename} line {lineno}"
            prop = PROPERTY.match(line)
            if not prop:
                result.warnings.append(f"{errprefix} (section '{section_id}') - ignore config line: {line}")
                continue
            key, value = prop.group(1), prop.group(3)
            try:
                if unknown:
                    config.setdefault(key, value)
                else:
                    if key in config:
                        raise ConfigError("duplicate attribute")
                    config[key] = schema.check_value(section_type, key, value)
            except ConfigError as err:
                result.warnings.append(
                    f"{errprefix} (section '{section_id}') - unable to parse value of '{key}': {err}"
                )
                result.errors.append({"context": errprefix, "section": section_id, "key": key, "err": str(err)})
        if skip:
            continue
        config["type"] = section_type
        if not unknown:
            try:
                config = check_config(schema, section_type, config, create=True, warnings=result.warnings)
            except ConfigError as err:
                result.warnings.append(f"{errprefix} (skip section '{section_id}'): {err}")
                continue
        result.ids[section_id] = config
        result.order[section_id] = pri
        pri += 1
    return result


def check_config(
    schema: Schema, section_type: str, config: dict[str, Any], create: bool, warnings: list[str]
) -> dict[str, Any]:
    """SectionConfig::check_config with the schema check skipped (values were checked per line)."""
    opts = schema.options[section_type]
    settings: dict[str, Any] = {"type": section_type}
    for key, value in config.items():
        if key == "type":
            continue
        if not create and key in opts and opts[key].fixed:
            raise ConfigError(f"can't change value of fixed parameter '{key}'")
        if key not in opts:
            raise ConfigError(f"unexpected property '{key}'")
        settings[key] = schema.decode(section_type, key, value, warnings) if schema.decode else value
    if create:
        for key in sorted(opts):
            if not opts[key].optional and key not in config:
                raise ConfigError(f"missing value for required option '{key}'")
    return settings


def write(schema: Schema, parsed: Parsed) -> str:
    """SectionConfig::write_config."""
    out = []
    maxpri = max([p for p in parsed.order.values() if p] or [0])
    for sid in parsed.ids:
        if sid not in parsed.order:
            maxpri += 1
            parsed.order[sid] = maxpri
    for sid in sorted(parsed.ids, key=lambda s: parsed.order[s]):
        scfg = parsed.ids[sid]
        section_type = scfg["type"]
        opts = schema.options.get(section_type)
        if opts is None:
            raise ConfigError(f"unknown section type '{section_type}'")
        data = [f"{section_type}: {sid}"]
        done = {"comment", "disable"}
        if scfg.get("comment"):
            data.append(_format_line(schema, section_type, "comment", scfg["comment"]))
        if scfg.get("disable"):
            data.append("\tdisable")
        keys = sorted(opts)
        for key in keys:
            if key in done or opts[key].optional:
                continue
            done.add(key)
            if key not in scfg:
                raise ConfigError(f"section '{sid}' - missing value for required option '{key}'")
            data.append(_format_line(schema, section_type, key, scfg[key]))
        for key in keys:
            if key in done or key not in scfg:
                continue
            data.append(_format_line(schema, section_type, key, scfg[key]))
        out.append("\n".join(line for line in data if line) + "\n\n")
    return "".join(out)


def _format_line(schema: Schema, section_type: str, key: str, value: Any) -> str:
    if schema.encode:
        value = schema.encode(section_type, key, value)
    prop = schema.properties.get(key, Prop())
    if prop.kind == "boolean":
        return f"\t{key} {1 if int(value) else 0}"
    text = str(value)
    return f"\t{key} {text}" if text != "" else ""
