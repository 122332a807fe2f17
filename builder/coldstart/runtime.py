"""What runs on the nodes: the gate of pve-guests, the guests' hook, the retry timer and the probe.

Why it cannot deadlock: the controller VM carries no hook and is started by HA, never by
pve-guests; the gate only delays pve-guests; a hook waits only for HA guests and only while it
holds one of max_workers - 1 lock slots, so one LRM worker slot on every node is always free of
waiting hooks and the controller VM's start can be queued behind fast refusals only.

Each action is a process: a generator that yields the seconds it sleeps and returns its exit code.
It sees the node only through `Node`. On a node, `localnode.LocalNode` answers from the node's files
and commands, and `drive()` sleeps for real; the cold-start tests run the very same generators on a
simulated clock. Keep the imports light: the hook runs inside every guest start.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from builder.coldstart.pveconf import Guest, Storage

T = TypeVar("T")
Process = Generator[float, None, T]

# `ha-manager status` states in which HA is still working on a start: the retry leaves those to HA.
HA_BUSY = ("started", "starting", "queued", "relocate", "recovery", "request_start")
# The hook polls every second, the gate and the wait for HA to leave `error` every two.
HOOK_POLL = 1.0
GATE_POLL = 2.0
CLEAR_POLL = 2.0
# pm-<8 hex>_<vmid> is a volume of DRBD resource pm-<8 hex> (plugin 8.x); older names are the resource.
VOLUME_RESOURCE = re.compile(r"^(pm-[0-9a-f]{8})_\d+$")


@dataclass(frozen=True)
class Config:
    """/etc/linstor-coldstart.conf, as `coldstart install` writes it (KEY=VALUE lines)."""

    controller_vmid: int | None = None
    local_fallback: bool = False
    boot_wait: int = 300
    hook_wait: int = 120
    probe_timeout: int = 2
    clear_wait: int = 60

    @classmethod
    def parse(cls, text: str) -> Config:
        values = dict(re.findall(r"^([A-Z_]+)=(\S*)\s*$", text, flags=re.M))
        defaults = cls()

        def number(key: str, default: int) -> int:
            value = values.get(key, "")
            return int(value) if value.isdigit() else default

        vmid = values.get("CONTROLLER_VMID", "")
        return cls(controller_vmid=int(vmid) if vmid.isdigit() else None,
                   local_fallback=values.get("LOCAL_FALLBACK") == "yes",
                   boot_wait=number("BOOT_WAIT", defaults.boot_wait),
                   hook_wait=number("HOOK_WAIT", defaults.hook_wait),
                   probe_timeout=number("PROBE_TIMEOUT", defaults.probe_timeout),
                   clear_wait=number("CLEAR_WAIT", defaults.clear_wait))  # fmt: skip

    @classmethod
    def read(cls, root: Path) -> Config:
        try:
            return cls.parse((root / "etc/linstor-coldstart.conf").read_text())
        except FileNotFoundError:
            return cls()


class Node(Protocol):
    """What the actions see of the node they run on."""

    name: str
    config: Config

    def now(self) -> float: ...

    def storages(self) -> dict[str, Storage]:
        """The enabled drbd storages."""

    def guest(self, vmid: int) -> Guest | None:
        """The guest's configuration, on whichever node it is (Guest.node)."""

    def guests_here(self) -> list[Guest]: ...

    def ha_managed(self, vmid: int) -> bool: ...

    def max_workers(self) -> int: ...

    def device_up(self, resource: str) -> bool:
        """/dev/drbd/by-res/<resource>/0 exists here."""

    def probe(self, storage: Storage, address: str) -> Process[bool]:
        """GET /health of one controller address of the storage, bounded by config.probe_timeout."""

    def take_slot(self, slot: int) -> bool:
        """flock -n on slot N; held until release_slot() or the end of the process."""

    def release_slot(self, slot: int) -> None: ...

    def ha_state(self, vmid: int) -> str: ...

    def ha_set(self, vmid: int, state: str) -> bool: ...

    def running(self, vmid: int) -> bool: ...

    def qm_start(self, vmid: int) -> Process[bool]: ...

    def refused(self) -> list[int]:
        """The guests whose start the hook refused on this node since it booted."""

    def add_refusal(self, vmid: int, stores: list[str]) -> None: ...

    def drop_refusal(self, vmid: int) -> None: ...

    def clearing(self) -> list[int]:
        """HA guests the retry asked to leave `error` (survives a reboot)."""

    def add_clearing(self, vmid: int) -> None: ...

    def drop_clearing(self, vmid: int) -> None: ...

    def gate_expired(self) -> None: ...

    def log(self, text: str) -> None: ...


