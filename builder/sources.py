"""Package sources: the distribution mirror, LINBIT's repositories and their signing keys.

Everything here is checked before mkosi starts, so an unreachable mirror costs one line, not a
half-finished build.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from builder import log
from builder.config import Config, Distribution
from builder.errors import die

PROBE_TIMEOUT = 15.0


@dataclass(frozen=True)
class AptRepository:
    """One deb822 source entry; rendered by image/templates/apt/linbit.sources.j2."""

    uri: str
    suite: str
    component: str


# LINBIT's public repository carries the whole DRBD/LINSTOR stack per Proxmox VE release; its
# Debian 13 based suite is proxmox-9. On Ubuntu, LINBIT publishes the same stack in a PPA.
LINBIT_REPOSITORIES: dict[Distribution, AptRepository] = {
    Distribution.debian: AptRepository("https://packages.linbit.com/public/", "proxmox-9", "drbd-9"),
    Distribution.ubuntu: AptRepository(
        "https://ppa.launchpadcontent.net/linbit/linbit-drbd9-stack/ubuntu", "noble", "main"
    ),
}
LINBIT_KEY_URL = "https://packages.linbit.com/package-signing-pubkey.asc"
PPA_API_URL = "https://api.launchpad.net/1.0/~linbit/+archive/ubuntu/linbit-drbd9-stack"
KEYSERVER_URL = "https://keyserver.ubuntu.com/pks/lookup?op=get&options=mr&search=0x{fingerprint}"


def fetch(url: str, *, what: str, hint: str) -> bytes:
    log.debug(f"+ GET {url}")
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        die(f"{what} answered HTTP {error.code} for {url}", hint=hint)
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        die(f"{what} is unreachable ({url}: {reason})", hint=hint)


def check_mirror(config: Config) -> None:
    """The distribution mirror must serve the release's index, or mkosi would fail minutes later."""
    url = f"{config.mirror}/dists/{config.release}/Release"
    hint = "check the network or pass a reachable --mirror"
    if url.startswith("file://"):
        if not Path(url.removeprefix("file://")).exists():
            die(f"mirror {config.mirror} has no {config.release} release", hint=hint)
        return
    fetch(url, what=f"the {config.distribution} mirror {config.mirror}", hint=hint)


def linbit_repository(config: Config) -> AptRepository:
    return LINBIT_REPOSITORIES[config.distribution]


def check_linbit_repository(config: Config) -> None:
    repo = linbit_repository(config)
    fetch(
        f"{repo.uri.rstrip('/')}/dists/{repo.suite}/Release",
        what="LINBIT's package repository",
        hint="check the network, or build with --linstor-source local:DIR and a folder of LINSTOR .deb files",
    )


def linbit_key(config: Config) -> str | None:
    """LINBIT's signing key (ASCII-armoured) for apt, or None when none is needed or available.

    A key given with --linbit-keyring is trusted as is. Otherwise it is fetched over HTTPS from where
    LINBIT documents it: their key URL for the public repository, or for the PPA the fingerprint
    Launchpad publishes, looked up on Ubuntu's key server (what add-apt-repository does).
    """
    if config.linbit_keyring:
        return config.linbit_keyring.read_text()
    if config.linstor_source.kind != "linbit":
        return None
    hint = "check the network, or pass --linbit-keyring FILE with LINBIT's key"
    if config.distribution is Distribution.ubuntu:
        info = json.loads(fetch(PPA_API_URL, what="Launchpad (for the LINBIT PPA's key)", hint=hint))
        fingerprint = str(info.get("signing_key_fingerprint", ""))
        if not re.fullmatch(r"[0-9A-F]{40}", fingerprint):
            die("Launchpad did not name a signing key for the LINBIT PPA", hint=hint)
        key = fetch(KEYSERVER_URL.format(fingerprint=fingerprint), what="Ubuntu's key server", hint=hint).decode()
    else:
        key = fetch(LINBIT_KEY_URL, what="LINBIT's key server", hint=hint).decode()
    if "BEGIN PGP PUBLIC KEY BLOCK" not in key:
        die("the downloaded LINBIT key is not an ASCII-armoured OpenPGP key", hint=hint)
    return key


def check(config: Config) -> str | None:
    """Probe every source the build will use; returns LINBIT's key when the image should carry it."""
    with log.step("Checking package sources"):
        check_mirror(config)
        if config.linstor_source.kind == "linbit":
            key = linbit_key(config)
            check_linbit_repository(config)
            return key
        return linbit_key(config)
