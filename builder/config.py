"""The build configuration: one table of settings feeding the CLI, the TOML file and manifest.json.

Precedence is defaults, then the TOML file given with --config, then command-line flags. Everything is
validated before anything is built, so a bad value costs the user one line and no partial output.
"""

from __future__ import annotations

import argparse
import enum
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import die


class Distribution(enum.StrEnum):
    ubuntu = "ubuntu"
    debian = "debian"


class NetworkMode(enum.StrEnum):
    dhcp = "dhcp"
    static = "static"


# The releases the appliance supports, and why the obvious other ones are refused.
RELEASES: dict[Distribution, str] = {Distribution.ubuntu: "noble", Distribution.debian: "trixie"}
REFUSED_RELEASES: dict[str, str] = {
    "bookworm": "Debian 12 has no Java 21 runtime, and LINSTOR 1.34 and later need Java 21; use --release trixie",
    "jammy": "Ubuntu 22.04 has no Java 21 runtime by default, and LINSTOR 1.34 and later need it; use noble",
    "bionic": "Ubuntu 18.04 is out of support and has no Java 21 runtime; use noble",
    "focal": "Ubuntu 20.04 has no Java 21 runtime, and LINSTOR 1.34 and later need it; use noble",
}
DEFAULT_MIRRORS: dict[Distribution, str] = {
    Distribution.ubuntu: "http://archive.ubuntu.com/ubuntu",
    Distribution.debian: "http://deb.debian.org/debian",
}
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "linstor-appliance"

HOSTNAME_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# An upstream version with an optional Debian revision: 1.34.0, 1.34.0-1 (apt pins it as a prefix).
LINSTOR_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9][0-9A-Za-z.+~]*)?$")
# Olson names: UTC, Europe/Vienna, America/Argentina/Buenos_Aires, Etc/GMT+1.
TIMEZONE_RE = re.compile(r"^[A-Z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,2}$")
ZONEINFO = Path("/usr/share/zoneinfo")
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$", re.IGNORECASE)
SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com) [A-Za-z0-9+/=]+"
)


@dataclass(frozen=True)
class LinstorSource:
    """Where linstor-controller comes from: LINBIT's repositories (or a mirror of them), or a folder of .deb files."""

    kind: str  # "linbit" or "local"
    directory: Path | None = None
    uri: str | None = None  # linbit:URL, a mirror of LINBIT's repository (or PPA) instead of LINBIT's own

    def __str__(self) -> str:
        if self.kind == "local":
            return f"local:{self.directory}"
        return f"linbit:{self.uri}" if self.uri else "linbit"