def done(value: T) -> Process[T]:
    """A process that takes no time of its own (the work already happened)."""
    return value
    yield 0.0  # makes this a generator


def drive(process: Process[T]) -> T:
    """Run a process on the real clock."""
    while True:
        try:
            delay = next(process)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        time.sleep(max(delay, 0.0))


# --- what a guest needs ---------------------------------------------------------------------------
def drbd_stores(node: Node, guest: Guest) -> list[str]:
    """The enabled drbd storages the guest's disks are on."""
    return sorted(guest.storage_ids() & set(node.storages()))


def devices_up_here(node: Node, guest: Guest) -> bool:
    """linstor-proxmox 8.3.0 and later start a guest without a controller when its DRBD devices are
    already up on the node (local-activation fallback): such a guest needs no controller to wait for."""
    if not node.config.local_fallback:
        return False
    drbd = node.storages()
    found = False
    for volume in guest.volumes():
        store, _, name = volume.partition(":")
        if volume.startswith("/") or not name or store not in drbd:
            continue
        match = VOLUME_RESOURCE.match(name)
        if not node.device_up(match.group(1) if match else name):
            return False
        found = True
    return found


def answers(node: Node, stores: list[str]) -> Process[bool]:
    """A controller of every one of the storages answers /health (addresses tried in list order)."""
    drbd = node.storages()
    for store in stores:
        storage = drbd.get(store)
        if storage is None:
            continue
        for address in storage.controllers:
            if (yield from node.probe(storage, address)):
                break
        else:
            return False
    return True


def describe(node: Node, stores: list[str]) -> str:
    drbd = node.storages()
    return " ".join(f"{s} ({','.join(drbd[s].controllers)})" for s in stores if s in drbd)


# --- the actions ------------------------------------------------------------------------------------
def hook(node: Node, vmid: int, phase: str) -> Process[int]:
    """The hookscript: 0 lets the start go on, 1 refuses it (PVE treats that as a failed start)."""
    config = node.config
    if phase != "pre-start" or vmid == config.controller_vmid:
        return 0
    guest = node.guest(vmid)
    # The target of a live migration runs this with the config still on the source node: nothing to
    # gate there, the storage plugin decides as it always does.
    if guest is None or guest.node != node.name:
        return 0
    stores = drbd_stores(node, guest)
    if not stores or devices_up_here(node, guest):
        return 0
    if (yield from answers(node, stores)):
        return 0
    ha = node.ha_managed(vmid)
    # Only HA guests wait here, and never in the last free LRM worker slot: the controller VM's
    # start may be queued on this node. Others are retried by pve-guests' gate or the retry timer.
    slot = take_slot(node) if config.hook_wait > 0 and ha else None
    if slot is not None:
        try:
            deadline = node.now() + config.hook_wait
            while node.now() < deadline:
                yield HOOK_POLL
                if (yield from answers(node, stores)):
                    return 0
        finally:
            node.release_slot(slot)
    node.add_refusal(vmid, stores)
    if ha:
        later = "HA retries it, and linstor-coldstart-retry clears its error once one answers"
    elif guest.onboot:
        later = "linstor-coldstart-retry starts it once one answers"
    else:
        later = "start it again once one answers"
    node.log(f"no LINSTOR controller answers for {describe(node, stores)}; not starting VM {vmid} now: {later}")
    return 1


