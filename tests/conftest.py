"""Session-wide fixtures: the stand-in LINSTOR packages and the appliance images built from them.

Building is the slow part of the suite, so each image is built once per test run and shared; mkosi's
cache lives outside the repository (LINSTOR_APPLIANCE_TEST_CACHE, default ~/.cache/linstor-appliance),
so a second run only re-does the configuration-dependent steps.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = TESTS_DIR.parent
sys.path.insert(0, str(TESTS_DIR))

from fixtures.build_standin import build_debs  # noqa: E402

CACHE_DIR = Path(os.environ.get("LINSTOR_APPLIANCE_TEST_CACHE", Path.home() / ".cache" / "linstor-appliance"))
STATIC_ADDRESS = "10.0.2.15/24"
STATIC_GATEWAY = "10.0.2.2"
STATIC_DNS = "10.0.2.3"


@dataclass(frozen=True)
class BuiltImage:
    """One finished build: the output folder and the SSH key whose public half the image trusts."""

    directory: Path
    ssh_key: Path

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


def cli(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run linstor-appliance the way a user does: as a separate process, output captured."""
    result = subprocess.run(
        [sys.executable, "-m", "builder", *args],
        cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"linstor-appliance {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("building images needs root")


@pytest.fixture(scope="session")
def standin_debs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local LINSTOR package folder (local:DIR source) holding the stand-in packages."""
    directory = tmp_path_factory.mktemp("standin-debs")
    build_debs(directory)
    return directory


@pytest.fixture(scope="session")
def ssh_keypair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ssh")
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test@build", "-f", str(key)], check=True)
    return key


def build_image(name: str, debs: Path, key: Path, out_root: Path, *extra: str) -> BuiltImage:
    require_root()
    directory = out_root / name
    cli(
        "build", "--distribution", "debian", "--linstor-source", f"local:{debs}",
        "--ssh-authorized-keys", f"{key}.pub", "--output-dir", str(directory), "--cache-dir", str(CACHE_DIR),
        *extra,
    )
    return BuiltImage(directory, key)


@pytest.fixture(scope="session")
def images_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("images")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def appliance_image(standin_debs: Path, ssh_keypair: Path, images_root: Path) -> BuiltImage:
    """The Debian 13 appliance with DHCP networking and a build-time SSH key."""
    return build_image("dhcp", standin_debs, ssh_keypair, images_root)


@pytest.fixture(scope="session")
def static_image(standin_debs: Path, ssh_keypair: Path, images_root: Path) -> BuiltImage:
    """The same appliance configured with QEMU user networking's addresses as a static address."""
    return build_image(
        "static", standin_debs, ssh_keypair, images_root,
        "--address", STATIC_ADDRESS, "--gateway", STATIC_GATEWAY, "--dns", STATIC_DNS,
        "--search-domains", "example.test", "--hostname", "ctrl-static",
    )
