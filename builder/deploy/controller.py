"""The LINSTOR controllers a deploy talks to, through LINBIT's python-linstor.

Two controllers matter: the one on this node (where the database is today) and the one in the VM
afterwards. Where each listens comes from its linstor.toml ([http] listen_addr and port); how an
address is reached is a `Directory`, which maps it to a python-linstor URI (the simulated cluster of
the tests maps addresses to loopback ports with its own Directory).
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import linstor

from builder.errors import die

DEFAULT_PORT = 3370
# Properties of the VM disk's resource definition: ours (to recognise the resource on a later run),
# and DRBD's policy for losing quorum: a VM root file system must freeze, not turn read-only
# (LINBIT KB "LINSTOR Quorum Policies and VM Environments").
PROP_VMID = "Aux/linstor-appliance/vmid"
QUORUM_PROPS = {"DrbdOptions/Resource/on-no-quorum": "suspend-io"}
# Live migration of the VM needs both nodes Primary for a moment, as the plugin allows on its volumes.
MIGRATION_PROPS = {"DrbdOptions/Net/allow-two-primaries": "yes"}
SINGLE_PRIMARY_PROPS = {"DrbdOptions/Net/allow-two-primaries": "no"}
SATELLITE_TYPES = ("SATELLITE", "COMBINED")


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class Directory:
    """Turns a controller's address into a python-linstor URI; on a real network that is the address."""

    def uri(self, endpoint: Endpoint) -> str:
        return f"linstor://{endpoint}"


def http_settings(toml_text: str) -> tuple[str, int, int | None]:
    """(listen address, HTTP port, HTTPS port or None) from a linstor.toml."""
    try:
        data = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as error:
        die(f"linstor.toml is not valid TOML ({error})", hint="fix /etc/linstor/linstor.toml")
    http = data.get("http", {}) if isinstance(data.get("http"), dict) else {}
    https = data.get("https", {}) if isinstance(data.get("https"), dict) else {}
    listen = str(http.get("listen_addr", "::"))
    port = int(http.get("port", DEFAULT_PORT))
    https_port = int(https.get("port", 3371)) if https.get("enabled") else None
    return listen, port, https_port


def host_endpoint(root: Path) -> Endpoint:
    """Where the controller on this node answers, as its linstor.toml says."""
    path = root / "etc/linstor/linstor.toml"
    text = path.read_text() if path.exists() else ""
    listen, port, _ = http_settings(text)
    try:
        unspecified = ipaddress.ip_address(listen).is_unspecified
    except ValueError:
        unspecified = False
    return Endpoint("localhost" if unspecified else listen, port)


@dataclass(frozen=True)
class NodeInfo:
    name: str
    type: str
    status: str
    address: str


@dataclass(frozen=True)
class Placement:
    node: str
    diskless: bool