def take_slot(node: Node) -> int | None:
    """One of max_workers - 1 slots, or None when they are all held."""
    for slot in range(1, node.max_workers()):
        if node.take_slot(slot):
            return slot
    return None


def boot_stores(node: Node) -> list[str]:
    """The drbd storages of the on-boot guests here that pve-guests will start and that need a controller."""
    found: set[str] = set()
    for guest in node.guests_here():
        if guest.vmid == node.config.controller_vmid or not guest.onboot or node.ha_managed(guest.vmid):
            continue
        if devices_up_here(node, guest):
            continue
        found.update(drbd_stores(node, guest))
    return sorted(found)


def gate(node: Node) -> Process[int]:
    """ExecStartPre of pve-guests: wait, at most boot_wait seconds, until the on-boot guests' controllers answer."""
    stores = boot_stores(node)
    if not stores:
        return 0
    vmid = node.config.controller_vmid
    controller = node.guest(vmid) if vmid is not None else None
    if controller is not None and controller.node == node.name and not node.ha_managed(controller.vmid):
        # pve-guests itself starts the controller VM here: waiting for it would only delay it.
        node.log(f"the controller VM {vmid} is not HA-managed and starts with the guests here; not waiting")
        return 0
    deadline = node.now() + node.config.boot_wait
    while not (yield from answers(node, stores)):
        if node.now() >= deadline:
            node.gate_expired()
            node.log(f"no answer from {describe(node, stores)} after {node.config.boot_wait}s; starting guests "
                     "now, the retry timer starts the refused ones later")  # fmt: skip
            return 0
        yield GATE_POLL
    return 0


def retry(node: Node) -> Process[int]:
    """The retry timer: once a controller answers, start what the hook refused here (clearing HA's error)."""
    # A clearing interrupted before `started` was requested again must not leave a guest disabled.
    yield from finish_clearing(node)
    for vmid in node.refused():
        guest = node.guest(vmid)
        if guest is None or guest.node != node.name:
            # HA moved it: the node it is on now refused it too (and retries it), or it is gone.
            node.drop_refusal(vmid)
            continue
        if not (yield from answers(node, drbd_stores(node, guest))):
            continue
        if node.running(vmid):
            node.drop_refusal(vmid)
        elif node.ha_managed(vmid):
            state = node.ha_state(vmid)
            if state == "error":
                node.add_clearing(vmid)
                if not node.ha_set(vmid, "disabled"):
                    node.drop_clearing(vmid)
            elif state not in HA_BUSY:
                node.drop_refusal(vmid)  # stopped or disabled by someone: not ours to start
        else:
            node.drop_refusal(vmid)
            if guest.onboot:
                node.log(f"starting VM {vmid}, refused earlier while no controller answered")
                if not (yield from node.qm_start(vmid)):
                    node.log(f"VM {vmid} did not start")
    yield from finish_clearing(node)
    return 0


def finish_clearing(node: Node) -> Process[None]:
    """HA leaves `error` only through `disabled`, and only once its CRM saw `disabled`: then ask for `started`."""
    deadline = node.now() + node.config.clear_wait
    for vmid in node.clearing():
        while node.ha_state(vmid) == "error" and node.now() < deadline:
            yield CLEAR_POLL
        if node.ha_state(vmid) == "error":
            continue
        if node.ha_set(vmid, "started"):
            node.log(f"VM {vmid}: HA error cleared, start requested")
            node.drop_clearing(vmid)
            node.drop_refusal(vmid)


def probe(node: Node, stores: list[str]) -> Process[int]:
    """0 when a controller of every drbd storage (or of the ones given) answers."""
    ok = yield from answers(node, stores or sorted(node.storages()))
    return 0 if ok else 1
