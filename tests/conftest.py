"""Session-wide fixtures: the stand-in LINSTOR packages and the appliance images built from them.

Building is the slow part of the suite, so each image is built once per test run and shared; mkosi's
cache lives outside the repository (LINSTOR_APPLIANCE_TEST_CACHE, default ~/.cache/linstor-appliance),
so a second run only re-does the configuration-dependent steps.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR))
pytest_plugins = ["sim.fixtures"]

from fixtures.build_standin import build_debs  # noqa: E402
from helpers import STATIC_ADDRESS, STATIC_DNS, STATIC_GATEWAY, BuiltImage, build_image  # noqa: E402


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
