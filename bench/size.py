"""Figure 2: virtual size, allocated bytes, compressed size and the largest packages, against the bare image.

Compressed size is what zstd at the build's level (builder.imagepack.ZSTD_LEVEL) makes of the raw image: the
appliance build's own .zst is made at that level, and the bare image is compressed at the same one here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from bench import stats
from bench.measure import BenchError, allocated_bytes
from builder import diskimage, imagepack

ZSTD = ["zstd", "-q", "-T0", f"-{imagepack.ZSTD_LEVEL}", "--force"]
TOP = 10


def sizes(image: Path, compressed: Path | None, scratch: Path) -> dict[str, int]:
    if compressed is None or not compressed.exists():
        compressed = scratch / (image.name + ".zst")
        subprocess.run([*ZSTD, str(image), "-o", str(compressed)], check=True, stdin=subprocess.DEVNULL)
        size = compressed.stat().st_size
        compressed.unlink()
    else:
        size = compressed.stat().st_size
    return {"virtual": image.stat().st_size, "allocated": allocated_bytes(image), "compressed": size}


def largest_packages(image: Path, count: int = TOP) -> list[dict[str, Any]]:
    """Installed-Size (KiB, as dpkg records it) of the biggest packages, read from the image's dpkg database."""
    if os.geteuid() != 0:
        raise BenchError("reading the packages of an image needs root (it is mounted read-only)")
    with diskimage.root_filesystem(image) as root:
        result = subprocess.run(
            ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Installed-Size}\t${Package}\n"],
            check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
    found: list[tuple[int, str]] = []
    for line in result.stdout.splitlines():
        size, _, name = line.partition("\t")
        if size.strip().isdigit():
            found.append((int(size), name))
    found.sort(key=lambda p: (-p[0], p[1]))
    return [{"name": name, "installed_kib": kib} for kib, name in found[:count]]


def figure(measured: dict[str, list[dict[str, int]]], latest: dict[str, Path]) -> dict[str, Any]:
    """measured: the sizes of every image of each flavour built (or given) in this run."""
    result: dict[str, Any] = {"appliance": {}, "baseline": {}, "ratio": {}}
    for flavor in ("appliance", "baseline"):
        runs = measured.get(flavor, [])
        for name in ("virtual", "allocated", "compressed"):
            result[flavor][f"{name}_bytes"] = stats.summary([r[name] for r in runs], "bytes")
        result[flavor]["images_measured"] = len(runs)
        result[flavor]["largest_packages"] = largest_packages(latest[flavor]) if flavor in latest else []
    for name in ("virtual", "allocated", "compressed"):
        appliance = result["appliance"][f"{name}_bytes"]["median"]
        baseline = result["baseline"][f"{name}_bytes"]["median"]
        # Sizes of one build configuration hardly vary, so the ratio of the medians is the figure.
        result["ratio"][name] = appliance / baseline if appliance and baseline else None
    return result
