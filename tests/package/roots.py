"""Minimal Debian 12 and 13 roots from Debian's archive (mmdebstrap), to install the package into.

A root holds apt, systemd (the packaged units are enabled and disabled with its systemctl), man-db,
and the packages the .deb's Depends field names, so `apt-get install ./<deb>` inside it resolves the
dependencies from what Debian packages, with no network needed at that point. mmdebstrap's tarball
is cached under CACHE_DIR/package-roots, keyed by suite, day and package list; a test extracts a
fresh copy, so every test starts from the same untouched root.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import subprocess
from pathlib import Path

from helpers import CACHE_DIR

MIRROR = os.environ.get("LINSTOR_APPLIANCE_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE = ("systemd", "man-db")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def depends(deb: Path) -> list[str]:
    """Package names in the Depends field, without versions or :any (no alternatives are used)."""
    field = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True, text=True,
                           check=True).stdout  # fmt: skip
    return sorted({re.sub(r"[\s(:].*", "", item.strip()) for item in field.split(",") if item.strip()})


def tarball(suite: str, packages: list[str]) -> Path:
    include = sorted({*BASE, *packages})
    key = hashlib.sha256(f"{suite} {MIRROR} {' '.join(include)}".encode()).hexdigest()[:12]
    cache = CACHE_DIR / "package-roots"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{suite}-{datetime.date.today().isoformat()}-{key}.tar"
    if path.is_file():
        return path
    for stale in cache.glob(f"{suite}-*.tar"):
        stale.unlink()
    partial = path.with_suffix(".partial.tar")
    result = subprocess.run(["mmdebstrap", "--quiet", "--mode=root", "--variant=apt", f"--include={','.join(include)}",
                             suite, str(partial), MIRROR], capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise AssertionError(f"mmdebstrap {suite} failed:\n{result.stderr[-3000:]}")
    partial.rename(path)
    return path


def extract(archive: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(target), "--numeric-owner", "-xpf", str(archive)], check=True)
    return target


def chroot(root: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": PATH, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root",
           "MANPAGER": "cat", "MANWIDTH": "100"}  # fmt: skip
    result = subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}) in {root}:\n{result.stdout[-2000:]}"
                             f"\n{result.stderr[-2000:]}")  # fmt: skip
    return result


# Bookkeeping that installing and removing any package changes: dpkg's and apt's state, logs, caches
# (man-db's index), /tmp where the .deb was put.
BOOKKEEPING = ("var/lib/dpkg/", "var/lib/apt/", "var/log/", "var/cache/", "tmp/", "run/", "proc/")


def snapshot(root: Path) -> dict[str, str]:
    """Every path in the root (bookkeeping left out) -> its kind, and a symlink's target."""
    found: dict[str, str] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            relative = str(path.relative_to(root))
            if (relative + "/").startswith(BOOKKEEPING):
                continue
            found[relative] = f"-> {os.readlink(path)}" if path.is_symlink() else "dir" if path.is_dir() else "file"
    return found
