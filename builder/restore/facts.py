"""The deploy's Facts for a restore, found from the cluster as it is now and the deploy's journal.

The deploy's preflight insists on a running controller on this node; a restore starts where none runs,
so it asks the same questions (nodes over SSH, storage entries, plugin, image) through the preflight's
checks and takes the controller's settings from this node's linstor.toml, which the deploy left in place.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from builder.deploy import controller, inject
from builder.deploy.context import Facts
from builder.deploy.controller import Directory, Endpoint
from builder.deploy.options import Options as DeployOptions
from builder.deploy.preflight import DEFAULT_RESOURCE_GROUP, H2_URL, Preflight
from builder.deploy.pve import Pve
from builder.deploy.remote import Node, Transport
from builder.deploy.steps.inject import IMAGE_MANIFEST
from builder.deploy.versions import release
from builder.errors import ApplianceError, die


def gather(o: DeployOptions, pve: Pve, transport: Transport, directory: Directory, vm_disk: bool) -> Facts:
    check = Preflight(o, pve, transport, directory, None)
    status = pve.cluster_status()
    if not status.quorate:
        die("the Proxmox VE cluster is not quorate", hint="bring enough nodes online ('pvecm status')")
    local = Node(status.local.name, status.local.ip, local=True)
    pve.local = local
    nodes = [local] + [Node(n.name, n.ip) for n in status.nodes if not n.local and n.online]
    pve.remember(nodes)
    entry, drbd_entries = check._storage()  # noqa: SLF001 - the deploy's own check, shared on purpose
    plugin = check._plugin()  # noqa: SLF001
    node_facts = check._nodes(nodes)  # noqa: SLF001
    image = check._image() if o.image is not None else None  # noqa: SLF001
    if check.found.problems:
        die(str(check.found.problems[0]))
    assert entry is not None and plugin is not None
    versions = {facts.satellite_version for facts in node_facts if facts.satellite_version}
    if len(versions) != 1:
        die(f"the satellites run different LINSTOR versions ({', '.join(sorted(versions)) or 'none'})",
            hint="upgrade them together first")
    version = versions.pop()
    toml_path = o.host_path("/etc/linstor/linstor.toml")
    if not toml_path.is_file():
        die("/etc/linstor/linstor.toml does not exist on this node",
            hint="restore on a node with linstor-controller installed (the node the deploy ran on has it)")
    toml = toml_path.read_text()
    _, http_port, https_port = controller.http_settings(toml)
    url = str(tomllib.loads(toml).get("db", {}).get("connection_url", "jdbc:h2:/var/lib/linstor/linstordb"))
    match = H2_URL.match(url)
    if not match:
        die(f"this node's linstor.toml names no H2 database ({url})", hint="the appliance carries H2 files only")
    manifest: dict[str, Any]
    if image is not None:
        image_version = str(image.manifest.get("linstor_controller", {}).get("version", ""))
        if image_version and release(image_version) != version:
            die(f"the image has LINSTOR {image_version}, the satellites run {version}",
                hint="use an image built with --linstor-version matching the satellites")
        manifest, image_size, disk_size, raw_sha = image.manifest, image.size, image.disk_size, image.raw_sha256
    else:
        manifest = current_manifest(o) if vm_disk else {}
        image_size, disk_size, raw_sha = 0, 0, None
    assert o.address is not None
    return Facts(
        local=local, nodes=tuple(node_facts), plugin=plugin, linstor_version=version, storage=entry,
        drbd_entries=tuple(drbd_entries), resource_group=entry.options.get("resourcegroup", DEFAULT_RESOURCE_GROUP),
        host_endpoint=controller.host_endpoint(o.root), appliance_endpoint=Endpoint(str(o.address.ip), http_port),
        firewall_ports=tuple(sorted({22, http_port, https_port or 3371})), host_toml=toml, db_base=match.group("path"),
        manifest=manifest, image_size=image_size, disk_size=disk_size, raw_sha256=raw_sha,
    )  # fmt: skip


def current_manifest(o: DeployOptions) -> dict[str, Any]:
    """The image manifest on the VM disk; without an image to write again the disk must hold an appliance."""
    device = o.host_path(o.device)
    try:
        found = inject.read(device, [IMAGE_MANIFEST]) if device.exists() else {}
    except ApplianceError:
        found = {}
    data = found.get(IMAGE_MANIFEST)
    if not data:
        die(f"the VM disk {o.device} holds no appliance to restore into",
            hint="give the image to write onto it again with --image linstor-controller.raw.zst")
    return dict(json.loads(data))


def deploy_options(recorded: dict[str, Any], root: Path, image: Path | None, wait_timeout: float,
                   ssh_options: tuple[str, ...]) -> DeployOptions:  # fmt: skip
    """The deploy's recorded options, with the image of this restore (or none) and its waiting and SSH."""
    options = DeployOptions.from_json(recorded, root)
    if image is not None:
        options = replace(options, image=image, manifest=image.parent / "manifest.json",
                          sums=image.parent / "SHA256SUMS")  # fmt: skip
    else:
        options = replace(options, image=None)
    return replace(options, wait_timeout=wait_timeout, ssh_options=ssh_options)