@dataclass(frozen=True)
class Config:
    distribution: Distribution = Distribution.ubuntu
    release: str = "noble"
    mirror: str = DEFAULT_MIRRORS[Distribution.ubuntu]
    linstor_source: LinstorSource = LinstorSource("linbit")
    linstor_version: str | None = None
    linbit_keyring: Path | None = None
    hostname: str = "linstor-controller"
    password_hash: str | None = None
    ssh_authorized_keys: tuple[str, ...] = ()
    ssh_password_login: bool = False
    ssh_root_login: bool = False
    network: NetworkMode = NetworkMode.dhcp
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface | None = None
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    dns: tuple[str, ...] = ()
    search_domains: tuple[str, ...] = ()
    disk_size: int = 2 * 2**30
    timezone: str = "UTC"
    locale: str = "C.UTF-8"
    keymap: str = "us"
    backup_keep: int = 7
    output_dir: Path = Path("out")
    cache_dir: Path = DEFAULT_CACHE

    @property
    def default_user(self) -> str:
        return "linbit"

    def summary(self) -> dict[str, Any]:
        """The configuration as plain data for manifest.json; secrets are never included."""
        out: dict[str, Any] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if setting.name == "password_hash":
                value = "custom" if value else "default (linbit, expired)"
            out[setting.name] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, (Path, enum.Enum, LinstorSource, ipaddress.IPv4Interface, ipaddress.IPv6Interface,
                          ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    return value


# Parsers: each turns one user-supplied value (string from the CLI, or a TOML value) into the typed value,
# or dies with a line that names the setting and says what a good value looks like.


def parse_distribution(value: Any) -> Distribution:
    try:
        return Distribution(str(value).lower())
    except ValueError:
        die(f"unknown distribution '{value}'", hint="use 'ubuntu' (24.04, the default) or 'debian' (13)")


def parse_linstor_source(value: Any) -> LinstorSource:
    text = str(value)
    if text == "linbit":
        return LinstorSource("linbit")
    if text.startswith("local:"):
        return LinstorSource("local", Path(text.removeprefix("local:")).expanduser().absolute())
    if text.startswith("linbit:"):
        uri = text.removeprefix("linbit:")
        if not re.match(r"^(https?|file)://", uri):
            die(f"LINSTOR package source '{text}' names no URL",
                hint="write linbit:https://mirror.example/linbit/ for a mirror of LINBIT's repository")
        return LinstorSource("linbit", uri=uri)
    die(f"unknown LINSTOR package source '{text}'",
        hint="use 'linbit', 'linbit:URL' (a mirror of it) or 'local:DIR' with a folder of .deb files")


def parse_linstor_version(value: Any) -> str:
    text = str(value).strip()
    if not LINSTOR_VERSION_RE.match(text):
        die(f"invalid LINSTOR version '{text}'",
            hint="give the satellites' version as 'dpkg-query -W linstor-satellite' shows it, e.g. 1.34.0 or 1.34.0-1")
    return text


def parse_timezone(value: Any) -> str:
    text = str(value).strip()
    # The build host's tzdata has the same zone names as the image's; without it the pattern has to do.
    known = (ZONEINFO / text).is_file() if ZONEINFO.is_dir() else True
    if not TIMEZONE_RE.match(text) or not known:
        die(f"unknown time zone '{text}'",
            hint="use a zone name such as UTC or Europe/Vienna ('timedatectl list-timezones' lists them)")
    return text


def parse_hostname(value: Any) -> str:
    text = str(value)
    if not HOSTNAME_RE.match(text):
        die(f"invalid hostname '{text}'", hint="use lower-case letters, digits and '-', at most 63 characters")
    return text


def parse_size(value: Any) -> int:
    if isinstance(value, int):
        return value
    match = SIZE_RE.match(str(value).strip())
    if not match:
        die(f"invalid size '{value}'", hint="write it like 2G, 2048M or 2GiB")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " KMGT".index((unit or " ").upper()))


def parse_interface(value: Any) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    text = str(value)
    if "/" not in text:
        die(f"address '{text}' has no prefix length", hint="write it in CIDR form, for example 10.0.0.100/24")
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        die(f"invalid address '{text}'", hint="write it in CIDR form, for example 10.0.0.100/24")
    if interface.ip == interface.network.network_address and interface.network.prefixlen < 31:
        die(f"address '{text}' is the network address of its subnet", hint="use a host address")
    return interface


def parse_ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(value))
    except ValueError:
        die(f"invalid IP address '{value}'", hint="write a plain address such as 10.0.0.1")


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "yes", "true", "on"):
        return True
    if text in ("0", "no", "false", "off"):
        return False
    die(f"invalid boolean '{value}'", hint="use yes or no")


def parse_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return tuple(v.strip() for v in str(value).split(",") if v.strip())


def parse_dns(value: Any) -> tuple[str, ...]:
    return tuple(str(parse_ip(v)) for v in parse_list(value))


def parse_ssh_keys(value: Any) -> tuple[str, ...]:
    """Keys given inline or as paths of files holding them (an authorized_keys or .pub file)."""
    keys: list[str] = []
    for item in parse_list(value) if not isinstance(value, str) or "\n" in value else [value]:
        candidates = [item]
        path = Path(item).expanduser()
        if not SSH_KEY_RE.match(item):
            if not path.is_file():
                die(f"SSH key '{item}' is neither a public key nor a readable file",
                    hint="pass a path to a .pub file or the key text itself")
            candidates = [line.strip() for line in path.read_text().splitlines()]
        for line in candidates:
            if not line or line.startswith("#"):
                continue
            if not SSH_KEY_RE.match(line):
                die(f"not an SSH public key: '{line[:40]}...'", hint="use an OpenSSH public key line")
            keys.append(line)
    return tuple(keys)


