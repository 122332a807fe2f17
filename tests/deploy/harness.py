"""Running `linstor-appliance deploy` against the simulated cluster, and playing the appliance's part.

The deploy runs in this process (so faults can be injected between steps) with the environment of
a root shell on the node it is run on. The simulated VMs do not boot, so `Guest` does what the
appliance would: when HA starts the VM it reads the injected files from the VM's disk, runs the
appliance's own deploy-check on them, and starts a stand-in controller of the release installed on that
disk on the injected database, answering for the VM's address. It boots from the disk the VM's
configuration names (an upgrade switches it). When the VM stops, that controller stops. That controller works on a
copy of the files; `persist()` puts its database (and the deploy-check's marker) back into the VM disk,
where the real VM's controller writes every change.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sim import guests, network
from sim.cluster import SimCluster

from builder import cli, slots
from builder.coldstart import layout, nodetool
from builder.deploy import inject, options, runner
from builder.deploy.controller import Directory, Endpoint
from builder.deploy.versions import release
from builder.errors import ApplianceError

PROJECT = Path(__file__).resolve().parents[2]
DEPLOY_CHECK = PROJECT / "image/mkosi.extra/usr/lib/linstor-appliance/deploy-check"
# Written by deploy-check once it compared the injected files; later boots check the version only.
DEPLOY_CHECKED = "/var/lib/linstor-appliance/deploy-checked"
# The stand-in controller's failure injection (tests/fixtures/linstor_standin), when an image carries it.
FAIL_MIGRATION = "/etc/linstor/standin-fail-migration"
GUEST_FILES = ["/var/lib/linstor/linstordb.mv.db", "/etc/linstor/linstor.toml", "/etc/linstor-appliance/deploy.json",
               "/var/lib/dpkg/status", "/etc/netplan/config.yaml", "/etc/nftables.conf", DEPLOY_CHECKED,
               FAIL_MIGRATION]  # fmt: skip


def controller_version(dpkg_status: bytes | None) -> str | None:
    """The release of linstor-controller in a disk's dpkg status file (what the VM booted from it runs)."""
    package = None
    for line in (dpkg_status or b"").decode().splitlines():
        if line.startswith("Package:"):
            package = line.split(":", 1)[1].strip()
        elif line.startswith("Version:") and package == "linstor-controller":
            return release(line.split(":", 1)[1].strip())
    return None


class SimDirectory(Directory):
    """Controller addresses of the simulated cluster, mapped to the loopback ports the controllers use."""

    def __init__(self, cluster: SimCluster, node: str) -> None:
        self.cluster = cluster
        self.node = node

    def uri(self, endpoint: Endpoint) -> str:
        host = endpoint.host
        if host in ("localhost", "127.0.0.1", "::1", "::", "0.0.0.0"):
            host = self.cluster.ip(self.node)
        entry = network.endpoints(self.cluster.state).get(host)
        # Port 1 refuses at once, like an address where nothing listens.
        return f"linstor://127.0.0.1:{entry['port'] if entry else 1}"


class Guest:
    """The appliance inside VM `vmid`, as far as the deploy can tell from outside."""

    def __init__(self, cluster: SimCluster, vmid: int, ip: str, resource: str, workdir: Path) -> None:
        self.cluster = cluster
        self.vmid = vmid
        self.ip = ip
        self.resource = resource
        self.workdir = workdir
        self.boots = 0
        self.check_failures: list[str] = []
        self.running = False
        self.root: Path | None = None
        self.booted = resource
        # The controller release of each boot that started one.
        self.versions: list[str | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"guest-{vmid}", daemon=True)

    def __enter__(self) -> Guest:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            # Looked up under the simulation's lock: its HA migration stops the VM and starts it on the target
            # within one locked step, and a guest that caught it in between would reboot from its disk, where
            # Proxmox VE migrates a running VM live.
            with self.cluster.state.locked():
                node = self.cluster.vm_running_on(self.vmid)
            try:
                if node and not self.running:
                    self.boot(node)
                elif not node and self.running:
                    guests.unregister(self.cluster.state, self.vmid)
                    self.cluster.stop_controller(self.ip)
                    self.running = False
            except Exception as error:  # noqa: BLE001 - reported through check_failures
                self.check_failures.append(f"guest error: {error}")
                time.sleep(0.5)

    def booted_resource(self) -> str:
        """The disk resource the VM's configuration boots from now (an upgrade switches it)."""
        return slots.booted(self.cluster.vm_config(self.vmid)) or self.resource

    def boot(self, node: str) -> None:
        self.boots += 1
        root = self.workdir / f"boot{self.boots}"
        self.booted = self.booted_resource()
        files = inject.read(self.cluster.drbd_device(node, self.booted), GUEST_FILES)
        for path, data in files.items():
            if data is not None:
                target = root / path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        check = subprocess.run([str(DEPLOY_CHECK), "--root", str(root)], capture_output=True, text=True,
                               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})  # fmt: skip
        self.running = True
        self.root = root
        # qemu-guest-agent runs once the VM has booted, whether or not its controller starts.
        guests.register(self.cluster.state, self.vmid, root)
        if check.returncode != 0:
            # The controller stays stopped, as linstor-appliance-deploy-check.service makes it.
            self.check_failures.append(check.stdout)
            return
        # The controller release installed on the disk it booted from; the stand-in migrates or refuses the database.
        self.versions.append(controller_version(files.get("/var/lib/dpkg/status")))
        self.cluster.start_controller(self.ip, root, self.versions[-1])

    def persist(self) -> None:
        """What the VM's own disk holds while its controller runs: the database as it wrote it."""
        root = self.workdir / f"boot{self.boots}"
        node = self.cluster.vm_running_on(self.vmid)
        assert self.running and node, f"VM {self.vmid} does not run"
        sources = {path: root / path.lstrip("/") for path in ("/var/lib/linstor/linstordb.mv.db", DEPLOY_CHECKED)}
        files = [inject.File(path, source.read_bytes(), 0o640) for path, source in sources.items() if source.exists()]
        inject.write(self.cluster.drbd_device(node, self.booted), files)


