"""`linstor-appliance upgrade`'s options and the VM's two disk slots, without a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import cli, slots
from builder.errors import ApplianceError
from builder.upgrade import options
from builder.upgrade.options import Mode
from builder.upgrade.preflight import oldest_importable


def parse(*argv: str) -> options.Options:
    return options.from_args(cli.make_parser().parse_args(["upgrade", *argv]), root=Path("/"))


def test_a_new_upgrade_needs_the_image_and_the_others_only_the_vmid() -> None:
    with pytest.raises(ApplianceError, match="--image is required"):
        parse("--vmid", "100")
    with pytest.raises(ApplianceError, match="--vmid is required"):
        parse("--image", "/x/linstor-controller.raw.zst")
    for flag, mode in (("--rollback", Mode.rollback), ("--commit", Mode.commit), ("--resume", Mode.resume)):
        assert parse("--vmid", "100", flag).mode is mode
    given = parse("--vmid", "100", "--image", "/x/linstor-controller.raw.zst", "--satellites", "--timeout", "60")
    assert (given.satellites, given.timeout, given.manifest) == (True, 60.0, Path("/x/manifest.json"))
    assert options.Options.from_json(given.to_json(), Path("/")) == given


def test_one_mode_at_a_time() -> None:
    with pytest.raises(SystemExit):
        parse("--vmid", "100", "--rollback", "--commit")


def test_slots_are_read_from_the_boot_disk() -> None:
    assert slots.resource(100, "a") == "linstor-appliance-100"
    assert slots.resource(100, "b") == "linstor-appliance-100-b"
    assert slots.booted({"scsi0": "/dev/drbd/by-res/linstor-appliance-100-b/0,shared=1"}) == "linstor-appliance-100-b"
    assert slots.booted({"scsi0": "drbdstorage:vm-100-disk-1"}) is None
    assert slots.slot_of(100, "linstor-appliance-100-b") == "b" and slots.slot_of(100, "vm-100-disk-1") is None


def test_releases_that_cannot_migrate_an_old_database() -> None:
    assert oldest_importable("1.34.0") == (1, 21)
    assert oldest_importable("1.33.3") is None
