"""Helpers shared by test modules: running the CLI as a user does, and building test images."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.config import DEFAULT_MIRRORS, RELEASES, Distribution

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = Path(os.environ.get("LINSTOR_APPLIANCE_TEST_CACHE", Path.home() / ".cache" / "linstor-appliance"))
STATIC_ADDRESS = "10.0.2.15/24"
STATIC_GATEWAY = "10.0.2.2"
STATIC_DNS = "10.0.2.3"
# Ubuntu's archive is asked once per run, and only briefly: when it does not answer, the Ubuntu image is
# neither built nor booted, and the run says so in one line.
UBUNTU_PROBE_TIMEOUT = 5.0
# The start of a fake guest's script (python): a kernel that panics as the Debian 13 kernel did under TCG
# (an int3 of live code patching seen by another vCPU), then hangs as QEMU does. With $PANIC_MARKER set, only
# the first run panics (it creates that file) and the script goes on; without it, every run panics.
PANICKING_KERNEL = r"""
import os, sys, time
marker = os.environ.get("PANIC_MARKER")
if marker is None or not os.path.exists(marker):
    if marker is not None:
        open(marker, "w").close()
    sys.stdout.write(
        "[    0.000000] Linux version 6.12.118+deb13-cloud-amd64\r\n"
        "[    3.321684] sched_clock: Marking stable (3288152875, 29833958)->(3331880234, -13893401)\r\n"
        "[    3.323673] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\r\n"
        "[    3.324894] RIP: 0010:sched_clock_cpu+0x9/0x1d0\r\n"
        "[    3.327223] Kernel panic - not syncing: Fatal exception in interrupt\r\n"
        "[    5.137308] ---[ end Kernel panic - not syncing: Fatal exception in interrupt ]---\r\n")
    sys.stdout.flush()
    time.sleep(600)
"""


@dataclass(frozen=True)
class ImageOutputs:
    """The files a build writes into its output folder."""

    directory: Path

    @property
    def raw(self) -> Path:
        return self.directory / "linstor-controller.raw"

    @property
    def compressed(self) -> Path:
        return self.directory / "linstor-controller.raw.zst"

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.json"

    @property
    def sums(self) -> Path:
        return self.directory / "SHA256SUMS"


@dataclass(frozen=True)
class BuiltImage(ImageOutputs):
    """One finished build, and the SSH key whose public half the image trusts."""

    ssh_key: Path


def cli(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run linstor-appliance the way a user does: as a separate process, output captured."""
    result = subprocess.run(
        [sys.executable, "-m", "builder", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"linstor-appliance {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def ubuntu_archive_problem(timeout: float = UBUNTU_PROBE_TIMEOUT) -> str | None:
    """None when the Ubuntu build's default mirror serves its release index; otherwise why not, in a few words.

    One HEAD request, bounded as a whole (name lookup included, which urllib's timeout does not cover).
    """
    url = f"{DEFAULT_MIRRORS[Distribution.ubuntu]}/dists/{RELEASES[Distribution.ubuntu]}/Release"
    answers: list[str | None] = []
    probe = threading.Thread(target=lambda: answers.append(_head_problem(url, timeout)), daemon=True)
    probe.start()
    probe.join(timeout)
    return answers[0] if answers else f"{url}: no answer within {timeout:.0f} s"


def _head_problem(url: str, timeout: float) -> str | None:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except (urllib.error.URLError, OSError) as error:
        return f"{url}: {getattr(error, 'reason', error)}"
    return None if status == 200 else f"{url}: HTTP {status}"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("building images needs root")


def build_image(name: str, debs: Path, key: Path, out_root: Path, *extra: str) -> BuiltImage:
    require_root()
    directory = out_root / name
    cli(
        "build", "--distribution", "debian", "--linstor-source", f"local:{debs}",
        "--ssh-authorized-keys", f"{key}.pub", "--output-dir", str(directory), "--cache-dir", str(CACHE_DIR),
        *extra,
    )
    return BuiltImage(directory, key)
