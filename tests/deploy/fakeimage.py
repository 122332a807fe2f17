"""A small stand-in for the appliance image: a GPT disk whose root partition holds just what deploy touches.

Real images take minutes to build; the deploy needs only a partition table with an x86-64 root
partition (found by type, mounted by offset), an ext4 file system to inject into, the appliance's
deploy-check script and a dpkg status file naming linstor-controller, plus manifest.json and SHA256SUMS.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from helpers import ImageOutputs

from builder import diskimage

PROJECT = Path(__file__).resolve().parents[2]
MIB = 2**20
DISK_SIZE = 48 * MIB
ROOT_START = MIB
ROOT_SIZE = DISK_SIZE - 2 * MIB
DEFAULT_TOML = ('[db]\n  user = "linstor"\n  password = "linstor"\n'
                '  connection_url = "jdbc:h2:/var/lib/linstor/linstordb"\n')


@dataclass(frozen=True)
class FakeImage(ImageOutputs):
    linstor_version: str


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def root_tree(directory: Path, package_version: str, extra: dict[str, str] | None = None) -> Path:
    root = directory / "rootfs"
    for sub in ("etc/linstor", "var/lib/linstor", "var/lib/dpkg/info", "usr/lib/linstor-appliance", "etc/netplan",
                "usr/share/blob"):  # fmt: skip
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "etc/linstor/linstor.toml").write_text(DEFAULT_TOML)
    (root / "etc/hostname").write_text("linstor-controller\n")
    (root / "etc/netplan/config.yaml").write_text("network: {version: 2}\n")
    (root / "var/lib/dpkg/status").write_text(
        f"Package: linstor-controller\nStatus: install ok installed\nArchitecture: all\nVersion: {package_version}\n"
        "Maintainer: test\nDescription: stand-in\n\n"
    )
    shutil.copy2(PROJECT / "image/mkosi.extra/usr/lib/linstor-appliance/deploy-check",
                 root / "usr/lib/linstor-appliance/deploy-check")  # fmt: skip
    # Some data that is not zeros, so an image write has something to send.
    (root / "usr/share/blob/data").write_bytes(os.urandom(3 * MIB))
    for path, text in (extra or {}).items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(text)
    return root


def build(directory: Path, linstor_version: str, dpkg_version: str | None = None,
          extra: dict[str, str] | None = None) -> FakeImage:  # fmt: skip
    """The image for a cluster running `linstor_version`; dpkg_version lets the image lie about its package, and
    `extra` ({path: text}) puts more files into it."""
    directory.mkdir(parents=True, exist_ok=True)
    image = FakeImage(directory, linstor_version)
    root = root_tree(directory, dpkg_version or f"{linstor_version}-1", extra)
    fs = directory / "root.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root), str(fs), f"{ROOT_SIZE // 1024}k"],
                   check=True, capture_output=True)  # fmt: skip
    with image.raw.open("wb") as handle:
        handle.truncate(DISK_SIZE)
    table = (f"label: gpt\nstart={ROOT_START // 512}, size={ROOT_SIZE // 512}, type={diskimage.ROOT_X86_64}, "
             "name=root\n")  # fmt: skip
    subprocess.run(["sfdisk", "--quiet", str(image.raw)], input=table, text=True, check=True)
    with fs.open("rb") as source, image.raw.open("r+b") as target:
        target.seek(ROOT_START)
        while chunk := source.read(4 * MIB):
            target.write(chunk)
    fs.unlink()
    shutil.rmtree(root)
    subprocess.run(["zstd", "-q", "-f", str(image.raw), "-o", str(image.compressed)], check=True)
    manifest = {
        "format": 1, "image": image.raw.name, "compressed_image": image.compressed.name,
        "built_at": "2026-07-01T12:00:00Z", "builder_version": "0.1.0", "distribution": "debian",
        "release": "trixie", "kernel": "6.12.0-test-amd64",
        "linstor_controller": {"version": linstor_version, "package_version": f"{linstor_version}-1"},
        "sizes": {"virtual": DISK_SIZE, "allocated": DISK_SIZE, "compressed": image.compressed.stat().st_size},
        "configuration": {"disk_size": DISK_SIZE},
        "packages": [{"name": "linstor-controller", "version": f"{linstor_version}-1", "architecture": "all"}],
    }  # fmt: skip
    image.manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    image.sums.write_text("".join(f"{_sha256(p)}  {p.name}\n" for p in (image.raw, image.compressed,
                                                                          image.manifest)))  # fmt: skip
    return image