class Controller:
    """One connected controller. Errors become one line that names the controller."""

    def __init__(self, lin: Any, where: str) -> None:
        self.lin = lin
        self.where = where

    def version(self) -> str:
        return str(self.lin.controller_version().version)

    def nodes(self) -> list[NodeInfo]:
        nodes = self._call(self.lin.node_list_raise).nodes
        found = []
        for node in nodes:
            address = node.net_interfaces[0].address if node.net_interfaces else ""
            found.append(NodeInfo(str(node.name), str(node.type).upper(), str(node.connection_status).upper(),
                                  str(address)))  # fmt: skip
        return sorted(found, key=lambda n: n.name)

    def resource_group(self, name: str) -> Any | None:
        groups = self._call(self.lin.resource_group_list_raise, filter_by_resource_groups=[name]).resource_groups
        return next((g for g in groups if str(g.name).casefold() == name.casefold()), None)

    def resource_definition(self, name: str) -> Any | None:
        definitions = self._call(self.lin.resource_dfn_list_raise,
                                 filter_by_resource_definitions=[name]).resource_definitions  # fmt: skip
        return next((d for d in definitions if str(d.name).casefold() == name.casefold()), None)

    def placements(self, name: str) -> list[Placement]:
        resources = self._call(self.lin.resource_list_raise, filter_by_resources=[name]).resources
        return [Placement(str(r.node_name), "DISKLESS" in [str(f).upper() for f in r.flags])
                for r in resources if str(r.name).casefold() == name.casefold()]  # fmt: skip

    def in_use(self, name: str) -> dict[str, bool | None]:
        """Per node with the resource: whether its satellite reports it in use (DRBD Primary); None if unknown."""
        states = self._call(self.lin.resource_list_raise, filter_by_resources=[name]).resource_states
        return {str(s.node_name): (None if s.in_use is None else bool(s.in_use))
                for s in states if str(s.rsc_name).casefold() == name.casefold()}  # fmt: skip

    def spawn(self, group: str, name: str, size_kib: int, place_count: int, props: dict[str, str]) -> None:
        replies = self.lin.resource_group_spawn(group, name, [size_kib], place_count=place_count,
                                                diskless_on_remaining=True)  # fmt: skip
        self._check(replies, f"creating resource {name} from resource group {group}")
        self.set_props(name, props)

    def autoplace(self, name: str, place_count: int) -> None:
        replies = self.lin.resource_auto_place(name, place_count, diskless_on_remaining=True)
        self._check(replies, f"placing {place_count} replicas of {name}")

    def make_available(self, node: str, name: str, diskful: bool = False) -> None:
        self._check(self.lin.resource_make_available(node, name, diskful=diskful),
                    f"making {name} available on {node}")  # fmt: skip

    def set_props(self, name: str, props: dict[str, str]) -> None:
        self._check(self.lin.resource_dfn_modify(name, props), f"setting properties of {name}")

    def resources(self) -> list[tuple[str, str]]:
        """Every resource as (resource, node), sorted."""
        found = self._call(self.lin.resource_list_raise).resources
        return sorted((str(r.name), str(r.node_name)) for r in found)

    def resource_definitions(self) -> list[str]:
        return sorted(str(d.name) for d in self._call(self.lin.resource_dfn_list_raise).resource_definitions)

    def delete_definition(self, name: str) -> None:
        self._check(self.lin.resource_dfn_delete(name), f"deleting resource definition {name}")

    def create_controller_node(self, name: str, address: str, port: int) -> None:
        replies = self.lin.node_create(name, "Controller", address, port=port)
        self._check(replies, f"registering {name} as a Controller node")

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except linstor.LinstorError as error:
            die(f"the LINSTOR controller at {self.where} refused a request: {error}",
                hint="check 'linstor error-reports list' on the controller")

    def _check(self, replies: list[Any], what: str) -> None:
        errors = [r for r in replies if r.is_error()]
        if errors:
            die(f"{what} failed: {errors[0].message}", hint=str(errors[0].correction or "see the LINSTOR error "
                "report on the controller"))  # fmt: skip


@contextmanager
def connect(directory: Directory, endpoint: Endpoint, timeout: float = 30.0) -> Iterator[Controller]:
    uri = directory.uri(endpoint)
    try:
        lin = linstor.Linstor(uri, timeout=timeout, agent_info="linstor-appliance deploy")
        lin.connect()
    except (linstor.LinstorError, OSError) as error:
        die(f"no LINSTOR controller answers at {endpoint} ({error})",
            hint="check 'systemctl status linstor-controller' and the [http] section of linstor.toml")
    try:
        yield Controller(lin, str(endpoint))
    finally:
        lin.disconnect()


def probe(directory: Directory, endpoint: Endpoint, timeout: float = 5.0) -> str | None:
    """The controller's version if one answers at endpoint, else None; never raises."""
    try:
        lin = linstor.Linstor(directory.uri(endpoint), timeout=timeout, agent_info="linstor-appliance deploy")
        lin.connect()
    except (linstor.LinstorError, OSError):
        return None
    try:
        return str(lin.controller_version().version)
    except (linstor.LinstorError, OSError):
        return None
    finally:
        lin.disconnect()
