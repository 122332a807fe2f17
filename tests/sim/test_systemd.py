"""Fake systemctl: enablement symlinks, active states, drop-ins and daemon-reload."""

from __future__ import annotations

import pytest

from .cluster import SimCluster

pytestmark = pytest.mark.sim


def test_enable_disable_start_stop(sim_cluster: SimCluster) -> None:
    run = sim_cluster.run
    assert run("pve1", "systemctl", "is-active", "linstor-controller").stdout == "active\n"
    stop = run("pve1", "systemctl", "stop", "linstor-controller")
    assert stop.returncode == 0
    inactive = run("pve1", "systemctl", "is-active", "linstor-controller")
    assert (inactive.returncode, inactive.stdout) == (3, "inactive\n")
    disable = run("pve1", "systemctl", "disable", "linstor-controller")
    assert disable.stderr == 'Removed "/etc/systemd/system/multi-user.target.wants/linstor-controller.service".\n'
    assert run("pve1", "systemctl", "is-enabled", "linstor-controller").stdout == "disabled\n"
    enable = run("pve1", "systemctl", "enable", "--now", "linstor-controller")
    assert enable.stderr == ("Created symlink /etc/systemd/system/multi-user.target.wants/linstor-controller.service "
                             "\u2192 /lib/systemd/system/linstor-controller.service.\n")  # fmt: skip
    assert sim_cluster.unit_active("pve1", "linstor-controller") == "active"
    missing = run("pve2", "systemctl", "start", "linstor-controller")
    assert (missing.returncode, missing.stderr) == (
        5, "Failed to start linstor-controller.service: Unit linstor-controller.service not found.\n")
    assert run("pve2", "systemctl", "is-enabled", "nope").returncode == 1


def test_dropin_needs_daemon_reload(sim_cluster: SimCluster) -> None:
    """The historic LS_KEEP_RES drop-in (linstor.md section 3 step 7) only counts after daemon-reload."""
    dropin = sim_cluster.root("pve2") / "etc/systemd/system/linstor-satellite.service.d/override.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nEnvironment=LS_KEEP_RES=vm-100-disk\n[Unit]\nAfter=drbd.service\n")
    stale = sim_cluster.run("pve2", "systemctl", "restart", "linstor-satellite")
    assert stale.stderr.startswith("Warning: The unit file, source configuration file or drop-ins of "
                                   "linstor-satellite.service changed on disk.")  # fmt: skip
    assert "LS_KEEP_RES" not in sim_cluster.unit_environment("pve2", "linstor-satellite")
    assert sim_cluster.run("pve2", "systemctl", "daemon-reload").returncode == 0
    restart = sim_cluster.run("pve2", "systemctl", "restart", "linstor-satellite")
    assert restart.stderr == ""
    assert sim_cluster.unit_environment("pve2", "linstor-satellite") == {"LS_KEEP_RES": "vm-100-disk"}
    shown = sim_cluster.run("pve2", "systemctl", "show", "-p", "DropInPaths", "--value", "linstor-satellite")
    assert shown.stdout == "/etc/systemd/system/linstor-satellite.service.d/override.conf\n"
    assert "# /etc/systemd/system/linstor-satellite.service.d/override.conf" in sim_cluster.run(
        "pve2", "systemctl", "cat", "linstor-satellite").stdout


def test_drbd_template_units(sim_cluster: SimCluster) -> None:
    missing = sim_cluster.run("pve1", "systemctl", "start", "drbd@nores.target")
    assert missing.returncode == 1
    assert missing.stderr == "A dependency job for drbd@nores.target failed. See 'journalctl -xe' for details.\n"
    enable = sim_cluster.run("pve1", "systemctl", "enable", "drbd@nores.target")
    assert enable.stderr.startswith("Created symlink /etc/systemd/system/multi-user.target.wants/drbd@nores.target")
    assert sim_cluster.unit_enabled("pve1", "drbd@nores.target") == "enabled"
