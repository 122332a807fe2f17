"""linstor-appliance sync: the appliance follows the Proxmox VE cluster's membership.

When nodes join or leave, four things must follow, in this order: the allowlist inside the VM (a new node
must reach the controller before it can run anything on DRBD), the deploy's boot units (step 5) on new
nodes, a replica of the controller disk on every member (diskful while fewer than --redundancy exist, else
diskless), so HA can start the VM anywhere, and then the cold-start helper where the other nodes have it
(its install wants the disk's .res file on the node).
Each part first reads what is there and changes only what differs, so a run with nothing to do changes
nothing. New nodes are noted in the deploy journal's step 5 record, so a rollback cleans them too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from builder import allowlist, log, slots
from builder.coldstart import remote
from builder.deploy import controller
from builder.deploy.context import Context, NodeFacts
from builder.deploy.controller import Directory, Endpoint
from builder.deploy.pve import ClusterNode, Pve
from builder.deploy.remote import Node, Transport
from builder.deploy.steps.units import ENABLE, dropin_path, dropin_text, unit_for
from builder.deploy.versions import needs_keep_res
from builder.deployment import Deployment, load
from builder.errors import ApplianceError, die
from builder.status.checks import COLDSTART_MARKER, http_port

# Whether drbd-utils has the per-resource drbd@.target (as the deploy's preflight asks) and if it is enabled.
UNIT_PROBE = ('printf "%s\\n" "$(systemctl show -p LoadState --value "drbd@$1.target" 2>/dev/null)"; '
              'systemctl is-enabled "drbd@$1.target" 2>/dev/null || systemctl is-enabled drbd.service 2>/dev/null '
              '|| true')  # fmt: skip
# How long a node's satellite may take to write the .res file of a replica this sync made.
RES_FILE_WAIT_S = 60


@dataclass
class Changes:
    done: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def run(root: Path, vmid: int | None, ssh_options: tuple[str, ...] = (), directory: Directory | None = None) -> int:
    deployment = load(root, vmid)
    o = deployment.options
    if deployment.journal.status != "completed":
        die(f"the deploy of VM {o.vmid} is not complete ({deployment.journal.status})",
            hint=f"finish it first: linstor-appliance deploy --vmid {o.vmid} --resume")
    transport = Transport(root, (*o.ssh_options, *ssh_options))
    pve = Pve(transport, Node("localhost", "localhost", local=True))
    cluster = pve.cluster_status()
    if not cluster.quorate:
        die("this node's cluster has no quorum", hint="run sync on a quorate node")
    members = [m for m in cluster.nodes]
    changes = Changes()
    with log.step("Allowlist in the VM"):
        sync_allowlist(deployment, pve, members, changes)
    ctx = Context(o, pve, transport, directory or Directory(), deployment.journal)
    online = [m for m in members if m.online]
    changes.problems += [f"{m.name} is offline; run sync again once it is up" for m in members if not m.online]
    with log.step("Boot units on every node"):
        for member in online:
            sync_units(ctx, member, changes)
    with log.step("Replicas of the controller disk"):
        sync_replicas(ctx, members, changes)
    # After the replicas: the helper's install refuses a node that has no .res file of the disk yet.
    with log.step("Cold-start helper where the other nodes have it"):
        sync_coldstart(ctx, online, changes)
    for line in changes.done or ["nothing to change"]:
        print(f"  - {line}")
    for line in changes.problems:
        print(f"  ! {line}")
    return 1 if changes.problems else 0


def sync_allowlist(deployment: Deployment, pve: Pve, members: list[ClusterNode], changes: Changes) -> None:
    o = deployment.options
    expected = allowlist.expected(o, [m.ip for m in members])
    current = allowlist.read(pve, o.vmid)
    if current.ok and current.out == expected:
        return
    result = allowlist.apply(pve, o.vmid, expected)
    if not result.ok:
        # The VM keeps the ruleset it has: a node it does not know stays shut out rather than the VM left open.
        changes.problems.append(f"the allowlist in VM {o.vmid} could not be replaced: {result.why()}; the old one "
                                "stays loaded")  # fmt: skip
        return
    changes.done.append(f"allowlist in VM {o.vmid}: {', '.join(m.ip for m in members)}"
                        + (f" and {', '.join(str(n) for n in o.allow_from)}" if o.allow_from else ""))


def disk_resource(ctx: Context) -> str:
    """The disk resource the VM boots from: the deploy's, or the other slot after an upgrade (builder.upgrade)."""
    return slots.booted(ctx.pve.vm_config(ctx.options.vmid)) or ctx.options.resource


