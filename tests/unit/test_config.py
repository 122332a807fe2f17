"""The build configuration: defaults, TOML, CLI precedence, and every validation a user can trip over."""

from __future__ import annotations

import argparse
import ipaddress
from pathlib import Path

import pytest

from builder import config
from builder.config import Distribution, NetworkMode
from builder.errors import ApplianceError

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0uI1XKfzTq8mUq8y3Yv3p0tMZkXWq0m1l3K2b6cYx user@host"


def parse(*argv: str) -> config.Config:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return config.from_args(parser.parse_args(list(argv)))


def error_of(*argv: str) -> str:
    with pytest.raises(ApplianceError) as caught:
        parse(*argv)
    return str(caught.value)


def test_defaults_are_the_documented_appliance() -> None:
    cfg = parse()
    assert cfg.distribution is Distribution.ubuntu
    assert cfg.release == "noble"
    assert cfg.mirror == "http://archive.ubuntu.com/ubuntu"
    assert str(cfg.linstor_source) == "linbit"
    assert cfg.hostname == "linstor-controller"
    assert cfg.network is NetworkMode.dhcp
    assert cfg.ssh_password_login is False and cfg.ssh_root_login is False
    assert cfg.disk_size == 2 * 2**30
    assert cfg.password_hash is None


def test_debian_gets_trixie_and_debian_mirror() -> None:
    cfg = parse("--distribution", "debian")
    assert (cfg.release, cfg.mirror) == ("trixie", "http://deb.debian.org/debian")


def test_debian_12_is_refused_because_of_java_21() -> None:
    message = error_of("--distribution", "debian", "--release", "bookworm")
    assert "bookworm" in message and "Java 21" in message


def test_unknown_distribution() -> None:
    assert error_of("--distribution", "fedora").startswith("unknown distribution 'fedora'; use 'ubuntu'")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.300/24", "invalid address '10.0.0.300/24'"),
        ("10.0.0.100", "has no prefix length"),
        ("10.0.0.0/24", "network address"),
    ],
)
def test_bad_cidr(address: str, expected: str) -> None:
    assert expected in error_of("--address", address)


def test_gateway_must_be_on_the_subnet() -> None:
    message = error_of("--address", "10.0.0.100/24", "--gateway", "10.0.1.1")
    assert "not inside 10.0.0.0/24" in message


def test_gateway_needs_a_static_address() -> None:
    assert "only applies to a static address" in error_of("--gateway", "10.0.0.1")


def test_static_network() -> None:
    cfg = parse("--address", "10.0.0.100/24", "--gateway", "10.0.0.1", "--dns", "10.0.0.2,10.0.0.3",
                "--dns", "1.1.1.1", "--search-domains", "example.com")
    assert cfg.network is NetworkMode.static
    assert cfg.address == ipaddress.ip_interface("10.0.0.100/24")
    assert cfg.dns == ("10.0.0.2", "10.0.0.3", "1.1.1.1")
    assert cfg.search_domains == ("example.com",)


def test_missing_local_folder(tmp_path: Path) -> None:
    message = error_of("--linstor-source", f"local:{tmp_path}/nope")
    assert "does not exist" in message


def test_local_folder_without_controller_package(tmp_path: Path) -> None:
    assert "no linstor-controller_*.deb" in error_of("--linstor-source", f"local:{tmp_path}")


def test_local_folder_accepted(tmp_path: Path) -> None:
    (tmp_path / "linstor-controller_1.34.0-1_all.deb").write_bytes(b"")
    cfg = parse("--linstor-source", f"local:{tmp_path}")
    assert cfg.linstor_source.kind == "local" and cfg.linstor_source.directory == tmp_path


def test_sizes() -> None:
    assert parse("--disk-size", "4G").disk_size == 4 * 2**30
    assert parse("--disk-size", "3072MiB").disk_size == 3 * 2**30
    assert "invalid size" in error_of("--disk-size", "lots")
    assert "at least 1G" in error_of("--disk-size", "512M")


