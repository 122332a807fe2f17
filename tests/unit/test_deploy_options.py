"""The deploy's option table drives its flags, help, parsing, journal form and resume rules."""

from __future__ import annotations

import argparse
import ipaddress
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path

import pytest

from builder import cli
from builder.deploy import options
from builder.deploy.options import OPTIONS, Mode, Options, Strategy
from builder.errors import ApplianceError
from builder.optiontable import Option, OptionTable, whole_number

BASE = ["--image", "/srv/linstor-controller.raw.zst", "--vmid", "100", "--storage", "drbdstorage",
        "--ip", "10.0.0.100/24", "--gateway", "10.0.0.1"]  # fmt: skip

# A value other than the default for every option, as the command line gives it.
SAMPLES: dict[str, list[str]] = {
    "image": ["--image", "/srv/other/linstor-controller.raw"],
    "manifest": ["--manifest", "/srv/meta/manifest.json"],
    "sums": ["--sums", "/srv/meta/SHA256SUMS"],
    "vmid": ["--vmid", "123"],
    "storage": ["--storage", "otherdrbd"],
    "address": ["--ip", "10.0.1.100/24"],
    "gateway": ["--gateway", "10.0.1.1"],
    "dns": ["--dns", "10.0.1.53,10.0.1.54"],
    "bridge": ["--bridge", "vmbr1"],
    "redundancy": ["--redundancy", "2"],
    "name": ["--name", "other-controller"],
    "strategy": ["--strategy", "controllervm"],
    "allow_from": ["--allow-from", "192.168.0.0/16", "--allow-from", "fd00::/64"],
    "register_node": ["--no-register-node"],
    "backup_storage": ["--backup-storage", "backups"],
    "backup_schedule": ["--backup-schedule", "sat 03:00"],
    "disk_size": ["--disk-size", "3G"],
    "wait_timeout": ["--wait-timeout", "600"],
    "ssh_options": ["--ssh-option", "Port=2222", "--ssh-option", "Ciphers=aes128-ctr,aes256-ctr"],
    "mode": ["--dry-run"],
}

# What a resume refuses to change, and the line it says about each (given, then recorded value).
REFUSED = {
    "image": "--image differs from the unfinished deploy of VM 100 (/srv/other/linstor-controller.raw instead of "
             "/srv/linstor-controller.raw.zst)",
    "storage": "--storage differs from the unfinished deploy of VM 100 (otherdrbd instead of drbdstorage)",
    "address": "--ip differs from the unfinished deploy of VM 100 (10.0.1.100/24 instead of 10.0.0.100/24)",
    "gateway": "--gateway differs from the unfinished deploy of VM 100 (10.0.1.1 instead of 10.0.0.1)",
    "dns": "--dns differs from the unfinished deploy of VM 100 (('10.0.1.53', '10.0.1.54') instead of ())",
    "bridge": "--bridge differs from the unfinished deploy of VM 100 (vmbr1 instead of vmbr0)",
    "redundancy": "--redundancy differs from the unfinished deploy of VM 100 (2 instead of 3)",
    "name": "--name differs from the unfinished deploy of VM 100 (other-controller instead of linstor-controller)",
    "strategy": "--strategy differs from the unfinished deploy of VM 100 (controllervm instead of device-path)",
    "allow_from": "--allow-from differs from the unfinished deploy of VM 100 ((IPv4Network('192.168.0.0/16'), "
                  "IPv6Network('fd00::/64')) instead of ())",
    "register_node": "--no-register-node differs from the unfinished deploy of VM 100 (False instead of True)",
    "backup_storage": "--backup-storage differs from the unfinished deploy of VM 100 (backups instead of None)",
    "backup_schedule": "--backup-schedule differs from the unfinished deploy of VM 100 (sat 03:00 instead of 02:30)",
    "disk_size": "--disk-size differs from the unfinished deploy of VM 100 (3221225472 instead of None)",
}  # fmt: skip
RESUME_HINT = "leave it out to use the recorded value, or roll back with --rollback first"


def parse(*argv: str, root: Path = Path("/")) -> tuple[Options, set[str]]:
    args = cli.make_parser().parse_args(["deploy", *argv])
    return options.from_args(args, root=root), options.explicit_options(args)


def deploy_help() -> str:
    parser = cli.make_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return " ".join(sub.choices["deploy"].format_help().split())


def test_samples_cover_every_option() -> None:
    assert set(SAMPLES) == set(OPTIONS.by_field)
    assert {f.name for f in fields(Options)} == set(OPTIONS.by_field) | {"root"}


def test_every_option_is_in_help_with_its_default() -> None:
    text = deploy_help()
    for option in OPTIONS.options:
        for flag in [option.flag] if option.flag else [s.flag for s in option.switches]:
            assert f"{flag} " in text, flag
    assert "--bridge BRIDGE bridge of the VM's network card (default: vmbr0)" in text
    assert "--redundancy N diskful replicas of the VM disk (default: 3)" in text
    assert "--name NAME VM name and LINSTOR node name (default: linstor- controller)" in text  # argparse wraps at -
    assert "(linstor-proxmox 5.2.2 and older only) (default: device-path)" in text
    assert "--backup-schedule WHEN calendar event of the backup job (default: 02:30)" in text
    assert "in seconds (default: 300)" in text
    assert "--manifest FILE manifest.json of the image (default: next to the image)" in text
    assert "(default: the size the image was built for)" in text
    assert "--dns IP DNS server of the VM (repeatable, or comma-separated)" in text
    assert "--ssh-option OPTION extra ssh -o option for reaching the other nodes (repeatable)" in text
    assert "[--dry-run | --resume | --rollback]" in text


