"""The suite's one question to Ubuntu's archive, which decides whether the Ubuntu image is built and booted."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest
from helpers import ubuntu_archive_problem

from builder.config import DEFAULT_MIRRORS, Distribution


class _Archive(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200 if self.path == "/ubuntu/dists/noble/Release" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def archive() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Archive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_an_archive_serving_the_release_index_answers(archive: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DEFAULT_MIRRORS, Distribution.ubuntu, f"http://127.0.0.1:{archive}/ubuntu")
    assert ubuntu_archive_problem() is None


def test_an_archive_without_the_release_does_not(archive: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DEFAULT_MIRRORS, Distribution.ubuntu, f"http://127.0.0.1:{archive}/elsewhere")
    assert ubuntu_archive_problem() == f"http://127.0.0.1:{archive}/elsewhere/dists/noble/Release: HTTP 404"


def test_a_silent_archive_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        monkeypatch.setitem(DEFAULT_MIRRORS, Distribution.ubuntu, f"http://127.0.0.1:{port}/ubuntu")
        problem = ubuntu_archive_problem(timeout=0.5)
    assert problem is not None and problem.startswith(f"http://127.0.0.1:{port}/ubuntu/dists/noble/Release: ")
