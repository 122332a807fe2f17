"""coldstart install / remove / status on the live simulated cluster."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sim.cluster import SimCluster

from builder.coldstart import layout, nodefiles, nodetool
from builder.coldstart.record import NodeRecord
from builder.coldstart.settings import Settings
from builder.errors import ApplianceError

from .appliance import APPLIANCE_IP, CONTROLLER_VMID, PROJECT, Appliance, cli, install_everywhere, ok, wait_for

pytestmark = pytest.mark.sim

HOOK = "local:snippets/linstor-coldstart-hook"
NODE_FILES = ("usr/local/lib/linstor-appliance/linstor-appliance.pyz", "var/lib/vz/snippets/linstor-coldstart-hook",
              "etc/linstor-coldstart.conf", "etc/systemd/system/pve-guests.service.d/linstor-coldstart.conf",
              "etc/systemd/system/pve-ha-lrm.service.d/linstor-coldstart.conf",
              "etc/systemd/system/linstor-coldstart-retry.service", "etc/systemd/system/linstor-coldstart-retry.timer")
Make = Callable[..., Appliance]


def snapshot(cluster: SimCluster) -> dict[str, object]:
    """Every file on every node (content hash or link target), the parsed storage.cfg, the guests' configs."""
    files: dict[str, str] = {}
    for node in cluster.nodes:
        root = cluster.root(node)
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if relative.parts[:2] == ("etc", "pve") or relative.parts[:1] == ("dev",):
                continue
            if path.is_symlink():
                files[f"{node}/{relative}"] = f"-> {os.readlink(path)}"
            elif path.is_file():
                files[f"{node}/{relative}"] = hashlib.sha1(path.read_bytes()).hexdigest()
            elif path.is_dir():
                files[f"{node}/{relative}/"] = "dir"
    pve = sorted(str(p.relative_to(cluster.state.pve)) for p in cluster.state.pve.rglob("*")
                 if p.is_file() and p.name != "manager_status")  # fmt: skip
    guests = {vmid: cluster.vm_config(vmid) for vmid in sorted(_vmids(cluster))}
    storage = {sid: {k: sorted(v) if isinstance(v, dict) else v for k, v in cfg.items()}
               for sid, cfg in cluster.storage_cfg().items()}  # fmt: skip
    return {"files": files, "pve": pve, "guests": guests, "storage": storage}


def _vmids(cluster: SimCluster) -> list[int]:
    return [int(p.stem) for p in cluster.state.pve.glob("nodes/*/qemu-server/*.conf")]


def small(make: Make, **options: object) -> Appliance:
    return make({101: "pve1", 102: "pve2"}, {201: "pve1", 202: "pve3"}, {301: "pve2"}, **options)


def test_install_gates_the_guests_once_every_node_has_it(appliance: Make) -> None:
    app = small(appliance)
    cluster = app.cluster
    first = ok(cli(cluster, "pve1", "coldstart", "install"))
    assert "adding snippets to the content of storage 'local'" in first.stderr
    assert "the guests get the hook once every node has it; still to do: pve2, pve3" in first.stderr
    assert "snippets" in cluster.storage_cfg()["local"]["content"]
    assert not any("hookscript" in cluster.vm_config(v) for v in _vmids(cluster))
    install_everywhere(cluster, nodes=["pve2", "pve3"])
    hooks = {v: cluster.vm_config(v).get("hookscript") for v in _vmids(cluster)}
    # The controller VM never carries the hook; nor does a guest that needs no controller.
    assert hooks == {CONTROLLER_VMID: None, 101: HOOK, 102: HOOK, 201: HOOK, 202: HOOK, 301: None}
    for node in cluster.nodes:
        root = cluster.root(node)
        for relative in NODE_FILES:
            assert (root / relative).is_file(), (node, relative)
        assert os.access(root / "var/lib/vz/snippets/linstor-coldstart-hook", os.X_OK)
        guests = cluster.dropins(node, "pve-guests.service")["linstor-coldstart.conf"]
        assert ("ExecStartPre=-/usr/bin/python3 /usr/local/lib/linstor-appliance/linstor-appliance.pyz coldstart "
                "gate") in guests
        lrm = cluster.dropins(node, "pve-ha-lrm.service")["linstor-coldstart.conf"]
        assert f"After=drbd@{app.resource}.target" in lrm
        assert cluster.unit_enabled(node, "linstor-coldstart-retry.timer") == "enabled"
        assert cluster.unit_active(node, "linstor-coldstart-retry.timer") == "active"
        show = cluster.run(node, "systemctl", "show", "-p", "NeedDaemonReload", "pve-guests.service").stdout
        assert show == "NeedDaemonReload=no\n"
    record = json.loads((cluster.state.pve / "linstor-coldstart.json").read_text())
    assert record["nodes"] == ["pve1", "pve2", "pve3"] and sorted(record["hooks"]) == ["101", "102", "201", "202"]
    assert record["content_before"] == "iso,vztmpl,backup"