def sync_units(ctx: Context, member: ClusterNode, changes: Changes) -> None:
    node = Node(member.name, member.ip, local=member.local)
    resource = disk_resource(ctx)
    probe = ctx.transport.script(node, UNIT_PROBE, resource, check=False).stdout.splitlines()
    facts = NodeFacts(node, None, bool(probe) and probe[0].strip() == "loaded")
    unit = unit_for(ctx, facts) if resource == ctx.options.resource else (
        f"drbd@{resource}.target" if facts.drbd_target else "drbd.service")
    if ctx.pve.unit_enabled(node, unit):
        return
    keep = needs_keep_res(str(ctx.j.fact("linstor_version", "")))
    record = dict(ctx.j.record("units").get("nodes", {}))
    entry = {"address": node.address, "local": node.local, "unit": unit, "was_enabled": False,
             "dropin": dropin_path(ctx.options.vmid) if keep else None}  # fmt: skip
    record[node.name] = entry
    ctx.j.note("units", nodes=record)  # before the change, so a rollback finds it
    if keep:
        ctx.transport.write_file(node, dropin_path(ctx.options.vmid), dropin_text(ctx, unit))
    ctx.transport.script(node, ENABLE, unit, "1" if keep else "")
    changes.done.append(f"{member.name}: {unit} enabled" + (", satellite keeps its .res file" if keep else ""))


def sync_coldstart(ctx: Context, online: list[ClusterNode], changes: Changes) -> None:
    """Install the helper on the online nodes without it, if any other node has it."""
    nodes = [Node(m.name, m.ip, local=m.local) for m in online]
    without = [node for node in nodes if ctx.transport.read_file(node, COLDSTART_MARKER) is None]
    if len(without) == len(nodes):
        return  # not in use on this cluster: installing it is the admin's choice (README)
    res = slots.res_file(disk_resource(ctx))
    for node in without:
        install_coldstart(ctx, node, res, changes)


def install_coldstart(ctx: Context, node: Node, res: str, changes: Changes) -> None:
    # A replica this sync just made gets its .res file from the satellite a moment later; the install refuses
    # a node without it.
    deadline = time.monotonic() + RES_FILE_WAIT_S
    while ctx.transport.read_file(node, res) is None:
        if time.monotonic() >= deadline:
            changes.problems.append(f"{node.name}: no {res} after {RES_FILE_WAIT_S} s, so the cold-start helper "
                                    "cannot be installed there yet; run sync again")  # fmt: skip
            return
        time.sleep(0.5)
    if remote.install(ctx.transport, node).ok:
        changes.done.append(f"{node.name}: cold-start helper installed")
    else:
        changes.problems.append(f"{node.name}: 'linstor-appliance coldstart install' failed; install the "
                                "linstor-appliance package there and run it")  # fmt: skip


def sync_replicas(ctx: Context, members: list[ClusterNode], changes: Changes) -> None:
    o = ctx.options
    if o.address is None:
        die("the deploy recorded no address of the VM", hint="check the deploy journal")
    endpoint = Endpoint(str(o.address.ip), http_port(o.root))
    resource = disk_resource(ctx)
    with controller.connect(ctx.directory, endpoint) as c:
        known = {n.name for n in c.nodes()}
        placements = {p.node: p for p in c.placements(resource)}
        diskful = sum(1 for p in placements.values() if not p.diskless)
        for member in members:
            if member.name in placements:
                continue
            if member.name not in known:
                changes.problems.append(f"{member.name} is no LINSTOR node yet: linstor node create {member.name} "
                                        f"{member.ip}, then run sync again")  # fmt: skip
                continue
            make_diskful = diskful < o.redundancy
            try:
                c.make_available(member.name, resource, diskful=make_diskful)
            except ApplianceError as error:
                changes.problems.append(f"{member.name}: {error.message}")
                continue
            diskful += make_diskful
            changes.done.append(f"{member.name}: {'diskful' if make_diskful else 'diskless'} replica of {resource}")
        gone = sorted(set(placements) - {m.name for m in members})
        for name in gone:
            changes.problems.append(f"{name} left the cluster but still holds {resource}; once it is gone for good: "
                                    f"linstor resource delete {name} {resource}")  # fmt: skip
