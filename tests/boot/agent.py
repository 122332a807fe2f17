"""A client for the QEMU guest agent on the VM's virtio-serial channel (what Proxmox's 'qm agent' uses)."""

from __future__ import annotations

import json
import secrets
import socket
import time
from pathlib import Path
from typing import Any


class GuestAgentError(AssertionError):
    pass


class GuestAgent:
    """One connection to the chardev socket; commands are newline-separated JSON, answers likewise."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._buffer = b""

    def connect(self, timeout: float) -> None:
        """Connect and synchronise; the agent only answers once the guest has started it."""
        deadline = time.monotonic() + timeout
        last_error = "no answer"
        while time.monotonic() < deadline:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    self._sock.connect(str(self.path))
                self._sync(min(5.0, max(deadline - time.monotonic(), 0.1)))
                return
            except (OSError, GuestAgentError) as error:
                last_error = str(error)
                time.sleep(1)
        raise GuestAgentError(f"the guest agent at {self.path} did not answer within {timeout:.0f}s: {last_error}")

    def _sync(self, timeout: float) -> None:
        # guest-sync-delimited makes the agent send 0xFF before its answer, so anything left over from
        # an earlier, abandoned exchange can be told apart and dropped.
        token = secrets.randbelow(2**31)
        self._send({"execute": "guest-sync-delimited", "arguments": {"id": token}})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self._receive(deadline - time.monotonic())
            if answer.get("return") == token:
                return
        raise GuestAgentError("guest-sync got no matching answer")

    def call(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self._send(message)
        answer = self._receive(timeout)
        if "error" in answer:
            raise GuestAgentError(f"{command}: {answer['error']}")
        return answer.get("return")

    def request_shutdown(self) -> None:
        """Ask for a power-off; on success the agent sends no answer, the VM simply goes away."""
        self._send({"execute": "guest-shutdown", "arguments": {"mode": "powerdown"}})

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, message: dict[str, Any]) -> None:
        if self._sock is None:
            raise GuestAgentError("not connected")
        self._sock.sendall(json.dumps(message).encode() + b"\n")

    def _receive(self, timeout: float) -> dict[str, Any]:
        if self._sock is None:
            raise GuestAgentError("not connected")
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise GuestAgentError(f"no answer within {timeout:.0f}s")
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise GuestAgentError("the guest agent channel was closed")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        line = line.replace(b"\xff", b"").strip()
        if not line:
            return {}
        try:
            decoded = json.loads(line)
        except ValueError as error:
            raise GuestAgentError(f"unreadable answer {line[:200]!r}: {error}") from None
        return decoded if isinstance(decoded, dict) else {"return": decoded}