def test_install_again_changes_nothing(appliance: Make) -> None:
    app = small(appliance)
    install_everywhere(app.cluster)
    before = snapshot(app.cluster)
    for node in app.cluster.nodes:
        again = ok(cli(app.cluster, node, "coldstart", "install"))
        assert "hookscript" not in again.stderr and "adding snippets" not in again.stderr
    assert snapshot(app.cluster) == before


def test_remove_everywhere_restores_the_cluster(appliance: Make) -> None:
    app = small(appliance, enable_drbd_target=False)
    cluster = app.cluster
    before = snapshot(cluster)
    install_everywhere(cluster)
    # A node without drbd@<res>.target could not start the controller VM after a reboot: install enables it.
    assert all(cluster.unit_enabled(n, f"drbd@{app.resource}.target") == "enabled" for n in cluster.nodes)
    for node in cluster.nodes:
        ok(cli(cluster, node, "coldstart", "remove"))
    after = snapshot(cluster)
    assert {k: v for k, v in after["files"].items() if before["files"].get(k) != v} == {}
    assert {k for k in before["files"] if k not in after["files"]} == set()
    assert after == before
    assert all(cluster.unit_enabled(n, f"drbd@{app.resource}.target") == "disabled" for n in cluster.nodes)
    assert not (cluster.state.pve / "linstor-coldstart.json").exists()


TIMER = "linstor-coldstart-retry.timer"


def install_package(cluster: SimCluster, node: str) -> None:
    """What the Debian package puts on a node: the tool as /usr/bin/linstor-appliance, the retry units disabled."""
    root = cluster.root(node)
    tool = root / layout.PACKAGED_TOOL
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_bytes(nodetool.archive())
    tool.chmod(0o755)
    for unit in (PROJECT / "node/systemd").iterdir():
        shutil.copyfile(unit, root / "lib/systemd/system" / unit.name)


def test_with_the_package_its_units_are_enabled_and_only_the_interval_is_written(appliance: Make) -> None:
    """A copy in /etc would hide the packaged units (and their updates): install enables the package's timer,
    a non-default interval is a drop-in, and remove leaves the unit files to the package."""
    app = small(appliance)
    cluster = app.cluster
    for node in cluster.nodes:
        install_package(cluster, node)
    before = snapshot(cluster)
    install_everywhere(cluster, "--retry-interval", "30", nodes=["pve1"])
    install_everywhere(cluster, nodes=["pve2", "pve3"])
    for node in cluster.nodes:
        root = cluster.root(node)
        assert not (root / layout.RETRY_SERVICE).exists() and not (root / layout.RETRY_TIMER).exists(), node
        assert not (root / layout.ZIPAPP_TOOL).exists(), node
        assert os.readlink(root / "etc/systemd/system/timers.target.wants" / TIMER) == f"/lib/systemd/system/{TIMER}"
        assert cluster.unit_active(node, TIMER) == "active"
        record = NodeRecord.load(root)
        assert record is not None and TIMER in record.enabled, node
    interval = cluster.dropins("pve1", TIMER)
    assert list(interval) == ["interval.conf"]
    # Timer settings add up: the drop-in resets the packaged ones before setting its own.
    lines = interval["interval.conf"].splitlines()
    assert lines[lines.index("[Timer]") + 1:] == [
        "# An empty assignment drops the packaged unit's OnBootSec=/OnUnitActiveSec= (timers add up otherwise).",
        "OnBootSec=", "OnBootSec=30s", "OnUnitActiveSec=30s"]  # fmt: skip
    assert cluster.dropins("pve2", TIMER) == {}
    assert ok(cli(cluster, "pve1", "coldstart", "status")).stdout.splitlines()[0].endswith("retry every 30s)")
    for node in cluster.nodes:
        ok(cli(cluster, node, "coldstart", "remove"))
        assert cluster.unit_enabled(node, TIMER) == "disabled"
    # The drop-in and its directory are gone, the package's tool and units are still there.
    assert snapshot(cluster) == before


