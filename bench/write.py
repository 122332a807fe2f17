"""Figure 4: writing the image onto a disk, the deploy's method against the seed's `qemu-img dd`.

Targets: a new file, and a loop device over a new sparse file (a stand-in for a DRBD device). Each
method runs in its own process, timed until the target is flushed to storage. Bytes written:
  - write_bytes: the writer's storage writes as the kernel counts them (rusage, as /proc/<pid>/io);
  - allocated: what the target file (for the loop device: its backing file) holds afterwards, and
    how much of that holds data (FIEMAP: unwritten extents, which read as zeros, left out).
The target is then read back past the page cache and its SHA-256 compared with the image's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import stats
from bench.measure import BenchError, allocated_bytes, data_extent_bytes, run_timed
from builder import manifest
from builder.imagewrite import read_back_sha256

# The deploy's writer (builder.imagewrite), run as its own process so its I/O is counted on its own.
WRITE_IMAGE = (
    "import json, sys; from pathlib import Path; from builder.imagewrite import write_image; "
    "r = write_image(Path(sys.argv[1]), Path(sys.argv[2])); "
    "Path(sys.argv[3]).write_text(json.dumps({'data_bytes': r.data_bytes, 'zeroed_bytes': r.zeroed_bytes}))"
)
METHODS = {
    "write_image": "the deploy's writer: builder.imagewrite.write_image (data written, zero runs zeroed out)",
    "qemu-img dd": "the seed's command: qemu-img dd -O raw if=IMAGE of=TARGET (default block size, 512 bytes)",
    "qemu-img dd bs=4M": "the seed's command with the 4 MiB blocks of the Proxmox notes: "
                         "qemu-img dd -f raw -O raw bs=4M if=IMAGE of=TARGET",
}
TARGETS = ("file", "loop")
# A quick run writes only the start of the image: the seed's 512-byte `qemu-img dd` needs minutes per GiB,
# and a quick run proves that the harness works, not how fast the writers are.
QUICK_SAMPLE_BYTES = 128 * 2**20


@dataclass(frozen=True)
class Write:
    seconds: float
    write_bytes: int
    allocated: int
    data_extents: int
    identical: bool
    reported_data_bytes: int | None  # what write_image says it wrote as data; None for qemu-img


def method_argv(method: str, image: Path, target: Path, result: Path) -> list[str]:
    if method == "write_image":
        return [sys.executable, "-c", WRITE_IMAGE, str(image), str(target), str(result)]
    if method == "qemu-img dd":
        return ["qemu-img", "dd", "-O", "raw", f"if={image}", f"of={target}"]
    if method == "qemu-img dd bs=4M":
        return ["qemu-img", "dd", "-f", "raw", "-O", "raw", "bs=4M", f"if={image}", f"of={target}"]
    raise ValueError(method)


def flush(target: Path) -> None:
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def attach_loop(backing: Path) -> Path:
    result = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise BenchError(f"no loop device: {result.stderr.strip() or result.returncode}")
    return Path(result.stdout.strip())


def detach_loop(device: Path) -> None:
    subprocess.run(["losetup", "--detach", str(device)], check=False, stdin=subprocess.DEVNULL)


def write_once(method: str, image: Path, size: int, expected: str, kind: str, scratch: Path, log: Path) -> Write:
    backing = scratch / f"target-{kind}.raw"
    backing.unlink(missing_ok=True)
    result = scratch / "write-result.json"
    result.unlink(missing_ok=True)
    device = None
    if kind == "loop":
        with backing.open("wb") as handle:
            handle.truncate(size)
        device = attach_loop(backing)
    target = device or backing
    try:
        timed = run_timed(method_argv(method, image, target, result), log)
        flush(target)
        seconds = timed.seconds
        identical = read_back_sha256(target, size) == expected
    finally:
        if device is not None:
            detach_loop(device)
    allocated, data = allocated_bytes(backing), data_extent_bytes(backing)
    backing.unlink(missing_ok=True)
    reported = json.loads(result.read_text())["data_bytes"] if result.exists() else None
    return Write(seconds, timed.write_bytes, allocated, data, identical, reported)


def sample(image: Path, size: int, scratch: Path) -> Path:
    """The first `size` bytes of the image as a file of its own, its holes kept."""
    target = scratch / f"sample-{size // 2**20}MiB.raw"
    mib = 2**20
    subprocess.run(["dd", f"if={image}", f"of={target}", f"bs={mib}", f"count={size // mib}", "conv=sparse",
                    "status=none"], check=True, stdin=subprocess.DEVNULL)  # fmt: skip
    return target


def run_writes(image: Path, runs: int, scratch: Path, log: Path,
               report: Callable[[str], None], sample_bytes: int | None = None) -> dict[str, Any]:
    sampled_from = None
    if sample_bytes is not None and image.stat().st_size > sample_bytes:
        sampled_from, image = image, sample(image, sample_bytes, scratch)
    size = image.stat().st_size
    # Hashing the image also puts it in the page cache, so every method reads it from memory.
    expected = manifest.sha256(image)
    measured: dict[str, dict[str, list[Write]]] = {kind: {m: [] for m in METHODS} for kind in TARGETS}
    unavailable: dict[str, str] = {}
    methods = list(METHODS)
    for index in range(runs):
        # A different method goes first in each run, so none always meets a colder or busier machine.
        order = methods[index % len(methods):] + methods[: index % len(methods)]
        for kind in TARGETS:
            if kind in unavailable:
                continue
            for method in order:
                report(f"write: {method} onto a {kind}, run {index + 1} of {runs}")
                try:
                    measured[kind][method].append(write_once(method, image, size, expected, kind, scratch, log))
                except BenchError as error:
                    if kind != "loop" or "no loop device" not in str(error):
                        raise
                    unavailable[kind] = str(error)
                    break
    found = {"image": str(image), "image_bytes": size, "image_allocated_bytes": allocated_bytes(image),
             "measured": measured, "unavailable": unavailable}
    if sampled_from is not None:
        found["sample_of"] = str(sampled_from)
        image.unlink(missing_ok=True)
    return found


def figure(writes: dict[str, Any]) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for kind in TARGETS:
        if kind in writes["unavailable"]:
            targets[kind] = {"not_measured": writes["unavailable"][kind]}
            continue
        targets[kind] = {}
        for method, runs in writes["measured"][kind].items():
            targets[kind][method] = {
                "seconds": stats.summary([w.seconds for w in runs], "s"),
                "write_bytes": stats.summary([w.write_bytes for w in runs], "bytes"),
                "allocated_bytes": stats.summary([w.allocated for w in runs], "bytes"),
                "data_extent_bytes": stats.summary([w.data_extents for w in runs], "bytes"),
                "identical": bool(runs) and all(w.identical for w in runs),
            }
            reported = [w.reported_data_bytes for w in runs if w.reported_data_bytes is not None]
            if reported:
                targets[kind][method]["reported_data_bytes"] = stats.summary(reported, "bytes")
    found = {
        "image": writes["image"],
        "image_bytes": writes["image_bytes"],
        "image_allocated_bytes": writes["image_allocated_bytes"],
        "methods": METHODS,
        "targets": targets,
    }
    if "sample_of" in writes:
        found["sample_of"] = writes["sample_of"]
    return found
