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
from helpers import (  # noqa: E402
    CACHE_DIR,
    STATIC_ADDRESS,
    STATIC_DNS,
    STATIC_GATEWAY,
    BuiltImage,
    ImageOutputs,
    build_image,
    cli,
    require_root,
    ubuntu_archive_problem,
)


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
    """The Debian 13 appliance with DHCP networking and a build-time SSH key, pinned to the stand-in's release
    (build_debs' default), so the build's checks of the pin run on every test run."""
    return build_image("dhcp", standin_debs, ssh_keypair, images_root, "--linstor-version", "1.34.0")


@pytest.fixture(scope="session")
def static_image(standin_debs: Path, ssh_keypair: Path, images_root: Path) -> BuiltImage:
    """The same appliance configured with QEMU user networking's addresses as a static address."""
    return build_image(
        "static", standin_debs, ssh_keypair, images_root,
        "--address", STATIC_ADDRESS, "--gateway", STATIC_GATEWAY, "--dns", STATIC_DNS,
        "--search-domains", "example.test", "--hostname", "ctrl-static",
    )


# -- the default flavour, Ubuntu 24.04: built and booted when Ubuntu's archive answers ---------------------------


UBUNTU_UNANSWERED = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Asks Ubuntu's archive once (a few seconds at most) when tests that need the Ubuntu image are selected.

    Runs after -m and -k have deselected, so make test-fast never asks. Without an answer those tests are
    deselected, and pytest_terminal_summary says why in one line.
    """
    ubuntu = [item for item in items if "ubuntu_image" in getattr(item, "fixturenames", ())]
    if not ubuntu:
        return
    problem = ubuntu_archive_problem()
    if problem is None:
        return
    config.stash[UBUNTU_UNANSWERED] = (f"Ubuntu 24.04 image not built or booted ({len(ubuntu)} tests deselected): "
                                       f"Ubuntu's archive did not answer ({problem})")
    items[:] = [item for item in items if item not in ubuntu]
    config.hook.pytest_deselected(items=ubuntu)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    line = config.stash.get(UBUNTU_UNANSWERED, None)
    if line is not None:
        terminalreporter.write_line(line, yellow=True)


@pytest.fixture(scope="session")
def ubuntu_image(standin_debs: Path, images_root: Path) -> ImageOutputs:
    """The default flavour as a user builds it, with the stand-in LINSTOR packages (a local: source).

    Only tests that run when Ubuntu's archive answered get here (see pytest_collection_modifyitems).
    """
    require_root()
    out = ImageOutputs(images_root / "ubuntu")
    cli("build", "--linstor-source", f"local:{standin_debs}", "--output-dir", str(out.directory),
        "--cache-dir", str(CACHE_DIR))  # fmt: skip
    return out
