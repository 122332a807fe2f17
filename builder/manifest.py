"""manifest.json and SHA256SUMS: what an image contains, and how to check it arrived intact.

The deploy command reads the manifest to compare the image's linstor-controller version with the
cluster's satellites, so the version is recorded both as the Debian version and as LINSTOR's own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from builder import __version__
from builder.config import Config
from builder.errors import die

MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"
CHUNK = 4 * 2**20


def upstream_version(debian_version: str) -> str:
    """'1.34.0-1' -> '1.34.0'; epochs and Debian revisions are packaging detail, not LINSTOR's version."""
    version = debian_version.split(":", 1)[-1]
    return re.sub(r"-[^-]*$", "", version)


def packages_from_mkosi(mkosi_manifest: Path) -> list[dict[str, str]]:
    data = json.loads(mkosi_manifest.read_text())
    packages = [
        {"name": p["name"], "version": p["version"], "architecture": p.get("architecture", "")}
        for p in data.get("packages", [])
    ]
    return sorted(packages, key=lambda p: p["name"])


def kernel_version(packages: list[dict[str, str]]) -> str:
    """The versioned kernel image package (linux-image-6.12.48+deb13-cloud-amd64), not the meta package."""
    for package in packages:
        if re.match(r"^linux-image-\d", package["name"]):
            return package["name"].removeprefix("linux-image-")
    die("the image contains no kernel package", hint="this is a bug in the image configuration")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def allocated_bytes(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def build_manifest(
    config: Config, packages: list[dict[str, str]], image: Path, compressed: Path
) -> dict[str, Any]:
    by_name = {p["name"]: p["version"] for p in packages}
    controller = by_name.get("linstor-controller")
    if controller is None:
        die("linstor-controller is not installed in the image", hint="check the LINSTOR package source")
    return {
        "format": 1,
        "image": image.name,
        "compressed_image": compressed.name,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "builder_version": __version__,
        "distribution": str(config.distribution),
        "release": config.release,
        "kernel": kernel_version(packages),
        "linstor_controller": {"version": upstream_version(controller), "package_version": controller},
        "sizes": {
            "virtual": image.stat().st_size,
            "allocated": allocated_bytes(image),
            "compressed": compressed.stat().st_size,
        },
        "configuration": config.summary(),
        "packages": packages,
    }


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    path = directory / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def write_sums(directory: Path, files: list[Path], known: dict[Path, str] | None = None) -> Path:
    """SHA256SUMS for files; known holds digests already computed while the files were written."""
    known = known or {}
    path = directory / SUMS_NAME
    path.write_text("".join(f"{known.get(f) or sha256(f)}  {f.name}\n" for f in files))
    return path


def read_sums(path: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([0-9a-f]{64}) [ *](.+)$", line.strip())
        if match:
            sums[match.group(2)] = match.group(1)
    return sums


def load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        die(f"{path} does not exist", hint="copy manifest.json from the build output next to the image")
    except json.JSONDecodeError as error:
        die(f"{path} is not valid JSON ({error})", hint="copy manifest.json from the build output again")
    if not isinstance(data, dict) or "linstor_controller" not in data:
        die(f"{path} is not an appliance manifest", hint="use the manifest.json written by linstor-appliance build")
    return data