def test_defaults_come_from_the_table() -> None:
    given, explicit = parse(*BASE)
    assert explicit == {"image", "vmid", "storage", "address", "gateway"}
    for option in OPTIONS.options:
        if option.field not in explicit | {"manifest", "sums"}:
            assert getattr(given, option.field) == option.default, option.field
    assert given.manifest == Path("/srv/manifest.json") and given.sums == Path("/srv/SHA256SUMS")
    assert given.mode is Mode.deploy and given.wait_timeout == 300.0 and given.register_node is True


def test_json_round_trip_of_a_fully_populated_options_is_identity(tmp_path: Path) -> None:
    argv = [word for sample in SAMPLES.values() for word in sample]
    given, explicit = parse(*argv, root=tmp_path)
    assert explicit == set(OPTIONS.by_field)
    for option in OPTIONS.options:
        assert getattr(given, option.field) != option.default, option.field
    assert given.strategy is Strategy.controllervm and given.mode is Mode.dry_run
    assert given.allow_from == (ipaddress.ip_network("192.168.0.0/16"), ipaddress.ip_network("fd00::/64"))
    assert given.ssh_options == ("Port=2222", "Ciphers=aes128-ctr,aes256-ctr")  # ssh options keep their commas
    again = Options.from_json(json.loads(json.dumps(given.to_json())), tmp_path)
    assert again == given
    assert given.to_json()["address"] == "10.0.1.100/24" and given.to_json()["mode"] == "dry-run"


def test_a_journal_from_before_an_option_existed_gets_its_default(tmp_path: Path) -> None:
    recorded = Options.from_json({"vmid": 100, "image": "/srv/linstor-controller.raw.zst", "storage": "drbdstorage",
                                  "address": "10.0.0.100/24", "gateway": "10.0.0.1"}, tmp_path)  # fmt: skip
    assert recorded == replace(parse(*BASE, root=tmp_path)[0], manifest=None, sums=None)
    assert recorded.mode is Mode.deploy and recorded.ssh_options == () and recorded.wait_timeout == 300.0
    with pytest.raises(KeyError, match="vmid"):  # no default stands in for what every run must name
        Options.from_json({"image": "/srv/linstor-controller.raw.zst"}, tmp_path)


@pytest.mark.parametrize("field", sorted(REFUSED))
def test_resume_refuses_changing_each_fixed_option(field: str) -> None:
    recorded, _ = parse(*BASE)
    given, explicit = parse("--vmid", "100", "--resume", *SAMPLES[field])
    with pytest.raises(ApplianceError) as error:
        options.merge_with_journal(given, recorded, explicit)
    assert str(error.value) == f"{REFUSED[field]}; {RESUME_HINT}"


def test_exactly_these_options_are_fixed_on_resume() -> None:
    assert {o.field for o in OPTIONS.options if o.fixed_on_resume} == set(REFUSED)


def test_resume_keeps_the_recording_and_takes_what_may_change(tmp_path: Path) -> None:
    recorded, _ = parse(*BASE, "--bridge", "vmbr1", "--wait-timeout", "900", "--ssh-option", "Port=22")
    # The same fixed value again is no change; the given wait and ssh options replace the recorded ones.
    given, explicit = parse("--vmid", "100", "--resume", "--bridge", "vmbr1", "--ssh-option", "Port=2222",
                            "--manifest", "/elsewhere/manifest.json", root=tmp_path)  # fmt: skip
    merged = options.merge_with_journal(given, recorded, explicit)
    assert merged.bridge == "vmbr1" and merged.image == recorded.image and merged.address == recorded.address
    assert merged.manifest == Path("/srv/manifest.json")  # recorded: a resume does not look at --manifest
    assert merged.mode is Mode.resume and merged.root == tmp_path
    assert merged.wait_timeout == 300.0 and merged.ssh_options == ("Port=2222",)
    # A rollback compares nothing: it only needs the VMID.
    undo, _ = parse("--vmid", "100", "--rollback", "--bridge", "vmbr9")
    assert options.merge_with_journal(undo, recorded, set()).bridge == "vmbr1"


def test_a_resume_needs_only_the_vmid() -> None:
    given, explicit = parse("--vmid", "100", "--resume")
    assert explicit == {"vmid", "mode"} and given.image is None and given.mode is Mode.resume
    with pytest.raises(ApplianceError, match=r"^--storage is required; see 'linstor-appliance deploy --help'$"):
        parse("--vmid", "100", "--image", "/srv/linstor-controller.raw", "--dry-run")


@dataclass(frozen=True)
class Knobs:
    tries: int
    label: str | None


def test_help_renders_the_default_from_the_value_and_every_field_needs_a_record() -> None:
    record = Option("tries", "--tries", whole_number(1), 7, "how often to try", "N")
    parser = argparse.ArgumentParser()
    OptionTable(Knobs, "knobs", [record, Option("label", "--label", str, None, "a label")]).add_arguments(parser)
    assert "how often to try (default: 7)" in " ".join(parser.format_help().split())
    with pytest.raises(TypeError, match=r"without a record \['label'\]"):
        OptionTable(Knobs, "knobs", [record])
    table = OptionTable(Knobs, "knobs", [record], outside=["label"])
    with pytest.raises(ApplianceError, match=r"^invalid --tries '0'; use a whole number of at least 1$"):
        table.parse(argparse.Namespace(tries="0"))
    assert table.parse(argparse.Namespace(tries=None)) == {"tries": 7}
    bounded = OptionTable(Knobs, "knobs", [replace(record, parse=whole_number(0, 600))], outside=["label"])
    assert bounded.parse(argparse.Namespace(tries="600")) == {"tries": 600}
    with pytest.raises(ApplianceError, match=r"^invalid --tries '601'; use a whole number from 0 to 600$"):
        bounded.parse(argparse.Namespace(tries="601"))
