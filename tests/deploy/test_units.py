"""The deploy's pure parts: bad input, storage.cfg reading, versions, journal, the files put into the VM."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest

from builder import cli
from builder.deploy import firewall, options, storagecfg
from builder.deploy import journal as journals
from builder.deploy.controller import Endpoint, host_endpoint, http_settings
from builder.deploy.options import Options, Strategy
from builder.deploy.steps.inject import appliance_toml
from builder.deploy.versions import Plugin, needs_keep_res, numbers, release
from builder.errors import ApplianceError
from builder.resources import render

PROJECT = Path(__file__).resolve().parents[2]

BASE = ["deploy", "--image", "/srv/linstor-controller.raw.zst", "--vmid", "100", "--storage", "drbdstorage",
        "--ip", "10.0.0.100/24", "--gateway", "10.0.0.1"]  # fmt: skip


@pytest.mark.parametrize(("change", "expected"), [
    ({"--vmid": None}, "error: --vmid is required; give the VMID of the controller VM, e.g. --vmid 100"),
    ({"--vmid": "abc"}, "error: invalid VMID 'abc'; use a number from 100 to 999999999"),
    ({"--image": None}, "error: --image is required; see 'linstor-appliance deploy --help'"),
    ({"--image": "/srv/disk.qcow2"}, "error: disk.qcow2 is neither a raw image nor its .zst; pass "
                                     "linstor-controller.raw or .raw.zst"),
    ({"--ip": "10.0.0.100"}, "error: address '10.0.0.100' has no prefix length; write it in CIDR form, for example "
                             "10.0.0.100/24"),
    ({"--ip": "10.0.0.300/24"}, "error: invalid address '10.0.0.300/24'; write it in CIDR form, for example "
                                "10.0.0.100/24"),
    ({"--gateway": "192.168.1.1"}, "error: gateway 192.168.1.1 is not inside 10.0.0.0/24; use a gateway on the VM's "
                                   "subnet"),
    ({"--storage": "bad storage"}, "error: invalid storage ID 'bad storage'; use the ID of a drbd entry in "
                                   "/etc/pve/storage.cfg"),
    ({"--strategy": "magic"}, "error: unknown strategy 'magic'; use device-path or controllervm"),
    ({"--redundancy": "0"}, "error: invalid --redundancy '0'; use a whole number of at least 1"),
    ({"--bridge": "vmbr0; rm -rf /"}, "error: invalid bridge name 'vmbr0; rm -rf /'; use the name of a Linux bridge "
                                      "such as vmbr0"),
    ({"--allow-from": "somewhere"}, "error: invalid network 'somewhere'; write it in CIDR form, for example "
                                    "192.168.1.0/24"),
    ({"--backup-schedule": "02:30"}, "error: --backup-schedule needs --backup-storage; name the storage the backups "
                                     "go to"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_1(change: dict[str, str | None], expected: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    argv = list(BASE)
    for flag, value in change.items():
        if flag in argv:
            index = argv.index(flag)
            del argv[index : index + 2]
        if value is not None:
            argv += [flag, value]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.splitlines() == [expected]


def test_options_round_trip_through_the_journal(tmp_path: Path) -> None:
    parsed = cli.make_parser().parse_args([*BASE, "--dns", "10.0.0.53,10.0.0.54", "--allow-from", "192.168.0.0/16",
                                           "--strategy", "controllervm"])  # fmt: skip
    given = options.from_args(parsed, root=tmp_path)
    again = Options.from_json(json.loads(json.dumps(given.to_json())), tmp_path)
    assert again == given
    assert given.strategy is Strategy.controllervm and given.resource == "vm-100-disk-1"
    assert given.dns == ("10.0.0.53", "10.0.0.54")
    assert given.allow_from == (ipaddress.ip_network("192.168.0.0/16"),)


def test_storage_cfg_is_read_like_sectionconfig() -> None:
    text = ("dir: local\n\tpath /var/lib/vz\n\tcontent iso,backup\n\n"
            "drbd: drbdstorage\n   # a comment does not end the section\n   resourcegroup defaultpool\n"
            "   controller 10.0.0.1, 10.0.0.2\n\n"
            "drbd: second\n\tcontroller 10.0.0.1\ndrbd: swallowed\n\tresourcegroup other\n")  # fmt: skip
    entries = storagecfg.parse(text)
    assert list(entries) == ["local", "drbdstorage", "second"]
    assert entries["drbdstorage"].controllers == ["10.0.0.1", "10.0.0.2"]
    assert entries["drbdstorage"].options["resourcegroup"] == "defaultpool"
    # A header right after property lines is no header (PVE warns 'ignore config line'); the lines after it
    # land in the previous section.
    assert entries["second"].options == {"controller": "10.0.0.1", "resourcegroup": "other"}
    assert [e.id for e in storagecfg.drbd_entries(entries)] == ["drbdstorage", "second"]


def test_versions() -> None:
    assert release("1.33.3-1") == "1.33.3" and release("1:1.34.0~rc.1-1") == "1.34.0-rc.1"
    assert numbers("1.34.0-rc.1") == (1, 34, 0)
    assert Plugin("5.2.2").has_controllervm and not Plugin("6.0.0").has_controllervm
    assert Plugin("5.2.2").max_apiver == 10 and Plugin("8.3.0").max_apiver is None
    assert Plugin("8.3.0").local_activation_fallback and not Plugin("8.2.1").local_activation_fallback
    assert needs_keep_res("1.20.0") and needs_keep_res("1.32.3") and not needs_keep_res("1.33.0")


def test_controller_endpoint_from_linstor_toml(tmp_path: Path) -> None:
    assert http_settings("") == ("::", 3370, None)
    assert http_settings('[http]\nport = 3380\nlisten_addr = "10.0.0.1"\n[https]\nenabled = true\n') == \
        ("10.0.0.1", 3380, 3371)
    (tmp_path / "etc/linstor").mkdir(parents=True)
    (tmp_path / "etc/linstor/linstor.toml").write_text('[http]\n  listen_addr = "0.0.0.0"\n')
    assert host_endpoint(tmp_path) == Endpoint("localhost", 3370)
    assert str(Endpoint("fd00::5", 3370)) == "[fd00::5]:3370"


def test_appliance_toml_keeps_everything_but_the_host_address() -> None:
    host = ('[db]\n  connection_url = "jdbc:h2:/var/lib/linstor/linstordb"\n[encrypt]\n  passphrase = "s3cret"\n'
            '[http]\n  listen_addr = "10.0.0.1"\n  port = 3370\n')  # fmt: skip
    vm = appliance_toml(host)
    assert 'passphrase = "s3cret"' in vm and "port = 3370" in vm
    assert http_settings(vm)[0] == "::"


def test_journal_is_written_atomically_and_records_steps(tmp_path: Path) -> None:
    path = journals.path_for(tmp_path, 100)
    journal = journals.Journal.create(path, {"vmid": 100})
    journal.start_step("disk")
    journal.note("disk", allocating=True)
    assert journals.Journal.load(path).state("disk") == "started"  # type: ignore[union-attr]
    journal.finish_step("disk", {"resource": "r"})
    loaded = journals.Journal.load(path)
    assert loaded is not None and loaded.record("disk") == {"allocating": True, "resource": "r"}
    assert [p.name for p in tmp_path.iterdir()] == ["deploy-100.json"]
    with journals.exclusive(tmp_path, 100), pytest.raises(ApplianceError, match="another linstor-appliance deploy"):
        with journals.exclusive(tmp_path, 100):
            pass


def test_firewall_template_allows_only_the_cluster_and_given_networks() -> None:
    allowed = firewall.allowlist(["10.0.0.1", "10.0.0.2"], [ipaddress.ip_network("192.168.7.0/24"),
                                                            ipaddress.ip_network("fd00::/64")])  # fmt: skip
    text = firewall.ruleset([22, 3370, 3371], allowed, vmid=100)
    assert "elements = { 10.0.0.1, 10.0.0.2, 192.168.7.0/24 }" in text
    assert "tcp dport { 22, 3370, 3371 } ip6 saddr @allowed_v6 accept" in text
    assert text.rstrip().endswith("}") and "tcp dport { 22, 3370, 3371 } counter drop" in text
    nft = subprocess.run(["sh", "-c", "command -v nft"], capture_output=True, text=True).stdout.strip()
    if nft:
        # nft checks a ruleset through the kernel, which wants CAP_NET_ADMIN even for -c. Without root the
        # check runs as root of a user and network namespace of its own, which any user may create.
        argv = [nft, "-c", "-f", "-"]
        if os.geteuid() != 0:
            argv = ["unshare", "--map-root-user", "--net", *argv]
        check = subprocess.run(argv, input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_satellite_dropin_template() -> None:
    text = render("image/templates/deploy/satellite-keep-res.conf.j2", vmid=100, resource="linstor-appliance-100",
                  after="drbd@linstor-appliance-100.target")  # fmt: skip
    assert "[Unit]\nAfter=drbd@linstor-appliance-100.target\n" in text
    assert 'Environment="LS_KEEP_RES=^linstor-appliance-100([.]res)?$"' in text
    without = render("image/templates/deploy/satellite-keep-res.conf.j2", vmid=100, resource="r", after=None)
    assert "[Unit]" not in without


@pytest.mark.parametrize(("installed", "tamper", "verdict"), [
    ("1.34.0-1", False, 0), ("1.33.3-1", False, 1), ("1.34.0-1", True, 1),
])  # fmt: skip
def test_appliance_deploy_check(tmp_path: Path, installed: str, tamper: bool, verdict: int) -> None:
    """The boot-time check in the image: version and injected files, once; later boots check the version only."""
    root = tmp_path / "root"
    for sub in ("etc/linstor-appliance", "var/lib/linstor", "var/lib/dpkg/info", "etc/linstor"):
        (root / sub).mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(f"Package: linstor-controller\nStatus: install ok installed\n"
                                              f"Architecture: all\nVersion: {installed}\n\n")  # fmt: skip
    db = root / "var/lib/linstor/linstordb.mv.db"
    db.write_bytes(b"database")
    manifest = {"linstor_version": "1.34.0", "vmid": 100,
                "files": {"/var/lib/linstor/linstordb.mv.db": hashlib.sha256(b"database").hexdigest()}}  # fmt: skip
    (root / "etc/linstor-appliance/deploy.json").write_text(json.dumps(manifest))
    if tamper:
        db.write_bytes(b"something else")
    check = PROJECT / "image/mkosi.extra/usr/lib/linstor-appliance/deploy-check"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    result = subprocess.run([str(check), "--root", str(root)], capture_output=True, text=True, env=env)
    assert result.returncode == verdict, result.stdout + result.stderr
    if verdict:
        assert "linstor-controller stays stopped" in result.stdout
        assert (root / "run/issue.d/40-linstor-deploy-check.issue").is_file()
        return
    assert (root / "var/lib/linstor-appliance/deploy-checked").is_file()
    # The running controller changes its database; later boots do not hold that against it.
    db.write_bytes(b"newer database")
    again = subprocess.run([str(check), "--root", str(root)], capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stdout
