"""The pinned --linstor-version: the package source must hold it before mkosi runs, and the image must have it after.

apt's pin (image/templates/apt/linstor-pin.pref.j2) only prefers matching versions: when the source holds
none, apt quietly installs another one. The pin is what the cluster's satellites run, and LINSTOR has no
mixed-version operation, so the build checks both ends instead of trusting apt.
"""

from __future__ import annotations

from builder import log, sources
from builder.config import Config
from builder.deploy.versions import numbers, release
from builder.errors import die

CONTROLLER = "linstor-controller"
OLDER_VERSION_HINT = "see 'Building for an older LINSTOR version' in the README"


def matches(pin: str, debian_version: str) -> bool:
    """Whether debian_version is what --linstor-version pin asks for.

    A release ('1.34.0') matches every packaging of it (1.34.0-1, 1.34.0-2); a full Debian version
    ('1.34.0-1') only itself. The pin cannot carry an epoch, so the epoch is not compared.
    """
    if "-" in pin:
        return debian_version.split(":", 1)[-1] == pin
    return release(debian_version) == pin


def listing(versions: list[str]) -> str:
    ordered = sorted(set(versions), key=lambda v: (numbers(v), v))
    return ", ".join(ordered) if ordered else "none"


def check_available(config: Config) -> None:
    """Before mkosi: the chosen source holds the pinned linstor-controller."""
    pin = config.linstor_version
    if pin is None:
        return
    with log.step(f"Checking that the LINSTOR package source has {CONTROLLER} {pin}"):
        where, versions = sources.source_versions(config, CONTROLLER)
        if any(matches(pin, version) for version in versions):
            return
        die(f"--linstor-version {pin} is not in {where}, which has {CONTROLLER} {listing(versions)}",
            hint=f"pick one of those, or fill a local: folder with the {pin} packages ({OLDER_VERSION_HINT})")


def check_installed(config: Config, packages: list[dict[str, str]]) -> None:
    """After mkosi: the image has the pinned linstor-controller installed (packages as manifest.py reads them)."""
    installed = {p["name"]: p["version"] for p in packages}.get(CONTROLLER)
    if installed is None:
        die(f"{CONTROLLER} is not installed in the image", hint="check the LINSTOR package source")
    pin = config.linstor_version
    if pin is not None and not matches(pin, installed):
        die(f"the image has {CONTROLLER} {installed} installed instead of the pinned {pin}, so no image was written",
            hint=f"mkosi reuses its cached image, packages included, when only the pin changed: remove "
                 f"{config.cache_dir / 'mkosi'} and build again")
