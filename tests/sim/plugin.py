"""Storage plugins as the fakes need them: linstor-proxmox (`drbd`) in detail, the stock types trivially.

The drbd behaviour follows LINSTORPlugin.pm / LINBIT/Linstor.pm of the simulated plugin version:
controller discovery (GET /health on each `controller` entry in order), naming (`vm-<id>-disk-<n>`
up to 7.x, `pm-<8 hex>` with `Aux/pm/vmid` from 8.0), allocation through spawn / make-available /
autoplace, 5.2.2's `controllervm` special case and 8.3.0's local-activation fallback. Messages of
Perl `die`s without a trailing newline carry Perl's " at <file> line <n>." as the real ones do.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from . import drbd, satellite
from .network import Rest, probe
from .state import SimState

PLUGIN_PM = "/usr/share/perl5/PVE/Storage/Custom/LINSTORPlugin.pm"
LINSTOR_PM = "/usr/share/perl5/LINBIT/Linstor.pm"
# Line numbers of the relevant `die`s in LINSTORPlugin.pm at v5.2.2 / v7.0.1 / v8.3.0.
DIE_LINES = {
    5: {"connect": 228, "format": 331, "alloc": 360},
    7: {"connect": 214, "format": 294, "alloc": 324},
    8: {"connect": 315, "format": 490, "alloc": 524, "parse": 446},
}

VALID_UUID = re.compile(r"^pm-[\da-f]{8}_\d+\Z")
VALID_LEGACY = re.compile(r"^vm-\d+-disk-\d+\Z")
VALID_OTHER = [re.compile(p) for p in (r"^vm-\d+-cloudinit\Z", r"^vm-\d+-state-.+\Z", r"^vm-\d+-pvc-.+\Z",
                                        r"^vm-\d+-fleece-.+\Z")]  # fmt: skip


class StorageError(Exception):
    pass


def _major(version: str) -> int:
    major = int(version.split(".")[0])
    return 8 if major >= 8 else 7 if major >= 6 else 5


def perl_die(message: str, version: str, where: str) -> str:
    return f"{message} at {PLUGIN_PM} line {DIE_LINES[_major(version)][where]}."


def confess(message: str, version: str, where: str) -> str:
    """`confess $@` adds a stack trace below the message (abridged to its first frame)."""
    del version  # the frame text is the same for every simulated release
    return (
        f"{message}\n\tPVE::Storage::Custom::LINSTORPlugin::{where}(\"PVE::Storage::Custom::LINSTORPlugin\", ...) "
        f"called at /usr/share/perl5/PVE/Storage.pm line 1053"
    )


@dataclass
class DrbdStorage:
    state: SimState
    node: str
    storeid: str
    scfg: dict[str, Any]
    version: str

    # --- configuration helpers (get_* in LINSTORPlugin.pm) ----------------------------------------
    @property
    def major(self) -> int:
        return _major(self.version)

    def controllers(self) -> list[str]:
        return [c.strip() for c in str(self.scfg.get("controller") or "localhost").split(",")]

    def resource_group(self) -> str:
        return str(self.scfg.get("resourcegroup") or "drbdgrp")

    def prefer_local(self) -> bool:
        default = "no" if self.major == 5 else "yes"
        return str(self.scfg.get("preferlocal") or default).lower() == "yes"

    def allow_two_primaries(self) -> bool:
        return str(self.scfg.get("allowtwoprimaries") or "yes").lower() == "yes"

    def exact_size(self) -> bool:
        return str(self.scfg.get("exactsize") or "no").lower() == "yes"

    def node_name(self) -> str:
        domain = self.scfg.get("searchdomain") if self.major >= 8 else None
        return f"{self.node}.{domain}" if domain else self.node

    def controller_vm(self) -> str:
        return str(self.scfg.get("controllervm") or "") if self.major == 5 else ""

    def ignored(self, volname: str) -> bool:
        """5.2.2 ignore_volume: the controller VM's `vm-<id>-*` volumes bypass LINSTOR."""
        vm = self.controller_vm()
        return bool(vm) and volname.startswith(f"vm-{vm}-")

    # --- controller ---------------------------------------------------------------------------------
    def connect(self) -> Rest:
        for host in self.controllers():
            client = probe(self.state, host, self.node)
            if client is not None:
                return client
        raise StorageError(perl_die("could not connect to any LINSTOR controller", self.version, "connect"))

    def reachable(self) -> Rest | None:
        try:
            return self.connect()
        except StorageError:
            return None

    @staticmethod
    def _die_content(message: str, status: int, body: Any) -> str:
        return f"API Return-Code: {status}. Message: {message}, because:\n{json.dumps(body)}"

    def resources(self, client: Rest) -> dict[str, list[dict[str, Any]]]:
        status, body = client.call("GET", "/v1/view/resources")
        if status != 200:
            raise StorageError(self._die_content("Could not get resource information", status, body))
        found: dict[str, list[dict[str, Any]]] = {}
        for rsc in body or []:
            found.setdefault(str(rsc["name"]), []).append(rsc)
        return found

    def definitions(self, client: Rest) -> dict[str, dict[str, Any]]:
        status, body = client.call("GET", "/v1/resource-definitions?with_volume_definitions=true")
        if status != 200:
            raise StorageError(self._die_content("Could not get resource information", status, body))
        return {str(rd["name"]): rd for rd in body or []}

    # --- names --------------------------------------------------------------------------------------
    def linstor_name(self, volname: str) -> str:
        return volname[: 3 + 8] if VALID_UUID.match(volname) else volname

    def parse_volname(self, volname: str) -> int:
        match = re.match(r"^(vm-(\d+)-[a-z][a-z0-9\-_.]*[a-z0-9]+)$", volname)
        if match:
            return int(match.group(2))
        if self.major >= 8:
            match = re.match(r"^(pm-[\da-f]{8}_(\d+))$", volname)
            if match:
                return int(match.group(2))
            raise StorageError(f"unable to parse PVE volume name '{volname}'")
        # Up to 7.x the plugin kept LVMPlugin's wording.
        raise StorageError(f"unable to parse lvm volume name '{volname}'")

    def _new_pm_name(self, taken: set[str]) -> str:
        with self.state.locked():
            counter = int(self.state.read("names.json", {}).get("pm", 0))
            self.state.write("names.json", {**self.state.read("names.json", {}), "pm": counter + 1})
        seed = self.state.scenario_json().get("seed", 0)
        rng = random.Random(f"{seed}:pm:{counter}")
        while True:
            name = f"pm-{rng.getrandbits(32):08x}"
            if name not in taken:
                return name

    # --- operations ---------------------------------------------------------------------------------
    def alloc(self, vmid: int, fmt: str, name: str | None, size_kib: int) -> str:
        """alloc_image; returns the PVE volume name."""
        if self.major == 5:
            retname = name or f"vm-{vmid}-disk-1"
            if self.ignored(retname):
                return retname
        min_kib = 3 * 1024 if self.major >= 8 else 5 * 1024
        size_kib = max(size_kib, min_kib)
        if fmt != "raw":
            raise StorageError(perl_die(f"unsupported format '{fmt}'", self.version, "format"))
        if self.major < 8 and name and not name.startswith(f"vm-{vmid}-"):
            raise StorageError(f"illegal name '{name}' - should be 'vm-{vmid}-*'")
        client = self.connect()
        existing = self.resources(client)
        if self.major >= 8:
            if name:
                if VALID_UUID.match(name):
                    proxmox_name, linstor_name = name, self.linstor_name(name)
                elif VALID_LEGACY.match(name) or any(p.match(name) for p in VALID_OTHER):
                    proxmox_name = linstor_name = name
                else:
                    raise StorageError(perl_die(
                        f"allocated name ('{name}') has to be a valid UUID, legacy, state, or cloud-init name",
                        self.version, "alloc"))  # fmt: skip
                if linstor_name in existing:
                    raise StorageError(f"volume '{linstor_name}' already exists")
            else:
                definitions = set(self.definitions(client))
                linstor_name = self._new_pm_name(set(existing) | definitions)
                proxmox_name = f"{linstor_name}_{vmid}"
        else:
            if name and name in existing:
                raise StorageError(f"volume '{name}' already exists")
            if not name:
                name = next((f"vm-{vmid}-disk-{i}" for i in range(1, 100) if f"vm-{vmid}-disk-{i}" not in existing),
                            None)  # fmt: skip
                if name is None:
                    raise StorageError(f"unable to allocate an image name for VM {vmid} in storage '{self.storeid}'")
            proxmox_name = linstor_name = name
        local = self.node_name() if self.prefer_local() else None
        if local:
            print(f"\nNOTICE\n  Trying to create diskful resource ({linstor_name}) on ({local}).", flush=True)
        try:
            self._create(client, linstor_name, size_kib, local)
            if self.major >= 8:
                self._set_rd_prop(client, linstor_name, "Aux/pm/vmid", str(vmid))
        except StorageError as err:
            raise StorageError(confess(str(err), self.version, "alloc_image")) from err
        with self.state.locked():
            satellite.sync_all(self.state)
        return proxmox_name

    def _create(self, client: Rest, name: str, size_kib: int, local: str | None) -> None:
        rg = self.resource_group()
        body: dict[str, Any] = {"resource_definition_name": name, "definitions_only": local is not None,
                                "volume_sizes": [size_kib]}  # fmt: skip
        if self.major >= 8:
            props = {"DrbdOptions/ExactSize": "True" if self.exact_size() else "False"}
            if tuple(int(x) for x in self.version.split(".")[:2]) >= (8, 0):
                props["DrbdOptions/Net/allow-two-primaries"] = "yes" if self.allow_two_primaries() else "no"
            body["resource_definition_props"] = props
        status, reply = client.call("POST", f"/v1/resource-groups/{rg}/spawn", body)
        if status != 201:
            raise StorageError(self._die_content(
                f"Could not create resource definition {name} from resource group {rg}", status, reply))  # fmt: skip
        if local is None:
            return
        status, reply = client.call("POST", f"/v1/resource-definitions/{name}/resources/{local}/make-available",
                                    {"diskful": True})  # fmt: skip
        if status != 200:
            print(f"  Diskfull assignment on {local} failed, let's autoplace it.", flush=True)
        status, reply = client.call("POST", f"/v1/resource-definitions/{name}/autoplace", {})
        if status != 201:
            raise StorageError(self._die_content(f"Could not autoplace resource {name}", status, reply))

    def _set_rd_prop(self, client: Rest, name: str, key: str, value: str) -> None:
        status, reply = client.call("PUT", f"/v1/resource-definitions/{name}", {"override_props": {key: value}})
        if status != 200:
            raise StorageError(self._die_content(
                f"Could not set k/v ('{key}'/'{value}') on resource definition '{name}'", status, reply))  # fmt: skip

    def free(self, volname: str) -> None:
        if self.ignored(volname):
            raise StorageError(f"Not freeing contoller VM at {PLUGIN_PM} line 374.")
        client = self.connect()
        name = self.linstor_name(volname)
        if name not in self.resources(client):
            return
        status, reply = client.call("DELETE", f"/v1/resource-definitions/{name}")
        if status != 200:
            raise StorageError(confess(self._die_content(f"Could not delete resource {name}", status, reply),
                                       self.version, "free_image"))  # fmt: skip
        with self.state.locked():
            satellite.sync_all(self.state)
            if not any(drbd.is_up(self.state, n, name) for n in self.state.node_names()):
                drbd.forget(self.state, name)

    def path(self, volname: str) -> str:
        self.parse_volname(volname)
        name = self.linstor_name(volname)
        device = drbd.device_path(name)
        if self.major >= 8 and tuple(int(x) for x in self.version.split(".")[:2]) >= (8, 2):
            # Since 8.2 path() asks the controller for a diskless assignment when the device is missing.
            if not drbd.is_up(self.state, self.node, name):
                client = self.connect()
                placed = {r["node_name"] for r in self.resources(client).get(name, [])}
                if self.node_name() not in placed:
                    self._make_available(client, name, diskful=False)
        return device

    def _make_available(self, client: Rest, name: str, diskful: bool) -> None:
        status, reply = client.call(
            "POST", f"/v1/resource-definitions/{name}/resources/{self.node_name()}/make-available",
            {"diskful": diskful},
        )  # fmt: skip
        if status != 200:
            raise StorageError(self._die_content(
                f"Could not create diskless resource {name} on {self.node_name()}", status, reply))  # fmt: skip
        with self.state.locked():
            satellite.sync_all(self.state)

    def activate(self, volname: str) -> list[str]:
        """activate_volume; returns warnings to print."""
        if self.ignored(volname):
            return []
        name = self.linstor_name(volname)
        client = self.reachable()
        if client is None:
            if self.version == "8.3.0" or tuple(int(x) for x in self.version.split(".")[:2]) >= (8, 3):
                if drbd.is_up(self.state, self.node, name):
                    return [f"LINSTOR controller unreachable, using existing local DRBD device for {name}"]
                raise StorageError(
                    f"could not connect to any LINSTOR controller and no local DRBD device exists for {name}")
            raise StorageError(confess(perl_die("could not connect to any LINSTOR controller", self.version,
                                                "connect"), self.version, "activate_volume"))  # fmt: skip
        if self.major >= 8 and not self.exact_size():
            self._set_rd_prop(client, name, "DrbdOptions/ExactSize", "False")
        self._make_available(client, name, diskful=False)
        return []

    def list_images(self, vmid: int | None) -> list[tuple[str, int, int]]:
        """(volid, size in bytes, owner vmid) of this storage's resource group."""
        client = self.connect()
        resources = self.resources(client)
        out: list[tuple[str, int, int]] = []
        for name, rd in sorted(self.definitions(client).items()):
            if rd.get("resource_group_name") != self.resource_group() or name not in resources:
                continue
            if re.match(r"^pm-[\da-f]{8}\Z", name):
                owner = rd.get("props", {}).get("Aux/pm/vmid")
                if owner is None:
                    continue
                volname = f"{name}_{owner}"
            else:
                match = re.match(r"^vm-(\d+)-", name)
                if not match:
                    continue
                owner, volname = match.group(1), name
            if vmid is not None and int(owner) != vmid:
                continue
            vds = rd.get("volume_definitions") or [{}]
            out.append((f"{self.storeid}:{volname}", int(vds[0].get("size_kib", 0)) * 1024, int(owner)))
        return out

    def status(self) -> tuple[int, int, int, bool]:
        """(total, used, avail) in bytes and whether active; the real plugin asks query-all-size-info."""
        self.connect()
        total = 512 * 1024**3
        used = sum(int(e.get("size_kib", 0)) * 1024 for e in drbd.resources(self.state).values())
        return total, used, max(total - used, 0), True


def lookup(state: SimState, node: str, storeid: str, scfg: dict[str, Any]) -> DrbdStorage | None:
    if scfg.get("type") != "drbd":
        return None
    plugin_version = state.scenario_json().get("plugin_version", "8.3.0")
    return DrbdStorage(state, node, storeid, scfg, plugin_version)
