"""`linstor-appliance backup`: one backup of the appliance's database, stored in every place, old ones pruned."""

from __future__ import annotations

import json
from dataclasses import dataclass

from builder import log
from builder.backup import export, store
from builder.backup.options import Mode, Options
from builder.backup.store import Place, Store
from builder.deploy import controller
from builder.deploy.controller import Directory, Endpoint
from builder.deploy.pve import Pve
from builder.deploy.remote import Node, Transport
from builder.errors import ApplianceError, die
from builder.guestagent import GuestAgent

DEPLOY_MANIFEST = "/etc/linstor-appliance/deploy.json"


@dataclass
class Cluster:
    """This node, the online nodes (this one first) and the adapters, as a backup or restore needs them."""

    transport: Transport
    pve: Pve
    local: Node
    nodes: list[Node]


def cluster(transport: Transport) -> Cluster:
    pve = Pve(transport, Node("localhost", "localhost", local=True))
    status = pve.cluster_status()
    local = Node(status.local.name, status.local.ip, local=True)
    pve.local = local
    others = [Node(n.name, n.ip) for n in status.nodes if not n.local and n.online]
    pve.remember([local, *others])
    return Cluster(transport, pve, local, [local, *others])


def places(options: Options, where: Cluster) -> list[Place]:
    if options.storage:
        return [store.storage_place(options.root, where.local, options.storage, options.vmid)]
    return store.node_places(where.nodes, options.vmid)


def appliance_endpoint(agent: GuestAgent) -> Endpoint:
    """Where the VM's controller answers, from the files the deploy put into the VM."""
    text = agent.read_text(DEPLOY_MANIFEST)
    try:
        address = str(json.loads(text or "")["address"]).split("/")[0]
    except (json.JSONDecodeError, KeyError, TypeError):
        die(f"VM {agent.vmid} has no readable {DEPLOY_MANIFEST}", hint="is it a VM made by linstor-appliance deploy?")
    _, port, _ = controller.http_settings(agent.read_text("/etc/linstor/linstor.toml") or "")
    return Endpoint(address, port)


def run(options: Options, directory: Directory | None = None) -> int:
    directory = directory or Directory()
    where = cluster(Transport(options.root, options.ssh_options))
    targets = places(options, where)
    keeper = Store(where.transport)
    if options.mode is Mode.list:
        return show(keeper, targets[0])
    vmid = options.vmid
    vm = where.pve.vm(vmid)
    if vm is None:
        die(f"VM {vmid} does not exist in this cluster", hint="give the VMID of the controller VM")
    if vm.get("status") != "running":
        if options.mode is Mode.timer:
            log.info(f"VM {vmid} is not running: no backup")
            return 0
        die(f"VM {vmid} is not running, so its controller cannot export the database",
            hint=f"start it (ha-manager set vm:{vmid} --state started), or restore it: linstor-appliance restore")
    owner = str(vm.get("node"))
    if options.mode is Mode.timer and owner != where.local.name:
        # Every node has the timer; only the one running the VM acts, so there is one backup per run.
        log.info(f"VM {vmid} runs on {owner}: the backup is taken there")
        return 0
    agent = GuestAgent(where.transport, where.pve.node(owner), vmid)
    with log.step(f"Backing up the database of VM {vmid}"):
        made = export.take(agent, directory, appliance_endpoint(agent))
        content = export.content_hash(made.extension, made.data)
        if options.mode is Mode.timer and unchanged(keeper, targets[0], content, options.max_age):
            return 0
        name = store.file_name(made.data, made.extension)
        stored = save(keeper, targets, name, made.data, options.keep)
    print(f"backup {name} ({made.method}, {len(made.data)} bytes) stored in {', '.join(stored)}", flush=True)
    return 0


def unchanged(keeper: Store, place: Place, content: str, max_age_hours: int) -> bool:
    names = keeper.names(place)
    if not names:
        return False
    newest = names[-1]
    if store.age_seconds(newest) >= max_age_hours * 3600:
        return False
    try:
        previous = export.content_hash(store.extension_of(newest), keeper.read(place, newest))
    except ApplianceError as error:
        log.warn(f"the newest backup cannot be compared ({error.message}); taking a new one")
        return False
    if previous != content:
        return False
    log.info(f"the database has not changed since {newest}: no new backup")
    return True


def save(keeper: Store, targets: list[Place], name: str, data: bytes, keep: int) -> list[str]:
    stored: list[str] = []
    failed: list[str] = []
    for place in targets:
        try:
            keeper.write(place, name, data)
            # Read back: what is kept must be what was exported.
            keeper.read(place, name)
        except ApplianceError as error:
            log.warn(f"could not store the backup in {place}: {error.message}")
            failed.append(str(place))
            continue
        stored.append(str(place))
        for old in keeper.prune(place, keep):
            log.debug(f"removed {place}/{old} (keeping {keep})")
    if not stored:
        die(f"the backup could not be stored anywhere ({', '.join(failed)})", hint="see the warnings above")
    return stored


def show(keeper: Store, place: Place) -> int:
    names = keeper.names(place)
    if not names:
        print(f"no backups in {place}", flush=True)
        return 0
    for name in names:
        print(f"{place.folder}/{name}", flush=True)
    return 0
