"""Package sources: the distribution mirror, LINBIT's repositories and their signing keys.

Everything here is checked before mkosi starts, so an unreachable mirror costs one line, not a
half-finished build.
"""

from __future__ import annotations

import gzip
import json
import lzma
import re
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

from builder import log
from builder.config import Config, Distribution
from builder.errors import die
from builder.run import require, run

PROBE_TIMEOUT = 15.0
# The appliance is an x86-64 image; architecture "all" packages (all of LINSTOR's) are listed there too.
INDEX_ARCHITECTURE = "amd64"
# apt's own order of preference; a repository need not publish every one (Launchpad and reprepro differ).
INDEX_NAMES = ("Packages.xz", "Packages.gz", "Packages")


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
    data = fetch_if_present(url, what=what, hint=hint)
    if data is None:
        die(f"{what} answered HTTP 404 for {url}", hint=hint)
    return data


def fetch_if_present(url: str, *, what: str, hint: str) -> bytes | None:
    """The body at url, or None when the server says there is none (HTTP 404, or no such file:// file)."""
    log.debug(f"+ GET {url}")
    if url.startswith("file://") and not Path(url.removeprefix("file://")).is_file():
        return None
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
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
    """LINBIT's repository for the distribution, at the mirror given as linbit:URL if there is one."""
    repository = LINBIT_REPOSITORIES[config.distribution]
    if config.linstor_source.uri:
        return replace(repository, uri=config.linstor_source.uri)
    return repository


def linbit_repository_name(config: Config) -> str:
    repo = linbit_repository(config)
    name = "the LINBIT PPA" if config.distribution is Distribution.ubuntu else "LINBIT's package repository"
    return f"{name} ({repo.uri.rstrip('/')} {repo.suite}/{repo.component})"


LINBIT_HINT = "check the network, or build with --linstor-source local:DIR and a folder of LINSTOR .deb files"


def check_linbit_repository(config: Config) -> None:
    repo = linbit_repository(config)
    fetch(f"{repo.uri.rstrip('/')}/dists/{repo.suite}/Release", what="LINBIT's package repository",
          hint=LINBIT_HINT)


def package_index(config: Config) -> str:
    """The Packages index of LINBIT's repository (or PPA) for the appliance's suite, component and architecture."""
    repo = linbit_repository(config)
    base = f"{repo.uri.rstrip('/')}/dists/{repo.suite}/{repo.component}/binary-{INDEX_ARCHITECTURE}/"
    what = linbit_repository_name(config)
    for name in INDEX_NAMES:
        data = fetch_if_present(base + name, what=what, hint=LINBIT_HINT)
        if data is None:
            continue
        try:
            if name.endswith(".xz"):
                data = lzma.decompress(data)
            elif name.endswith(".gz"):
                data = gzip.decompress(data)
        except (lzma.LZMAError, zlib.error, EOFError, OSError) as error:
            die(f"the package index {base + name} is damaged ({error})", hint="try again later, or use a mirror")
        return data.decode("utf-8", errors="replace")
    die(f"{what} has no package index at {base}Packages", hint=LINBIT_HINT)


def index_versions(index: str, package: str) -> list[str]:
    """The versions of package in a Packages index (deb822 paragraphs; continuation lines start with a blank)."""
    versions = []
    for paragraph in re.split(r"\n[ \t]*\n", index):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if fields.get("package") == package and fields.get("version"):
            versions.append(fields["version"])
    return versions


def folder_versions(directory: Path, package: str) -> list[str]:
    """The versions of package among the .deb files of a local: folder, as their control fields say."""
    require("dpkg-deb")
    versions = []
    for deb in sorted(directory.glob(f"{package}_*.deb")):
        out = run(["dpkg-deb", "--field", str(deb), "Package", "Version"], capture=True,
                  hint=f"{deb} is not a readable .deb file; remove it or copy it again").stdout
        fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
        if fields.get("Package") == package and fields.get("Version"):
            versions.append(fields["Version"])
    return versions


def source_versions(config: Config, package: str) -> tuple[str, list[str]]:
    """Where the build takes package from (for messages), and the versions that source holds."""
    source = config.linstor_source
    if source.kind == "local":
        assert source.directory is not None
        return f"the folder {source.directory}", folder_versions(source.directory, package)
    return linbit_repository_name(config), index_versions(package_index(config), package)


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