def test_remove_on_one_node_takes_the_hook_off_every_guest(appliance: Make) -> None:
    app = small(appliance)
    cluster = app.cluster
    install_everywhere(cluster)
    removed = ok(cli(cluster, "pve2", "coldstart", "remove"))
    assert "still installed on pve1, pve3" in removed.stderr
    # A gated guest would fail to start on pve2 now: no guest keeps the hook.
    assert not any("hookscript" in cluster.vm_config(v) for v in _vmids(cluster))
    assert not (cluster.root("pve2") / "usr/local/lib/linstor-appliance/linstor-appliance.pyz").exists()
    assert (cluster.root("pve1") / "usr/local/lib/linstor-appliance/linstor-appliance.pyz").exists()
    assert "snippets" in cluster.storage_cfg()["local"]["content"]
    ok(cli(cluster, "pve2", "coldstart", "install"))
    assert cluster.vm_config(101)["hookscript"] == HOOK


def test_a_rebooted_node_starts_the_controller_vm_without_any_controller(appliance: Make) -> None:
    """Every node keeps the controller VM's .res file and brings the disk up at boot; HA needs nothing else."""
    app = small(appliance, enable_drbd_target=False)
    cluster = app.cluster
    # The simulation runs hooks inside its one HA tick: no waiting there (test_scripts.py covers it).
    install_everywhere(cluster, "--hook-wait", "0")
    for node in cluster.nodes:
        cluster.node_offline(node)
    app.sync()
    assert not app.controller_running()
    for node in ("pve3", "pve2", "pve1"):
        # Only the gated on-boot guests fail here (no controller); the DRBD units come up.
        assert all(line.startswith("Starting VM 20") for line in cluster.node_online(node)), node
    assert wait_for(lambda: cluster.vm_status(CONTROLLER_VMID) == "running", timeout=20)
    assert not app.controller_running()
    assert all(app.resource in cluster.drbd_devices(n) for n in cluster.nodes)


def test_install_refuses_a_node_without_the_controller_resource(appliance: Make) -> None:
    app = small(appliance, resource_nodes=("pve1", "pve2"))
    assert not (app.cluster.root("pve3") / f"var/lib/linstor.d/{app.resource}.res").exists()
    result = cli(app.cluster, "pve3", "coldstart", "install")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: this node has no /var/lib/linstor.d/{app.resource}.res, so the controller VM's disk cannot come "
        f"up here at boot; make the resource available here: linstor resource make-available pve3 {app.resource}")


def test_a_guest_with_its_own_hookscript_keeps_it(appliance: Make) -> None:
    app = small(appliance)
    cluster = app.cluster
    for node in cluster.nodes:
        own = cluster.root(node) / "var/lib/vz/snippets/own.sh"
        own.write_text("#!/bin/sh\nexit 0\n")
        own.chmod(0o755)
    ok(cluster.run("pve2", "qm", "set", "102", "--hookscript", "local:snippets/own.sh"))
    install_everywhere(cluster, nodes=["pve1", "pve2"])
    last = ok(cli(cluster, "pve3", "coldstart", "install"))
    assert "VM 102 has its own hookscript local:snippets/own.sh; it is not gated" in last.stderr
    assert cluster.vm_config(102)["hookscript"] == "local:snippets/own.sh"
    for node in cluster.nodes:
        ok(cli(cluster, node, "coldstart", "remove"))
    assert cluster.vm_config(102)["hookscript"] == "local:snippets/own.sh"
    assert "hookscript" not in cluster.vm_config(101)


