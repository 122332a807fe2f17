"""What the simulated cluster must look like after a deploy, and after a rollback: the steps' promises."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import linstor
import yaml
from sim.cluster import SimCluster

from builder.deploy import inject
from builder.deploy.controller import http_settings
from builder.deploy.versions import needs_keep_res
from builder.manifest import read_sums
from deploy.fakeimage import FakeImage
from deploy.harness import host_files

DROPIN = "50-linstor-appliance-{vmid}.conf"
STORAGE_CFG = "etc/pve/storage.cfg"


def resource_name(strategy: str, vmid: int = 100) -> str:
    return f"vm-{vmid}-disk-1" if strategy == "controllervm" else f"linstor-appliance-{vmid}"


def journal(cluster: SimCluster, vmid: int = 100, node: str = "pve1") -> dict[str, Any]:
    return dict(json.loads((cluster.root(node) / f"var/lib/linstor-appliance/deploy-{vmid}.json").read_text()))


def backup_folder(cluster: SimCluster, vmid: int = 100) -> Path:
    return Path(journal(cluster, vmid)["steps"]["handover"]["record"]["backup"])


def assert_backup_matches_host(cluster: SimCluster, vmid: int = 100) -> None:
    """The backup's controller files are the host's, byte for byte, and its manifest checks out."""
    folder = backup_folder(cluster, vmid)
    # Besides them it keeps storage.cfg as it was before the deploy (test_vm_database checks that copy).
    sums = {path: digest for path, digest in read_sums(folder / "SHA256SUMS").items() if path != STORAGE_CFG}
    files = host_files(cluster)
    assert set(sums) == set(files), (sorted(sums), sorted(files))
    for relative, data in files.items():
        assert (folder / relative).read_bytes() == data, relative


def assert_deployed(cluster: SimCluster, image: FakeImage, *, strategy: str = "device-path", redundancy: int,
                    vmid: int = 100, ip: str = "10.0.0.100", name: str = "linstor-controller",
                    allow_from: tuple[str, ...] = ()) -> None:  # fmt: skip
    res = resource_name(strategy, vmid)
    device = f"/dev/drbd/by-res/{res}/0"
    version = image.linstor_version
    scenario = cluster.scenario

    # 9: the controller in the VM answers for the VM's address with the cluster's version and nodes,
    # and every satellite follows it.
    with linstor.Linstor(cluster.linstor_url(ip)) as lin:
        assert lin.controller_version().version == version
        nodes = {n.name: n for n in lin.node_list_raise().nodes}
        rd = lin.resource_dfn_list_raise(filter_by_resource_definitions=[res]).resource_definitions[0]
        resources = lin.resource_list_raise(filter_by_resources=[res]).resources
    satellites = set(cluster.nodes)
    assert set(nodes) == satellites | {name}
    for node in satellites:
        assert nodes[node].connection_status == "ONLINE", node
        assert cluster.satellites()[node]["controller"] == f"{ip}:3370"
    # 4: registered as a Controller node.
    assert nodes[name].type.upper() == "CONTROLLER"
    assert nodes[name].net_interfaces[0].address == ip

    # 1: replicated `redundancy` times, diskless elsewhere, with the VM-disk quorum policy.
    assert rd.properties["DrbdOptions/Resource/on-no-quorum"] == "suspend-io"
    assert rd.properties["Aux/linstor-appliance/vmid"] == str(vmid)
    diskful = [r.node_name for r in resources if "DISKLESS" not in r.flags]
    assert len(diskful) == redundancy, diskful
    assert {r.node_name for r in resources} == satellites
    for node in cluster.nodes:
        assert res in cluster.drbd_devices(node), node

    # 2 + 8: the VM as the seed describes it, protected, started by HA.
    conf = cluster.vm_config(vmid)
    assert conf["name"] == name and conf["memory"] == "1024" and conf["ostype"] == "l26"
    assert conf["serial0"] == "socket" and conf["scsihw"] == "virtio-scsi-pci" and conf["boot"] == "order=scsi0"
    assert conf["net0"].startswith("virtio=BC:24:11:") and conf["net0"].endswith(",bridge=vmbr0")
    assert conf["agent"] == "enabled=1" and conf["protection"] == "1" and "linstor-appliance" in conf["tags"]
    if strategy == "controllervm":
        assert conf["scsi0"] == f"drbdstorage:{res}"
    else:
        assert conf["scsi0"] == f"{device},shared=1"
    assert cluster.ha_resources()[f"vm:{vmid}"]["state"] == "started"
    running_on = cluster.vm_running_on(vmid)
    assert running_on in cluster.nodes
    assert cluster.drbd_primary(res) == [running_on]

    # 3 + 7: the image's partition table and the injected files in the VM disk.
    disk = cluster.drbd_device(running_on, res)
    files = inject.read(disk, ["/var/lib/linstor/linstordb.mv.db", "/etc/linstor/linstor.toml",
                               "/etc/netplan/config.yaml", "/etc/nftables.conf", "/etc/linstor-appliance/deploy.json",
                               "/etc/linstor-appliance/manifest.json", "/etc/hostname",
                               "/usr/lib/linstor-appliance/deploy-check"])  # fmt: skip
    backup = backup_folder(cluster, vmid)
    assert files["/var/lib/linstor/linstordb.mv.db"] == (backup / "var/lib/linstor/linstordb.mv.db").read_bytes()
    assert files["/usr/lib/linstor-appliance/deploy-check"] is not None, "the image was not written"
    lan = yaml.safe_load(files["/etc/netplan/config.yaml"] or b"")["network"]["ethernets"]["lan"]
    assert lan["addresses"] == [f"{ip}/24"] and lan["routes"] == [{"to": "default", "via": "10.0.0.254"}]
    firewall = (files["/etc/nftables.conf"] or b"").decode()
    # Exactly the nodes and the --allow-from networks may reach the served ports (the ruleset may write
    # neighbouring addresses as one network).
    node_ips = {ipaddress.ip_address(cluster.ip(node)) for node in cluster.nodes}
    extra = [ipaddress.ip_network(n, strict=False) for n in allow_from]
    allowed = allowed_networks(firewall)
    assert all(any(ip in net for net in allowed) for ip in node_ips), (node_ips, allowed)
    assert all(any(net.subnet_of(e) for e in extra if e.version == net.version) or set(net) <= node_ips
               for net in allowed), (node_ips, allowed)  # fmt: skip
    _, port, _ = http_settings((cluster.root(scenario.controller_node) / "etc/linstor/linstor.toml").read_text())
    assert f"tcp dport {{ {', '.join(map(str, sorted({22, 3371, port})))} }}" in firewall
    deployed = json.loads(files["/etc/linstor-appliance/deploy.json"] or b"{}")
    assert deployed["linstor_version"] == version and deployed["vmid"] == vmid
    assert files["/etc/hostname"] == f"{name}\n".encode()

    # 5: the disk comes up at boot on every node without a controller; a satellite drop-in before 1.33.
    for node in cluster.nodes:
        assert cluster.unit_enabled(node, f"drbd@{res}.target") == "enabled", node
        dropins = cluster.dropins(node, "linstor-satellite")
        if needs_keep_res(version):
            text = dropins[DROPIN.format(vmid=vmid)]
            assert f'Environment="LS_KEEP_RES=^{res}([.]res)?$"' in text and f"After=drbd@{res}.target" in text
        else:
            assert dropins == {}, node

    # 6: the host's controller is stopped and disabled; its files are backed up, and unchanged.
    host = scenario.controller_node
    assert cluster.unit_active(host, "linstor-controller") == "inactive"
    assert cluster.unit_enabled(host, "linstor-controller") == "disabled"
    assert_backup_matches_host(cluster, vmid)

    # 10: every drbd storage entry points at the VM.
    for storeid, cfg in cluster.storage_cfg().items():
        if cfg["type"] == "drbd":
            assert cfg["controller"] == ip, storeid
            if strategy == "controllervm":
                assert str(cfg["controllervm"]) == str(vmid)
    assert cluster.storage_cfg_warnings() == []

    data = journal(cluster, vmid)
    assert data["status"] == "completed"
    assert all(step["state"] == "done" for step in data["steps"].values())


def assert_rolled_back(cluster: SimCluster, before: dict[str, bytes], storage_cfg: dict[str, dict[str, Any]],
                       vmid: int = 100, strategy: str = "device-path") -> None:  # fmt: skip
    """The host's controller runs again on byte-identical files, and nothing of the deploy runs."""
    host = cluster.scenario.controller_node
    assert cluster.unit_active(host, "linstor-controller") == "active"
    assert cluster.unit_enabled(host, "linstor-controller") == "enabled"
    assert host_files(cluster) == before
    with linstor.Linstor(cluster.linstor_url()) as lin:
        lin.node_list_raise()
    assert cluster.vm_running_on(vmid) is None
    assert f"vm:{vmid}" not in cluster.ha_resources()
    parsed = cluster.storage_cfg()
    for storeid, cfg in storage_cfg.items():
        if cfg["type"] == "drbd":
            assert parsed[storeid].get("controller") == cfg.get("controller"), storeid
            assert parsed[storeid].get("controllervm") == cfg.get("controllervm"), storeid
    res = resource_name(strategy, vmid)
    for node in cluster.nodes:
        if cluster.state.node_online(node):
            assert cluster.unit_enabled(node, f"drbd@{res}.target") != "enabled", node
            assert DROPIN.format(vmid=vmid) not in cluster.dropins(node, "linstor-satellite"), node
    for sat in cluster.satellites().values():
        if sat["online"]:
            assert sat["controller"] == f"{cluster.ip(host)}:3370"
    assert journal(cluster, vmid)["status"] == "rolled-back"


def allowed_networks(ruleset: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The elements of the ruleset's allowed_v4 and allowed_v6 sets."""
    found = re.findall(r"set allowed_v[46] \{[^}]*?elements = \{([^}]*)\}", ruleset, re.S)
    return [ipaddress.ip_network(item.strip()) for group in found for item in group.split(",") if item.strip()]
