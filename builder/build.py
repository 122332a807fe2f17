"""The image build, as named stages: check the host, check sources, render, mkosi, package outputs.

Outputs are produced in a staging folder inside the output directory and renamed into place only
when everything succeeded, so a failed build never leaves a half-written image under a final name.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder import imagepack, log, manifest, pin, render, sources
from builder.config import Config
from builder.errors import die
from builder.resources import IMAGE_DIR
from builder.run import require, run, run_streamed

IMAGE_NAME = "linstor-controller.raw"
MKOSI_OUTPUT = "linstor-controller"
DEFAULT_PASSWORD = "linbit"
HOST_TOOLS = ("mkosi", "qemu-img", "zstd", "sfdisk", "openssl")


@dataclass(frozen=True)
class Outputs:
    image: Path
    compressed: Path
    manifest: Path
    sums: Path


def check_host() -> None:
    with log.step("Checking the build host"):
        if os.geteuid() != 0:
            die("building the image needs root", hint="run 'sudo make image' (mkosi needs root for the disk image)")
        for tool in HOST_TOOLS:
            require(tool)
        version = run(["mkosi", "--version"], capture=True).stdout.strip()
        match = re.search(r"(\d+)(?:\.(\d+))?", version)
        if not match or int(match.group(1)) != 24:
            die(f"this build needs mkosi 24.x, found '{version}'",
                hint="install mkosi 24.3 (Debian 12: from bookworm-backports; 'make image' does it)")


def password_hash(config: Config) -> tuple[str, bool]:
    """The hash for the linbit account, and whether it must be changed at first login."""
    if config.password_hash:
        return config.password_hash, False
    hashed = run(["openssl", "passwd", "-6", "-stdin"], input=DEFAULT_PASSWORD, capture=True).stdout.strip()
    return hashed, True


def mkosi_argv(
    config: Config, extra: Path, pkgmngr: Path, output: Path, secret_env: Path, verb: str = "build"
) -> list[str]:
    cache = config.cache_dir
    argv = [
        "mkosi",
        "--directory", str(IMAGE_DIR),
        "--force",
        "--distribution", str(config.distribution),
        "--release", config.release,
        "--mirror", config.mirror,
        "--hostname", config.hostname,
        "--locale", config.locale,
        "--timezone", config.timezone,
        "--keymap", config.keymap,
        "--cache-dir", str(cache / "mkosi"),
        "--package-cache-dir", str(cache / "packages"),
        "--workspace-dir", str(cache / "workspace"),
        "--output-dir", str(output),
        "--extra-tree", str(extra),
        "--package-manager-tree", str(pkgmngr),
        "--env-file", str(secret_env),
    ]
    if config.linstor_source.kind == "local":
        argv += ["--package-directory", str(config.linstor_source.directory)]
    if log.is_verbose():
        argv.append("--debug")
    return [*argv, verb]


def show_mkosi_step(line: str) -> str | None:
    """mkosi marks its stages with '‣'; those make a readable progress report of a quiet build."""
    stripped = line.strip()
    if stripped.startswith("‣"):
        return stripped.lstrip("‣ ").rstrip("…")
    return None


@contextmanager
def staging(output_dir: Path) -> Iterator[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".build-", dir=output_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_mkosi(config: Config, work: Path, linbit_key: str | None) -> Path:
    extra, pkgmngr, output = work / "extra", work / "pkgmngr", work / "mkosi-output"
    with log.step("Rendering the image configuration"):
        render.extra_tree(config, extra, linbit_key)
        render.package_manager_tree(config, pkgmngr, linbit_key)
        hashed, expired = password_hash(config)
        # The hash reaches the postinst script through a file, not argv, so no process list shows it.
        secret_env = work / "build.env"
        secret_env.write_text(
            f"APPLIANCE_PASSWORD_HASH={hashed}\nAPPLIANCE_PASSWORD_EXPIRED={'yes' if expired else 'no'}\n"
        )
        secret_env.chmod(0o600)
    for directory in ("mkosi", "packages", "workspace"):
        (config.cache_dir / directory).mkdir(parents=True, exist_ok=True)
    with log.step(f"Building the {config.distribution} {config.release} image with mkosi"):
        run_streamed(mkosi_argv(config, extra, pkgmngr, output, secret_env), show=show_mkosi_step,
                     hint="the lines above are mkosi's; run with --verbose for all of its output")
    image = output / f"{MKOSI_OUTPUT}.raw"
    if not image.exists():
        die(f"mkosi finished but wrote no {image.name}", hint="run with --verbose to see mkosi's output")
    return output


def fit_to_disk(config: Config, image: Path) -> None:
    """The image is as small as its contents; extend it (sparsely) to the VM disk size it is meant for.

    The appliance grows its root partition into the extra space at first boot, so the same image also
    works on any larger disk.
    """
    size = image.stat().st_size
    if size > config.disk_size:
        die(f"the image needs {size / 2**30:.2f} GiB but the disk size is {config.disk_size / 2**30:.2f} GiB",
            hint=f"use --disk-size {-(-size // 2**30)}G or more")
    with image.open("r+b") as handle:
        handle.truncate(config.disk_size)
    # GPT keeps a backup header in the disk's last sector; move it there so the kernel finds a valid table.
    run(["sfdisk", "--quiet", "--relocate", "gpt-bak-std", str(image)])


def publish(staged: list[Path], output_dir: Path) -> list[Path]:
    """Rename each finished file into place (same file system, so each appears whole); sums go last."""
    final = []
    for path in staged:
        target = output_dir / path.name
        os.replace(path, target)
        final.append(target)
    return final


def build(config: Config) -> Outputs:
    check_host()
    linbit_key = sources.check(config)
    pin.check_available(config)
    output_dir = config.output_dir
    with staging(output_dir) as work:
        mkosi_output = run_mkosi(config, work, linbit_key)
        packages = manifest.packages_from_mkosi(mkosi_output / f"{MKOSI_OUTPUT}.manifest")
        pin.check_installed(config, packages)
        with log.step("Packaging the outputs"):
            image = work / IMAGE_NAME
            os.replace(mkosi_output / f"{MKOSI_OUTPUT}.raw", image)
            fit_to_disk(config, image)
            with log.step(f"Compressing to {image.name}.zst and computing checksums"):
                packed = imagepack.pack(image)
            compressed = packed.compressed
            manifest_path = manifest.write_manifest(work, manifest.build_manifest(config, packages, image, compressed))
            sums = manifest.write_sums(work, [image, compressed, manifest_path],
                                       known={image: packed.sha256, compressed: packed.compressed_sha256})
        image, compressed, manifest_path, sums = publish([image, compressed, manifest_path, sums], output_dir)
    log.info(f"Image: {image} ({image.stat().st_size / 2**30:.1f} GiB virtual, "
             f"{manifest.allocated_bytes(image) / 2**20:.0f} MiB allocated, "
             f"{compressed.stat().st_size / 2**20:.0f} MiB compressed)")
    return Outputs(image, compressed, manifest_path, sums)