def test_snippets_need_a_directory_storage(appliance: Make) -> None:
    app = small(appliance)
    result = cli(app.cluster, "pve1", "coldstart", "install", "--snippets-storage", "local-lvm")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == ("error: storage 'local-lvm' is a lvmthin storage; hookscripts need a "
                                              "node-local directory storage; use --snippets-storage local")


def rows(text: str) -> dict[int, str]:
    """VMID -> its line of `coldstart status`."""
    return {int(line.split()[0]): line for line in text.splitlines() if line[:1].isdigit()}


def test_status_says_what_each_guest_waits_for(appliance: Make) -> None:
    app = small(appliance, plugin_version="7.0.1")  # 8.3.0 would start them from their local devices
    cluster = app.cluster
    fresh = ok(cli(cluster, "pve1", "coldstart", "status")).stdout
    assert fresh.startswith("node pve1: not installed (linstor-appliance coldstart install)\n"
                            "cluster: not installed on any node; no guest is gated\n")
    assert rows(fresh)[101].endswith("nothing: running")
    install_everywhere(cluster, "--boot-wait", "240", "--hook-wait", "1")
    for vmid in (101, 102, 201, 202):
        ok(cluster.run(cluster.vm_owner(vmid) or "pve1", "qm", "stop", str(vmid)))
    assert wait_for(lambda: all(cluster.vm_status(v) == "stopped" for v in (101, 102, 201, 202)))
    cluster.stop_controller(APPLIANCE_IP)
    text = ok(cli(cluster, "pve2", "coldstart", "status")).stdout
    lines = text.splitlines()
    assert lines[0] == "node pve2: installed (boot wait 240s, hook wait 1s, retry every 15s)"
    assert lines[1] == f"cluster: installed on pve1, pve2, pve3; 4 guests carry the hook {HOOK}"
    assert lines[2] == f"storage drbdstorage: controllers {APPLIANCE_IP}: no controller answers /health"
    by_vmid = rows(text)
    assert by_vmid[CONTROLLER_VMID].endswith(
        f"nothing: the controller VM (disk /dev/drbd/by-res/{app.resource}/0 by path, up at boot from its kept "
        ".res file; no hook)")
    assert "  stopped  stopped  nothing: HA state stopped, not requested to run" in by_vmid[101]
    assert by_vmid[201].endswith(f"a controller of drbdstorage ({APPLIANCE_IP}): pve-guests on pve1 waits up to "
                                 "240s at boot, then linstor-coldstart-retry starts it once one answers")
    assert by_vmid[301].endswith("nothing: no disk on DRBD storage")
    ok(cluster.run("pve2", "ha-manager", "set", "vm:102", "--state", "started"))
    waiting = rows(ok(cli(cluster, "pve2", "coldstart", "status")).stdout)[102]
    assert f"a controller of drbdstorage ({APPLIANCE_IP}) to answer /health; until then the hook refuses it" in waiting
    # HA may already have moved it: the retry timer of the node it is on clears the error.
    assert f"then linstor-coldstart-retry on {waiting.split()[2]} clears a HA error" in waiting


