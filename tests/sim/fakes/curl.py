"""Fake `curl` (7.88, Debian 12) for what node-side scripts ask a LINSTOR controller: GET on port 3370.

`http://<address>:3370/...` reaches the controller that answers for that address in the simulation
(sim/network.json; `localhost` is the calling node), the way the plugin's probe does; nothing
listening fails at once with curl's exit code 7. HTTPS (3371) is not simulated and fails the same
way. Other loopback URLs are fetched for real; any other host is unreachable (no real networking).

Never locks the simulation's state: a hookscript runs this while HA holds that lock.
"""

from __future__ import annotations

import http.client
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from .. import network
from ..state import ENV_NODE, ENV_ROOT, ENV_STATE, SimState

WITH_ARG = {"-o", "--output", "-m", "--max-time", "--connect-timeout", "--cacert", "--cert", "--key", "-w",
            "--write-out", "-H", "--header", "-X", "--request", "-d", "--data"}  # fmt: skip
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _state() -> SimState | None:
    if os.environ.get(ENV_STATE):
        return SimState(Path(os.environ[ENV_STATE]))
    root = os.environ.get(ENV_ROOT)
    # A node's root is <state>/nodes/<node>; hookscripts get only that.
    return SimState(Path(root).parents[1]) if root else None


def _target(url: str) -> tuple[str, int, str] | None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.scheme == "http" and port == network.LINSTOR_PORT:
        state = _state()
        node = os.environ.get(ENV_NODE, "")
        if state is not None and node in state.nodes():
            resolved = network.resolve(state, host, node)
            return (resolved[0], resolved[1], path) if resolved else None
        return None
    if parts.scheme == "http" and host in LOOPBACK:
        return host, port, path
    return None


def main(argv: list[str]) -> int:
    options: dict[str, str] = {}
    flags: set[str] = set()
    urls: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg in WITH_ARG:
            options[arg] = argv[index] if index < len(argv) else ""
            index += 1
        elif arg.startswith("--"):
            flags.add(arg)
        elif arg.startswith("-") and len(arg) > 1:
            flags.update(f"-{letter}" for letter in arg[1:])
        else:
            urls.append(arg)
    if not urls:
        print("curl: no URL specified!", file=sys.stderr)
        return 2
    quiet = ("-s" in flags or "--silent" in flags) and "-S" not in flags and "--show-error" not in flags
    fail = "-f" in flags or "--fail" in flags
    timeout = float(options.get("--max-time") or options.get("-m") or 5)
    url = urls[0]
    target = _target(url)
    host = urlsplit(url).hostname or ""
    port = urlsplit(url).port or 80
    if target is None:
        if not quiet:
            print(f"curl: (7) Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server",
                  file=sys.stderr)  # fmt: skip
        return 7
    try:
        conn = http.client.HTTPConnection(target[0], target[1], timeout=timeout)
        conn.request(options.get("-X") or options.get("--request") or "GET", target[2])
        response = conn.getresponse()
        body = response.read()
        conn.close()
    except TimeoutError:
        if not quiet:
            print(f"curl: (28) Operation timed out after {int(timeout * 1000)} milliseconds", file=sys.stderr)
        return 28
    except OSError:
        if not quiet:
            print(f"curl: (7) Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server",
                  file=sys.stderr)  # fmt: skip
        return 7
    if fail and response.status >= 400:
        if not quiet:
            print(f"curl: (22) The requested URL returned error: {response.status}", file=sys.stderr)
        return 22
    output = options.get("-o") or options.get("--output")
    if output and output != "/dev/null":
        Path(output).write_bytes(body)
    elif not output:
        sys.stdout.buffer.write(body)
    return 0


def entry() -> int:
    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(entry())
