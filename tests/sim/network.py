"""Which simulated address answers on the LINSTOR port, and the tiny HTTP client the fakes use.

Real hosts reach a controller at http://<ip>:3370. In the simulation every running controller
listens on its own loopback port; sim/network.json maps the address it stands for (a node's
cluster IP, or a guest's IP) to that port:

    {"10.0.0.1": {"port": 41234, "pid": 5678, "owner": "pve1", "controller_id": "...", "started": 1.7e9}}
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from .state import SimState

NETWORK_FILE = "network.json"
LINSTOR_PORT = 3370


def endpoints(state: SimState) -> dict[str, dict[str, Any]]:
    return dict(state.read(NETWORK_FILE, {}))


def resolve(state: SimState, host: str, from_node: str) -> tuple[str, int] | None:
    """(host, port) on loopback for a controller address as given in storage.cfg, or None if nothing listens."""
    if host in ("localhost", "127.0.0.1", "::1", from_node):
        host = state.nodes()[from_node]["ip"]
    else:
        node = state.node_by_host(host)
        if node is not None:
            host = state.nodes()[node]["ip"]
    entry = endpoints(state).get(host)
    if not entry:
        return None
    return ("127.0.0.1", int(entry["port"]))


class Rest:
    """Just enough of REST::Client: method, path, JSON body -> (status, parsed body)."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Content-Type": "application/json", "User-Agent": "linstor-proxmox-sim"}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw.decode(errors="replace")
        return response.status, data


def probe(state: SimState, host: str, from_node: str) -> Rest | None:
    """GET /health on one controller address; the client if it answers 200."""
    target = resolve(state, host, from_node)
    if target is None:
        return None
    client = Rest(*target)
    try:
        status, _ = client.call("GET", "/health")
    except OSError:
        return None
    return client if status == 200 else None