def parse_password_hash(value: Any) -> str:
    text = str(value)
    if not re.match(r"^\$(6|y|5|2[aby])\$", text):
        die("the password hash is not a crypt(3) hash", hint="create one with 'openssl passwd -6' or mkpasswd")
    return text


def parse_keep(value: Any) -> int:
    try:
        keep = int(value)
    except (TypeError, ValueError):
        keep = 0
    if keep < 1:
        die(f"invalid backup count '{value}'", hint="keep at least 1 database backup")
    return keep


def parse_path(value: Any) -> Path:
    return Path(str(value)).expanduser().absolute()


def parse_text(value: Any) -> str:
    return str(value)


@dataclass(frozen=True)
class Setting:
    """One setting: the attribute of Config, its TOML key and CLI flag derive from the name."""

    name: str
    parse: Callable[[Any], Any]
    help: str
    metavar: str | None = None
    flag: bool = False  # a boolean switch on the command line (--x / --no-x)

    @property
    def cli(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def key(self) -> str:
        return self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("distribution", parse_distribution, "ubuntu (24.04, default) or debian (13)", "DIST"),
    Setting("release", parse_text, "distribution release (noble for ubuntu, trixie for debian)", "RELEASE"),
    Setting("mirror", parse_text, "distribution mirror URL", "URL"),
    Setting("linstor_source", parse_linstor_source,
            "'linbit' (LINBIT's public repository or PPA), 'linbit:URL' (a mirror of it) or 'local:DIR'", "SRC"),
    Setting("linstor_version", parse_linstor_version,
            "pin linstor-controller to this version (must match the satellites)", "VERSION"),
    Setting("linbit_keyring", parse_path, "LINBIT's repository signing key (ASCII-armoured), if already verified",
            "FILE"),
    Setting("hostname", parse_hostname, "host name of the appliance", "NAME"),
    Setting("password_hash", parse_password_hash, "crypt hash for the 'linbit' account instead of the expired "
            "default password", "HASH"),
    Setting("ssh_authorized_keys", parse_ssh_keys, "SSH public keys (or .pub files) allowed to log in as linbit",
            "KEY"),
    Setting("ssh_password_login", parse_bool, "allow SSH password login", flag=True),
    Setting("ssh_root_login", parse_bool, "allow SSH login as root (with a key)", flag=True),
    Setting("address", parse_interface, "static address with prefix, e.g. 10.0.0.100/24 (default: DHCP)", "CIDR"),
    Setting("gateway", parse_ip, "default gateway for the static address", "IP"),
    Setting("dns", parse_dns, "DNS servers, comma-separated", "IP,..."),
    Setting("search_domains", parse_list, "DNS search domains, comma-separated", "DOMAIN,..."),
    Setting("disk_size", parse_size, "size of the VM disk the image is for (default 2G)", "SIZE"),
    Setting("timezone", parse_timezone, "time zone (default UTC)", "TZ"),
    Setting("locale", parse_text, "locale (default C.UTF-8)", "LOCALE"),
    Setting("keymap", parse_text, "console keymap (default us)", "KEYMAP"),
    Setting("backup_keep", parse_keep, "how many daily database backups the appliance keeps (default 7)", "N"),
    Setting("output_dir", parse_path, "where the image and its checksums are written (default ./out)", "DIR"),
    Setting("cache_dir", parse_path, f"mkosi's package and image cache (default {DEFAULT_CACHE})", "DIR"),
)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}
SETTINGS_BY_NAME = {s.name: s for s in SETTINGS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", type=Path, help="TOML file with settings (keys as the flags)")
    for setting in SETTINGS:
        if setting.flag:
            parser.add_argument(setting.cli, dest=setting.name, action=argparse.BooleanOptionalAction,
                                default=None, help=setting.help)
        elif setting.name in ("ssh_authorized_keys", "dns", "search_domains"):
            parser.add_argument(setting.cli, dest=setting.name, action="append", default=None,
                                metavar=setting.metavar, help=setting.help + " (repeatable)")
        else:
            parser.add_argument(setting.cli, dest=setting.name, default=None, metavar=setting.metavar,
                                help=setting.help)


def load_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        die(f"configuration file {path} does not exist", hint="check the path given to --config")
    except tomllib.TOMLDecodeError as error:
        die(f"configuration file {path} is not valid TOML: {error}", hint="fix the file")
    unknown = sorted(set(data) - set(SETTINGS_BY_KEY))
    if unknown:
        die(f"unknown setting '{unknown[0]}' in {path}", hint=f"known settings: {', '.join(sorted(SETTINGS_BY_KEY))}")
    return data


def from_sources(toml: Mapping[str, Any], cli: Mapping[str, Any]) -> Config:
    """Merge TOML values and CLI values (CLI wins), parse each, then check the combination."""
    raw: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.key in toml:
            raw[setting.name] = toml[setting.key]
        value = cli.get(setting.name)
        if value is not None:
            if isinstance(value, list) and setting.name != "ssh_authorized_keys":
                value = ",".join(value)
            raw[setting.name] = value
    values = {name: SETTINGS_BY_NAME[name].parse(value) for name, value in raw.items()}
    return finalize(values)



def finalize(values: dict[str, Any]) -> Config:
    distribution = values.get("distribution", Distribution.ubuntu)
    release = values.get("release") or RELEASES[distribution]
    if release in REFUSED_RELEASES:
        die(f"release '{release}' is not supported for the appliance", hint=REFUSED_RELEASES[release])
    if release != RELEASES[distribution]:
        die(f"release '{release}' is not supported for {distribution}",
            hint=f"use {RELEASES[distribution]} (the only {distribution} release the appliance is built for)")
    values["release"] = release
    values.setdefault("mirror", DEFAULT_MIRRORS[distribution])
    if not re.match(r"^(https?|file)://", values["mirror"]):
        die(f"mirror '{values['mirror']}' is not a URL", hint="use http://, https:// or file://")
    values["mirror"] = values["mirror"].rstrip("/")

    address = values.get("address")
    values["network"] = NetworkMode.static if address else NetworkMode.dhcp
    if not address:
        for name in ("gateway", "dns", "search_domains"):
            if values.get(name):
                die(f"--{name.replace('_', '-')} only applies to a static address", hint="also give --address CIDR")
    gateway = values.get("gateway")
    if address and gateway:
        if gateway.version != address.version:
            die(f"gateway {gateway} and address {address} are of different IP versions", hint="use matching ones")
        if gateway not in address.network:
            die(f"gateway {gateway} is not inside {address.network}", hint="use a gateway on the VM's subnet")
        if gateway == address.ip:
            die(f"gateway {gateway} is the appliance's own address", hint="use the router's address")

    source = values.get("linstor_source", LinstorSource("linbit"))
    if source.kind == "local":
        assert source.directory is not None
        if not source.directory.is_dir():
            die(f"LINSTOR package folder {source.directory} does not exist",
                hint="create it and put linstor-controller and its dependencies (.deb) in it")
        if not any(source.directory.glob("linstor-controller_*.deb")):
            die(f"no linstor-controller_*.deb in {source.directory}",
                hint="copy the linstor-controller package and its dependencies into that folder")
    keyring = values.get("linbit_keyring")
    if keyring and not keyring.is_file():
        die(f"LINBIT keyring {keyring} does not exist", hint="pass the path of the ASCII-armoured key file")

    if values.get("disk_size", 2 * 2**30) < 1 * 2**30:
        die("the disk size must be at least 1G",
            hint="the image alone takes about 0.9 GiB, and the database and logs need room; 2G is the default")
    return Config(**values)


def from_args(args: argparse.Namespace) -> Config:
    toml = load_toml(args.config) if getattr(args, "config", None) else {}
    cli = {s.name: getattr(args, s.name, None) for s in SETTINGS}
    return from_sources(toml, cli)