def test_ssh_keys_inline_and_from_file(tmp_path: Path) -> None:
    pub = tmp_path / "id.pub"
    pub.write_text(KEY + "\n# a comment\n")
    cfg = parse("--ssh-authorized-keys", str(pub), "--ssh-authorized-keys", KEY)
    assert cfg.ssh_authorized_keys == (KEY, KEY)
    assert "neither a public key nor a readable file" in error_of("--ssh-authorized-keys", "nonsense")


def test_password_hash_must_be_crypt() -> None:
    assert "not a crypt(3) hash" in error_of("--password-hash", "linbit")
    assert parse("--password-hash", "$6$salt$hash").password_hash == "$6$salt$hash"


def test_toml_then_cli_precedence(tmp_path: Path) -> None:
    file = tmp_path / "appliance.toml"
    file.write_text('distribution = "debian"\nhostname = "from-toml"\nssh-password-login = true\n'
                    'dns = ["10.0.0.2"]\naddress = "10.0.0.100/24"\n')
    cfg = parse("--config", str(file), "--hostname", "from-cli")
    assert cfg.distribution is Distribution.debian
    assert cfg.hostname == "from-cli"
    assert cfg.ssh_password_login is True
    assert cfg.dns == ("10.0.0.2",)


def test_toml_unknown_key_and_syntax(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text('hostnme = "x"\n')
    assert "unknown setting 'hostnme'" in error_of("--config", str(file))
    file.write_text("hostname = \n")
    assert "is not valid TOML" in error_of("--config", str(file))
    assert "does not exist" in error_of("--config", str(tmp_path / "missing.toml"))


def test_summary_has_every_setting_and_no_secret() -> None:
    cfg = parse("--password-hash", "$6$salt$secrethash")
    summary = cfg.summary()
    assert set(summary) == {s.name for s in config.SETTINGS}
    assert "secrethash" not in str(summary)


def test_errors_are_one_line() -> None:
    for argv in (("--distribution", "x"), ("--address", "1.2.3.4"), ("--hostname", "Bad_Name")):
        assert "\n" not in error_of(*argv)


@pytest.mark.parametrize("version", ["1.34", "latest", "v1.34.0", "1.34.0-", "1.34.0;rm", "1.34.x"])
def test_linstor_version_is_checked_before_the_build(version: str) -> None:
    message = error_of("--linstor-version", version)
    assert message.startswith(f"invalid LINSTOR version '{version}'; give the satellites' version"), message
    assert "\n" not in message


@pytest.mark.parametrize("version", ["1.34.0", "1.34.0-1", "1.33.3-1~bpo12+1"])
def test_good_linstor_versions(version: str) -> None:
    assert parse("--linstor-version", version).linstor_version == version


@pytest.mark.parametrize("zone", ["Europe/Atlantis", "utc", "../../etc/passwd", "Europe/Vienna;x", ""])
def test_timezone_must_exist(zone: str) -> None:
    message = error_of("--timezone", zone)
    assert message.startswith(f"unknown time zone '{zone}'; use a zone name such as UTC"), message


@pytest.mark.parametrize("zone", ["UTC", "Europe/Vienna", "America/Argentina/Buenos_Aires", "Etc/GMT+1"])
def test_existing_timezones(zone: str) -> None:
    if not (config.ZONEINFO / zone).is_file():
        pytest.skip("the build host has no tzdata")
    assert parse("--timezone", zone).timezone == zone


def test_timezone_from_the_config_file_is_checked_too(tmp_path: Path) -> None:
    path = tmp_path / "appliance.toml"
    path.write_text('timezone = "Mars/Olympus_Mons"\n')
    assert error_of("--config", str(path)).startswith("unknown time zone 'Mars/Olympus_Mons'")


def test_linbit_source_at_a_mirror() -> None:
    cfg = parse("--linstor-source", "linbit:https://mirror.example/linbit/")
    assert cfg.linstor_source.kind == "linbit" and cfg.linstor_source.uri == "https://mirror.example/linbit/"
    assert str(cfg.linstor_source) == "linbit:https://mirror.example/linbit/"
    assert "names no URL" in error_of("--linstor-source", "linbit:/srv/linbit")
