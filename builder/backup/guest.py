"""Running programs in the appliance VM through the QEMU guest agent (`qm guest exec`, proxmox.md section 10).

`qm guest` works only on the node that owns the VM's config, so every call runs there (over the deploy's
SSH transport when that is another node). `qm` exits 0 whenever the agent answered; the program's own
exit code is in the JSON it prints. Output is capped at 16 MiB per stream, so files are read in chunks
of base64 text well below that.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
from dataclasses import dataclass

from builder.deploy.remote import Node, Transport
from builder.errors import die

# Raw bytes per chunk: 6 MiB become 8 MiB of base64, half the agent's output limit.
CHUNK = 6 * 2**20
EXEC_TIMEOUT = 120


@dataclass(frozen=True)
class Result:
    exitcode: int
    out: str
    err: str


class GuestAgent:
    def __init__(self, transport: Transport, node: Node, vmid: int) -> None:
        self.transport = transport
        self.node = node
        self.vmid = vmid

    def exec(self, *argv: str, check: bool = True) -> Result:
        command = ["qm", "guest", "exec", str(self.vmid), "--timeout", str(EXEC_TIMEOUT), "--", *argv]
        result = self.transport.run(self.node, command, check=False, timeout=EXEC_TIMEOUT + 30)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
            die(f"the guest agent of VM {self.vmid} on {self.node.name} did not run '{shlex.join(argv)}': {last}",
                hint=f"check that VM {self.vmid} runs and has qemu-guest-agent ('qm guest cmd {self.vmid} ping' on "
                     f"{self.node.name})")  # fmt: skip
        try:
            reply = json.loads(result.stdout)
        except json.JSONDecodeError:
            die(f"qm guest exec printed no JSON for '{shlex.join(argv)}'", hint="qemu-server 8 or newer is needed")
        if "exitcode" not in reply:
            # `{"pid": N}` alone: the program outlived qm's timeout and still runs in the VM.
            die(f"'{shlex.join(argv)}' did not finish in VM {self.vmid} within {EXEC_TIMEOUT}s",
                hint="look at the VM's load; try again later")
        outcome = Result(int(reply["exitcode"]), str(reply.get("out-data", "")), str(reply.get("err-data", "")))
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