def sim_env(cluster: SimCluster, node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in cluster.env(node).items():
        if key.startswith("PVE_SIM_") or key == "PATH":
            monkeypatch.setenv(key, value)


def deploy_args(image: Path, *extra: str, vmid: int = 100, ip: str = "10.0.0.100/24", storage: str = "drbdstorage",
                redundancy: int | None = None) -> list[str]:  # fmt: skip
    args = ["--image", str(image), "--vmid", str(vmid), "--storage", storage, "--ip", ip, "--gateway", "10.0.0.254"]
    if redundancy is not None:
        args += ["--redundancy", str(redundancy)]
    return args + list(extra)


def run_deploy(cluster: SimCluster, args: list[str], node: str = "pve1") -> int:
    """`linstor-appliance deploy ARGS` on `node`, in this process; ApplianceError propagates."""
    parsed = cli.make_parser().parse_args(["deploy", *args])
    opts = options.from_args(parsed, root=cluster.root(node))
    return runner.run(opts, directory=SimDirectory(cluster, node), explicit=options.explicit_options(parsed))


def expect_failure(cluster: SimCluster, args: list[str], node: str = "pve1") -> str:
    try:
        run_deploy(cluster, args, node)
    except ApplianceError as error:
        return str(error)
    raise AssertionError("the deploy did not fail")


def tree_digest(root: Path) -> dict[str, bytes]:
    """Every file below root with its bytes (the host's database and configuration)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def host_files(cluster: SimCluster, node: str = "pve1") -> dict[str, bytes]:
    found = {}
    for sub in ("var/lib/linstor", "etc/linstor"):
        for name, data in tree_digest(cluster.root(node) / sub).items():
            found[f"{sub}/{name}"] = data
    return found


def state_snapshot(cluster: SimCluster) -> dict[str, Any]:
    """What a failed preflight must leave alone."""
    snapshot: dict[str, Any] = {"storage.cfg": cluster.storage_cfg_text(), "ha": cluster.ha_resources(),
                                "jobs": cluster.backup_jobs(), "db": cluster.controller_db()}  # fmt: skip
    for node in cluster.nodes:
        root = cluster.root(node)
        snapshot[f"{node}:state"] = (root / "var/lib/linstor-appliance").exists()
        snapshot[f"{node}:dropins"] = cluster.dropins(node, "linstor-satellite")
        snapshot[f"{node}:units"] = sorted(p.name for p in (root / "etc/systemd/system").rglob("*"))
    snapshot["vms"] = sorted(p.name for p in (cluster.state.pve / "nodes").rglob("*.conf"))
    return snapshot


@contextlib.contextmanager
def environment(cluster: SimCluster, node: str) -> Iterator[None]:
    saved = dict(os.environ)
    try:
        for key, value in cluster.env(node).items():
            if key.startswith("PVE_SIM_") or key == "PATH":
                os.environ[key] = value
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@functools.cache
def tool_archive() -> bytes:
    return nodetool.archive()


def give_package(cluster: SimCluster, node: str) -> None:
    """The part of the Debian package that matters here: the tool on the node's PATH as /usr/bin/linstor-appliance."""
    tool = cluster.root(node) / layout.PACKAGED_TOOL
    tool.parent.mkdir(parents=True, exist_ok=True)
    tool.write_bytes(tool_archive())
    tool.chmod(0o755)


def coldstart_install(cluster: SimCluster, node: str, *options: str) -> None:
    """`linstor-appliance coldstart install` as the admin runs it on `node`."""
    result = cluster.run(node, "linstor-appliance", "coldstart", "install", *options, timeout=120)
    assert result.returncode == 0, result.stderr
