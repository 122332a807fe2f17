"""Running programs in a VM through the QEMU guest agent (`qm guest exec`, proxmox.md section 10).

`qm guest` works only on the node that owns the VM's config, so every call runs there (over the deploy's
SSH transport when that is another node). `qm` exits 0 whenever the agent answered; the program's own
exit code is in the JSON it prints, and `{"pid": N}` alone means it outlived `--timeout` and still runs.

`run()` never raises: `status` and `sync` must report an unreachable VM, not stop at it. `GuestAgent`
raises through die() for the commands that cannot go on without the VM (backup). Output is capped at
16 MiB per stream, so GuestAgent reads files in chunks of base64 text well below that.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from builder.deploy.remote import Node, Transport
from builder.errors import ApplianceError, die

# Raw bytes per chunk: 6 MiB become 8 MiB of base64, half the agent's output limit.
CHUNK = 6 * 2**20
EXEC_TIMEOUT = 120


class Failure(enum.Enum):
    """Why the agent gave no outcome of the program."""

    QM = "qm"  # qm (or the way to its node) failed: no agent, VM stopped, node unreachable
    NO_JSON = "no-json"  # qm printed something other than its JSON reply
    TIMEOUT = "timeout"  # the program still ran when qm's --timeout passed


@dataclass(frozen=True)
class GuestResult:
    """A guest program's outcome, or why the agent could not run it (`error`, of kind `failure`)."""

    exitcode: int | None
    out: str = ""
    err: str = ""
    error: str | None = None
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.exitcode == 0

    def why(self) -> str:
        if self.error is not None:
            return self.error
        return (self.err.strip().splitlines() or [f"exit code {self.exitcode}"])[-1]


def _exec(transport: Transport, node: Node, vmid: int, argv: Sequence[str], *, timeout: int, grace: int,
          stdin: str | None) -> GuestResult:  # fmt: skip
    """One program in the VM; only the transport's own errors (ApplianceError) are raised."""
    options = ["--timeout", str(timeout)] + (["--pass-stdin", "1"] if stdin is not None else [])
    result = transport.run(node, ["qm", "guest", "exec", str(vmid), *options, "--", *argv], input=stdin, check=False,
                           timeout=timeout + grace)  # fmt: skip
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        error = lines[-1].strip() if lines else f"qm exited with code {result.returncode}"
        return GuestResult(None, error=error, failure=Failure.QM)
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return GuestResult(None, error=f"qm guest exec printed no result: {result.stdout.strip()[:100]}",
                           failure=Failure.NO_JSON)  # fmt: skip
    if not data.get("exited"):
        return GuestResult(None, error=f"the program in VM {vmid} did not finish within {timeout} s",
                           failure=Failure.TIMEOUT)  # fmt: skip
    return GuestResult(int(data.get("exitcode", -1)), str(data.get("out-data", "")), str(data.get("err-data", "")))


def run(transport: Transport, node: Node, vmid: int, argv: Sequence[str], *, timeout: int, grace: int,
        stdin: str | None = None) -> GuestResult:  # fmt: skip
    """One program in the VM on `node` (the one with its config, section 10.5); never raises.

    `timeout` is qm's --timeout; the call to qm itself may take `grace` seconds longer. `stdin` goes in
    with --pass-stdin (at most 1 MiB)."""
    try:
        return _exec(transport, node, vmid, argv, timeout=timeout, grace=grace, stdin=stdin)
    except ApplianceError as error:
        return GuestResult(None, error=error.message, failure=Failure.QM)


class GuestAgent:
    """The guest agent of one VM for commands that stop when it fails (die with a hint)."""

    def __init__(self, transport: Transport, node: Node, vmid: int) -> None:
        self.transport = transport
        self.node = node
        self.vmid = vmid

    def exec(self, *argv: str, check: bool = True) -> GuestResult:
        """The program's outcome (exitcode always set); dies when the agent cannot run it, or, with
        `check`, when it fails."""
        outcome = _exec(self.transport, self.node, self.vmid, argv, timeout=EXEC_TIMEOUT, grace=30, stdin=None)
        if outcome.failure is Failure.QM:
            die(f"the guest agent of VM {self.vmid} on {self.node.name} did not run '{shlex.join(argv)}': "
                f"{outcome.error}",
                hint=f"check that VM {self.vmid} runs and has qemu-guest-agent ('qm guest cmd {self.vmid} ping' on "
                     f"{self.node.name})")  # fmt: skip
        if outcome.failure is Failure.NO_JSON:
            die(f"qm guest exec printed no JSON for '{shlex.join(argv)}'", hint="qemu-server 8 or newer is needed")
        if outcome.failure is Failure.TIMEOUT:
            # `{"pid": N}` alone: the program outlived qm's timeout and still runs in the VM.
            die(f"'{shlex.join(argv)}' did not finish in VM {self.vmid} within {EXEC_TIMEOUT}s",
                hint="look at the VM's load; try again later")
        if check and outcome.exitcode != 0:
            last = (outcome.err.strip().splitlines() or [""])[-1]
            die(f"'{shlex.join(argv)}' failed in VM {self.vmid} with exit code {outcome.exitcode}: {last}",
                hint=f"look at the VM's console (qm terminal {self.vmid})")
        return outcome

    def read_text(self, path: str) -> str | None:
        result = self.exec("cat", path, check=False)
        return result.out if result.exitcode == 0 else None

    def read_file(self, path: str) -> bytes:
        """The file's bytes, checked against the SHA-256 the VM computes of it."""
        size = int(self.exec("stat", "-c", "%s", path).out.strip())
        data = bytearray()
        while len(data) < size:
            chunk = self.exec("sh", "-c", 'dd if="$1" bs="$2" skip="$3" count=1 2>/dev/null | base64 -w 0', "sh", path,
                              str(CHUNK), str(len(data) // CHUNK)).out  # fmt: skip
            piece = base64.b64decode(chunk)
            if not piece:
                die(f"{path} in VM {self.vmid} became shorter while it was read", hint="take the backup again")
            data += piece
        expected = self.exec("sha256sum", path).out.split()[0]
        if hashlib.sha256(data).hexdigest() != expected:
            die(f"{path} read from VM {self.vmid} does not match its SHA-256 in the VM",
                hint="the file changed while it was read; take the backup again")
        return bytes(data)

    def remove(self, path: str) -> None:
        self.exec("rm", "-f", path, check=False)