def test_cli_needs_an_action() -> None:
    result = subprocess.run([sys.executable, "-m", "builder", "coldstart"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert result.returncode == 2 and "ACTION" in result.stderr


@pytest.mark.parametrize(("option", "value", "most"), [("--boot-wait", "3601", 3600), ("--hook-wait", "601", 600)])
def test_the_bounds_are_bounded(tmp_path: Path, option: str, value: str, most: int) -> None:
    result = subprocess.run([sys.executable, "-m", "builder", "coldstart", "install", option, value, "--root",
                             str(tmp_path)], capture_output=True, text=True, cwd=PROJECT)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(f"argument {option}: must be at most {most} seconds")
    assert list(tmp_path.iterdir()) == []


def fake_python(path: Path, version: str) -> str:
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return str(path)


def test_install_needs_a_python_the_tool_runs_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nodetool.check_python()  # this host's /usr/bin/python3, as on Proxmox VE 8
    monkeypatch.setattr(layout, "NODE_PYTHON", fake_python(tmp_path / "python3", "3.9"))
    with pytest.raises(ApplianceError) as old:
        nodetool.check_python()
    assert str(old.value) == (f"{tmp_path}/python3 on this node is Python 3.9, and the gate, hook and retry timer "
                              "need 3.11 or later; upgrade the node to Proxmox VE 8 or later (Debian 12, Python 3.11)")
    monkeypatch.setattr(layout, "NODE_PYTHON", str(tmp_path / "missing"))
    with pytest.raises(ApplianceError) as missing:
        nodetool.check_python()
    assert str(missing.value) == (f"{tmp_path}/missing does not exist on this node, and the gate, hook and retry "
                                  "timer run with it; install python3 (3.11 or later; Proxmox VE 8 has it)")


@pytest.mark.parametrize("packaged", [False, True], ids=["zipapp", "package"])
def test_the_node_runs_the_tool_by_a_fixed_path(packaged: bool) -> None:
    files = nodefiles.wanted(Settings(), 100, "pm-c0000100", "/var/lib/vz/snippets", True, packaged)
    command = "/usr/bin/linstor-appliance" if packaged else \
        "/usr/bin/python3 /usr/local/lib/linstor-appliance/linstor-appliance.pyz"  # fmt: skip
    assert f"ExecStartPre=-{command} coldstart gate\n" in str(files[layout.GATE_DROPIN][0])
    assert f"ExecStart={command} coldstart retry\n" in str(files[layout.RETRY_SERVICE][0])
    hook_line = str(files["var/lib/vz/snippets/linstor-coldstart-hook"][0]).splitlines()[-1]
    python = "" if packaged else "/usr/bin/python3 "
    tool = "usr/bin/linstor-appliance" if packaged else "usr/local/lib/linstor-appliance/linstor-appliance.pyz"
    assert hook_line == f'exec {python}"$root/{tool}" coldstart hook "$@"'
    # With the package, nothing is copied; otherwise this tool, as a zipapp whose entry point is the CLI.
    assert (layout.ZIPAPP_TOOL in files) is not packaged
    assert layout.root_of(f"/tmp/x/{layout.ZIPAPP_TOOL}") == Path("/tmp/x/")
    assert layout.root_of(f"/{layout.PACKAGED_TOOL}") == Path("/")


def test_the_node_actions_import_only_the_runtime(tmp_path: Path) -> None:
    """The hook runs in every guest's start: no template engine, no LINSTOR client, no other command."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "builder", "coldstart", "probe"],
                            capture_output=True, text=True, cwd=PROJECT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    assert "builder.coldstart.runtime" in imported
    assert not {m for m in imported if m.split(".")[0] in ("jinja2", "linstor") or m.startswith(
        ("builder.commands", "builder.deploy", "builder.coldstart.install"))}


def test_an_earlier_install_of_the_shell_runtime_is_replaced(tmp_path: Path) -> None:
    """Installs before the runtime was the tool itself left /usr/local/sbin/linstor-coldstart: the next one takes
    it away, and remove restores what it replaced, binary files included."""
    old = tmp_path / "usr/local/sbin/linstor-coldstart"
    old.parent.mkdir(parents=True)
    old.write_text("#!/bin/sh\n")
    earlier = tmp_path / layout.ZIPAPP_TOOL
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"\x00\xffsomeone else's")
    record = NodeRecord(files={"usr/local/sbin/linstor-coldstart": None})
    files = nodefiles.wanted(Settings(), 100, "pm-c0000100", "/var/lib/vz/snippets", False, False)
    nodefiles.drop_stale(tmp_path, files, record)
    nodefiles.write(tmp_path, files, record)
    assert not old.exists() and "usr/local/sbin/linstor-coldstart" not in record.files
    assert earlier.read_bytes() == files[layout.ZIPAPP_TOOL][0]
    saved = NodeRecord(**json.loads(json.dumps(record.__dict__)))
    for relative in saved.paths():
        nodefiles.restore(tmp_path, relative, saved.previous(relative))
    assert earlier.read_bytes() == b"\x00\xffsomeone else's"
    assert not (tmp_path / layout.SETTINGS).exists()
