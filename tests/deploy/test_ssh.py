"""The SSH transport against a real OpenSSH server on loopback: batch mode, argument quoting, file writes.

sshd runs in the foreground from a throwaway configuration (absolute paths, a fresh host key, one
authorized user key) on a free port of 127.0.0.1; the client trusts exactly that host key.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.deploy.remote import Node, Transport
from builder.errors import ApplianceError

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass(frozen=True)
class Server:
    port: int
    directory: Path

    def options(self, key: Path) -> list[str]:
        return [f"Port={self.port}", f"IdentityFile={key}", "IdentitiesOnly=yes",
                f"UserKnownHostsFile={self.directory / 'known_hosts'}", "GlobalKnownHostsFile=/dev/null",
                "StrictHostKeyChecking=yes"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.geteuid() != 0 or not Path(SSHD).exists():
        pytest.skip("needs root and openssh-server")
    directory = tmp_path_factory.mktemp("sshd")
    keygen(directory / "host_key")
    keygen(directory / "user_key")
    keygen(directory / "stranger_key")
    (directory / "authorized_keys").write_text((directory / "user_key.pub").read_text())
    port = free_port()
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {(directory / 'host_key.pub').read_text()}")
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory / 'host_key'}\nPidFile {directory / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
    )
    # sshd's privilege separation directory; Debian creates it at boot, a container may not have it.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(directory / "sshd.log", "w"))  # noqa: SIM115 - closed with the process
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"sshd did not start: {(directory / 'sshd.log').read_text()}")
            time.sleep(0.1)
    yield Server(port, directory)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def node() -> Node:
    return Node("loopback", "127.0.0.1")


def test_commands_run_with_their_arguments_intact(server: Server, node: Node, tmp_path: Path) -> None:
    transport = Transport(tmp_path, server.options(server.directory / "user_key"))
    assert transport.reachable(node) is None
    argv = ["printf", "<%s>", "two words", "$HOME", "it's", "semi;colon", "*"]
    assert transport.run(node, argv).stdout == "<two words><$HOME><it's><semi;colon><*>"
    assert transport.script(node, 'echo "$1|$2"', "a b", "c").stdout == "a b|c\n"
    with pytest.raises(ApplianceError, match=r"'sh -c 'exit 3'' failed on loopback with exit code 3"):
        transport.run(node, ["sh", "-c", "exit 3"])


def test_files_are_written_whole_read_and_removed(server: Server, node: Node, tmp_path: Path) -> None:
    transport = Transport(Path("/"), server.options(server.directory / "user_key"))
    target = tmp_path / "remote" / "unit.service.d" / "50-test.conf"
    text = "[Service]\nEnvironment=\"LS_KEEP_RES=^r([.]res)?$\"\n"
    transport.write_file(node, str(target), text, mode=0o640)
    assert target.read_text() == text and target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["50-test.conf"]
    assert transport.read_file(node, str(target)) == text
    assert transport.read_file(node, str(tmp_path / "missing")) is None
    transport.remove_file(node, str(target))
    assert not target.parent.exists()


def test_batch_mode_fails_at_once_instead_of_asking(server: Server, node: Node, tmp_path: Path) -> None:
    stranger = Transport(tmp_path, server.options(server.directory / "stranger_key"))
    started = time.monotonic()
    reason = stranger.reachable(node)
    assert reason is not None and "Permission denied (publickey)" in reason
    assert time.monotonic() - started < 10
    closed = Transport(tmp_path, [*server.options(server.directory / "user_key")[1:], f"Port={free_port()}"])
    assert "Connection refused" in (closed.reachable(node) or "")
