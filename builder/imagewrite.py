"""Write an appliance image onto a disk (a DRBD device, a loop device or a file), then verify it.

The seed procedure used `qemu-img dd`, which writes every byte of the image. Most of a fresh image is
zeros, and on a DRBD device every written byte is also sent to each peer. Here only data is written;
runs of zeros become a zero-out request (BLKZEROOUT for block devices, which DRBD replicates as a small
"write zeroes" message; a punched hole for files), so the target ends up byte-identical either way.
A .zst image is decompressed on the fly.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import stat
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from builder import log, testpoint
from builder.errors import die
from builder.run import child_process_group, require

BLOCK = 4 * 2**20
BLKGETSIZE64 = 0x80081272
BLKZEROOUT = 0x127F
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


@dataclass(frozen=True)
class WriteResult:
    size: int  # bytes of the image
    data_bytes: int  # bytes actually written
    zeroed_bytes: int  # bytes cleared with zero-out requests instead of writes
    seconds: float
    sha256: str


def image_size(image: Path) -> int:
    """The uncompressed size; for .zst it comes from the frame header that zstd writes for files."""
    if image.suffix != ".zst":
        return image.stat().st_size
    require("zstd")
    result = subprocess.run(["zstd", "-lv", str(image)], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        if "Decompressed Size:" in line:
            # "Decompressed Size: 2.00 GiB (2147483648 B)"
            return int(line.rsplit("(", 1)[1].split()[0])
    die(f"cannot tell the uncompressed size of {image}", hint="decompress it with 'zstd -d' and pass the .raw")


def target_size(target: Path) -> int:
    mode = os.stat(target).st_mode
    if stat.S_ISBLK(mode):
        with open(target, "rb") as handle:
            buffer = fcntl.ioctl(handle.fileno(), BLKGETSIZE64, b"\0" * 8)
        return int(struct.unpack("Q", buffer)[0])
    return os.stat(target).st_size


@contextmanager
def _source(image: Path) -> Iterator[IO[bytes]]:
    if image.suffix != ".zst":
        with image.open("rb") as handle:
            yield handle
        return
    process = subprocess.Popen([require("zstd"), "-dc", "--", str(image)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, process_group=child_process_group())
    assert process.stdout is not None
    finished = False
    try:
        yield process.stdout
        finished = True
    finally:
        process.stdout.close()
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        # A reader that stopped early (an error, an interrupt) made zstd fail on the closed pipe; only a
        # complete read says anything about the file, and the reader's own error must not be replaced.
        if process.wait() != 0 and finished:
            die(f"decompressing {image.name} failed: {stderr.strip()}", hint="check the file against SHA256SUMS")


def _zero(fd: int, offset: int, length: int, block_device: bool) -> None:
    if block_device:
        fcntl.ioctl(fd, BLKZEROOUT, struct.pack("QQ", offset, length))
    else:
        _punch_hole(fd, offset, length)


def _punch_hole(fd: int, offset: int, length: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    if libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)) != 0:
        # File systems without hole punching get the zeros written instead.
        os.pwrite(fd, bytes(length), offset)


def _read_exact(handle: IO[bytes], size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = handle.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def write_image(image: Path, target: Path, *, label: str = "Writing image") -> WriteResult:
    """Write image (raw or .zst) to target: a block device at least as large as the image, or a file."""
    size = image_size(image)
    block_device = target.exists() and stat.S_ISBLK(os.stat(target).st_mode)
    if block_device and (capacity := target_size(target)) < size:
        die(f"{target} has {capacity / 2**30:.2f} GiB but the image needs {size / 2**30:.2f} GiB",
            hint="use a larger disk")
    digest = hashlib.sha256()
    data_bytes = zeroed = offset = 0
    zero_block = bytes(BLOCK)
    progress = log.Progress(label, size)
    started = time.monotonic()
    flags = os.O_WRONLY | (0 if block_device else os.O_CREAT)
    fd = os.open(target, flags, 0o600)
    try:
        if not block_device and os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        with _source(image) as source:
            while offset < size:
                chunk = _read_exact(source, min(BLOCK, size - offset))
                if not chunk:
                    die(f"{image.name} ended after {offset} of {size} bytes", hint="check it against SHA256SUMS")
                digest.update(chunk)
                if chunk == zero_block[: len(chunk)]:
                    _zero(fd, offset, len(chunk), block_device)
                    zeroed += len(chunk)
                else:
                    os.pwrite(fd, chunk, offset)
                    data_bytes += len(chunk)
                offset += len(chunk)
                progress.update(offset)
                if offset * 2 >= size:
                    testpoint.reached("mid-write")
        os.fsync(fd)
    finally:
        os.close(fd)
    progress.finish()
    return WriteResult(size, data_bytes, zeroed, time.monotonic() - started, digest.hexdigest())


def read_back_sha256(target: Path, size: int, progress: log.Progress | None = None) -> str:
    """SHA-256 of the first `size` bytes of target as stored, bypassing the page cache where possible."""
    digest = hashlib.sha256()
    with open(target, "rb", buffering=0) as handle:
        # Drop cached pages so the hash is of what reached the target, not of what was just written.
        os.posix_fadvise(handle.fileno(), 0, size, os.POSIX_FADV_DONTNEED)
        done = 0
        while done < size:
            chunk = handle.read(min(BLOCK, size - done))
            if not chunk:
                break
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress.update(done)
    return digest.hexdigest()


def verify(target: Path, size: int, expected_sha256: str, *, label: str = "Verifying") -> None:
    """Read the first `size` bytes back and compare their hash with the image's."""
    progress = log.Progress(label, size)
    actual = read_back_sha256(target, size, progress)
    progress.finish()
    if actual != expected_sha256:
        die(f"{target} does not hold the image after writing (checksum mismatch)",
            hint="the device may be failing or in use elsewhere; nothing was started from it")
