"""The installed tool's hook, gate and retry on the live simulation, as PVE and systemd run them there."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.resources import render

from .appliance import APPLIANCE_IP, CONTROLLER_VMID, Appliance, hook, install_everywhere, node_script, ok, wait_for

pytestmark = pytest.mark.sim

Make = Callable[..., Appliance]
REFUSED = "run/linstor-coldstart/refused"
# The guests' DRBD devices are up on their nodes here (after a power cycle they are not): with
# linstor-proxmox 8.3.0 such a guest needs no controller and the hook lets it go, so the tests of
# refusals use 7.0.1.
NO_FALLBACK = "7.0.1"


# "At once" is asserted as "before the configured wait could have run out", never as a speed: a loaded
# machine may take seconds to start a process, but a hook that waited would take the whole bound.
def timed(action: Callable[[], subprocess.CompletedProcess[str]]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = action()
    return result, time.monotonic() - started


def background_hook(app: Appliance, node: str, vmid: int) -> subprocess.Popen[str]:
    script = app.cluster.root(node) / "var/lib/vz/snippets/linstor-coldstart-hook"
    env = app.cluster.env(node)
    return subprocess.Popen([str(script), str(vmid), "pre-start"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_hook_lets_everything_start_while_a_controller_answers(appliance: Make) -> None:
    app = appliance({101: "pve1"}, {201: "pve1"}, {301: "pve1"})
    install_everywhere(app.cluster, "--hook-wait", "30")
    for vmid in (101, 201, 301, CONTROLLER_VMID):
        result, seconds = timed(lambda v=vmid: hook(app.cluster, "pve1", v))  # type: ignore[misc]
        assert (result.returncode, result.stderr, seconds < 30) == (0, "", True), vmid
    assert hook(app.cluster, "pve1", 201, "post-stop").returncode == 0


def test_hook_refuses_at_once_when_no_controller_answers(appliance: Make) -> None:
    app = appliance({101: "pve1"}, {201: "pve1"}, {301: "pve1"}, plugin_version=NO_FALLBACK)
    install_everywhere(app.cluster, "--hook-wait", "30")
    app.cluster.stop_controller(APPLIANCE_IP)
    result, seconds = timed(lambda: hook(app.cluster, "pve1", 201))
    assert result.returncode == 1 and seconds < 30
    assert result.stderr == (f"linstor-coldstart: no LINSTOR controller answers for drbdstorage ({APPLIANCE_IP}); "
                             "not starting VM 201 now: linstor-coldstart-retry starts it once one answers\n")
    assert (app.cluster.root("pve1") / REFUSED / "201").read_text().split()[1:] == ["drbdstorage"]
    # Guests that need no controller, and the controller VM itself, are never held.
    assert hook(app.cluster, "pve1", 301).returncode == 0
    assert hook(app.cluster, "pve1", CONTROLLER_VMID).returncode == 0
    # This is what PVE makes of it: the start fails (pve-guests logs it and goes on; HA retries).
    ok(app.cluster.run("pve1", "qm", "stop", "201"))
    start = app.cluster.run("pve1", "qm", "start", "201")
    assert start.returncode == 255
    assert start.stderr.splitlines()[-1] == ("hookscript error for 201 on pre-start: command "
                                             "'/var/lib/vz/snippets/linstor-coldstart-hook 201 pre-start' failed: "
                                             "exit code 1")  # fmt: skip


def test_a_guest_whose_devices_are_up_needs_no_controller_with_plugin_8_3(appliance: Make) -> None:
    app = appliance({}, {201: "pve1"})
    install_everywhere(app.cluster)
    assert "LOCAL_FALLBACK=yes" in (app.cluster.root("pve1") / "etc/linstor-coldstart.conf").read_text()
    app.cluster.stop_controller(APPLIANCE_IP)
    assert hook(app.cluster, "pve1", 201).returncode == 0
    # Recovered to a node that has no replica of its disk: that one needs a controller.
    resource = app.cluster.vm_config(201)["scsi0"].split(":")[1].split("_")[0]
    assert resource in app.cluster.drbd_devices("pve1") and resource not in app.cluster.drbd_devices("pve3")
    pve = app.cluster.state.pve
    (pve / "nodes/pve1/qemu-server/201.conf").rename(pve / "nodes/pve3/qemu-server/201.conf")
    assert hook(app.cluster, "pve3", 201).returncode == 1


def test_ha_hooks_wait_in_all_but_one_worker_slot(appliance: Make) -> None:
    """max_workers 4: three HA hooks may wait at once on a node; the fourth refuses at once."""
    app = appliance({101: "pve1", 102: "pve1", 103: "pve1", 104: "pve1"}, {}, plugin_version=NO_FALLBACK)
    install_everywhere(app.cluster, "--hook-wait", "12")
    app.cluster.stop_controller(APPLIANCE_IP)
    waiting = [background_hook(app, "pve1", vmid) for vmid in (101, 102, 103)]
    locks = app.cluster.root("pve1") / "run/linstor-coldstart"
    assert wait_for(lambda: len(list(locks.glob("slot.*"))) == 3)
    time.sleep(0.5)
    fourth, seconds = timed(lambda: hook(app.cluster, "pve1", 104))
    assert fourth.returncode == 1 and seconds < 12
    codes = [p.wait(timeout=30) for p in waiting]
    assert codes == [1, 1, 1]
    # The slots are free again when the hooks are gone, however they ended: this one waits (for its 12 s,
    # polling every second) instead of refusing at once.
    again, seconds = timed(lambda: hook(app.cluster, "pve1", 104))
    assert again.returncode == 1 and seconds >= 12


def test_fewer_worker_slots_mean_fewer_waiting_hooks(appliance: Make) -> None:
    app = appliance({101: "pve1", 102: "pve1"}, {}, plugin_version=NO_FALLBACK)
    (app.cluster.state.pve / "datacenter.cfg").write_text("keyboard: en-us\nmax_workers: 2\n")
    install_everywhere(app.cluster, "--hook-wait", "3")
    app.cluster.stop_controller(APPLIANCE_IP)
    first = background_hook(app, "pve1", 101)
    assert wait_for(lambda: (app.cluster.root("pve1") / "run/linstor-coldstart/slot.1").exists())
    time.sleep(0.5)
    second, seconds = timed(lambda: hook(app.cluster, "pve1", 102))
    assert second.returncode == 1 and seconds < 3
    assert first.wait(timeout=30) == 1


def test_a_waiting_hook_passes_as_soon_as_a_controller_answers(appliance: Make) -> None:
    app = appliance({101: "pve1"}, {}, plugin_version=NO_FALLBACK)
    install_everywhere(app.cluster, "--hook-wait", "60")
    app.cluster.stop_controller(APPLIANCE_IP)
    started = time.monotonic()
    waiting = background_hook(app, "pve1", 101)
    time.sleep(2)
    app.cluster.start_controller(APPLIANCE_IP, app.root)
    assert waiting.wait(timeout=30) == 0
    assert time.monotonic() - started < 60
    assert not (app.cluster.root("pve1") / REFUSED / "101").exists()


def test_gate_waits_only_for_the_on_boot_guests_and_only_so_long(appliance: Make) -> None:
    app = appliance({102: "pve2"}, {201: "pve1"}, {301: "pve2"}, plugin_version=NO_FALLBACK)
    install_everywhere(app.cluster, "--boot-wait", "3")
    app.cluster.stop_controller(APPLIANCE_IP)
    # pve2 starts no guest at boot that needs a controller (102 is HA, 301 is on local-lvm).
    quick, seconds = timed(lambda: node_script(app.cluster, "pve2", "gate"))
    assert (quick.returncode, quick.stderr, seconds < 3) == (0, "", True)
    slow, seconds = timed(lambda: node_script(app.cluster, "pve1", "gate"))
    assert slow.returncode == 0 and seconds >= 3  # it waited out its bound
    assert slow.stderr == (f"linstor-coldstart: no answer from drbdstorage ({APPLIANCE_IP}) after 3s; starting "
                           "guests now, the retry timer starts the refused ones later\n")
    assert (app.cluster.root("pve1") / "run/linstor-coldstart/gate-expired").exists()
    app.cluster.start_controller(APPLIANCE_IP, app.root)
    open_gate, seconds = timed(lambda: node_script(app.cluster, "pve1", "gate"))
    assert open_gate.returncode == 0 and seconds < 3


def test_gate_does_not_wait_for_a_controller_vm_it_starts_itself(appliance: Make) -> None:
    app = appliance({}, {201: "pve1"}, plugin_version=NO_FALLBACK)
    ok(app.cluster.run("pve1", "ha-manager", "remove", f"vm:{CONTROLLER_VMID}"))
    install_everywhere(app.cluster, "--boot-wait", "30")
    app.cluster.stop_controller(APPLIANCE_IP)
    result, seconds = timed(lambda: node_script(app.cluster, "pve1", "gate"))
    assert result.returncode == 0 and seconds < 30
    assert "is not HA-managed and starts with the guests here; not waiting" in result.stderr


def test_retry_starts_what_was_refused_once_a_controller_answers(appliance: Make) -> None:
    app = appliance({101: "pve1"}, {201: "pve1", 202: "pve3"}, plugin_version=NO_FALLBACK)
    cluster = app.cluster
    ok(cluster.run("pve2", "qm", "create", "203", "--name", "manual", "--scsi0", "drbdstorage:1"))
    install_everywhere(cluster, "--hook-wait", "0")
    for vmid in (101, 201, 202):
        ok(cluster.run(cluster.vm_owner(vmid) or "pve1", "qm", "stop", str(vmid)))
    assert wait_for(lambda: all(cluster.vm_status(v) == "stopped" for v in (101, 201, 202)))
    cluster.stop_controller(APPLIANCE_IP)
    for vmid, node in ((201, "pve1"), (202, "pve3"), (203, "pve2")):
        assert cluster.run(node, "qm", "start", str(vmid)).returncode == 255
    ok(cluster.run("pve1", "qm", "start", "101"))
    # HA: refused on pve1, restarted, relocated, refused again: error (max_restart 1, max_relocate 1).
    assert wait_for(lambda: cluster.ha_services().get("vm:101", {}).get("state") == "error", timeout=20)
    stuck = cluster.vm_owner(101)
    assert stuck is not None and (cluster.root(stuck) / REFUSED / "101").exists()
    # Nothing happens while no controller answers.
    for node in cluster.nodes:
        assert node_script(cluster, node, "retry").returncode == 0
    assert cluster.ha_services()["vm:101"]["state"] == "error"
    assert (cluster.root("pve1") / REFUSED / "201").exists()
    cluster.start_controller(APPLIANCE_IP, app.root)
    logs = {node: node_script(cluster, node, "retry") for node in cluster.nodes}
    assert all(result.returncode == 0 for result in logs.values())
    assert "starting VM 201, refused earlier while no controller answered" in logs["pve1"].stderr
    assert "starting VM 202, refused earlier while no controller answered" in logs["pve3"].stderr
    assert "VM 101: HA error cleared, start requested" in logs[stuck].stderr
    assert wait_for(lambda: all(cluster.vm_status(v) == "running" for v in (101, 201, 202)), timeout=20)
    # A guest that does not start at boot is left to whoever asked for it.
    assert cluster.vm_status(203) == "stopped"
    for node in cluster.nodes:
        node_script(cluster, node, "retry")
        assert list((cluster.root(node) / REFUSED).glob("*")) == []


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
@pytest.mark.parametrize("python", ["/usr/bin/python3", ""], ids=["zipapp", "package"])
def test_the_hookscript_passes_shellcheck(tmp_path: Path, python: str) -> None:
    hook_file = tmp_path / "hook"
    hook_file.write_text(render("image/templates/coldstart/hook.sh.j2", snippet="var/lib/vz/snippets/h",
                                tool="usr/bin/linstor-appliance", python=python))  # fmt: skip
    result = subprocess.run(["shellcheck", "-s", "sh", str(hook_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
