"""Package a finished raw image in one pass: its SHA-256, its .zst and the .zst's SHA-256, reading it once.

The raw image is the VM disk's full size but mostly holes, and mkosi writes the free space of the root
file system out as zeros. So the image is read extent by extent (SEEK_DATA/SEEK_HOLE): holes are fed to
the hash and to zstd as zeros without reading anything, data is read once and feeds both, and zero runs
found in the data are punched out of the file, so the image allocates only what it holds. zstd runs on
every core while this process hashes; a second thread hashes zstd's output on its way to the file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import queue
import shlex
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from builder import log
from builder.errors import die
from builder.run import require

CHUNK = 4 * 2**20
# The granule in which zeros inside data extents are found and punched out: a multiple of the file
# system block, small enough to catch ext4's zeroed inode tables and free space between files.
GRANULE = 64 * 2**10
# zstd's level: the compressed image is what is copied around, but this runs on every build; level 3
# compresses the appliance within a few seconds on two cores, where -10 took half a minute.
ZSTD_LEVEL = 3
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
ZEROS = bytes(CHUNK)
ZERO_GRANULE = bytes(GRANULE)
# Pieces read but not hashed yet: enough to ride out a slow moment of either side, little memory.
HASH_QUEUE = 4
PIPE_SIZE = 2**20

if TYPE_CHECKING:
    from hashlib import _Hash


@dataclass(frozen=True)
class Packed:
    sha256: str  # of the raw image
    compressed: Path
    compressed_sha256: str
    punched_bytes: int  # zeros in data extents that no longer take space


def extents(fd: int, size: int) -> Iterator[tuple[int, int, bool]]:
    """(offset, length, is_data) runs covering [0, size); a file system without SEEK_DATA gives one data run."""
    offset = 0
    while offset < size:
        try:
            data = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:  # only a hole is left
                yield offset, size - offset, False
                return
            if error.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield offset, size - offset, True
                return
            raise
        if data > offset:
            yield offset, data - offset, False
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        yield data, hole - data, True
        offset = hole


def zero_runs(chunk: bytes | bytearray, base: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of the all-zero granules of a chunk read at file offset base, adjacent ones merged."""
    size = len(chunk)
    if size and chunk == ZEROS[:size]:
        yield base, size
        return
    view = memoryview(chunk)
    start = None
    for index in range(0, size - size % GRANULE, GRANULE):
        # Comparing bytes is a memcmp; comparing memoryviews goes element by element.
        zero = bytes(view[index:index + GRANULE]) == ZERO_GRANULE
        if zero and start is None:
            start = index
        elif not zero and start is not None:
            yield base + start, index - start
            start = None
    if start is not None:
        yield base + start, size - size % GRANULE - start


class _Puncher:
    """Punches holes; on a file system that cannot, the image simply keeps its zeros."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.works = True
        self.punched = 0

    def punch(self, fd: int, offset: int, length: int) -> None:
        if not self.works:
            return
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        if self.libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)) != 0:
            self.works = False
            log.debug(f"cannot punch holes here ({os.strerror(ctypes.get_errno())}); the zeros stay allocated")
            return
        self.punched += length


def pack(image: Path, level: int = ZSTD_LEVEL) -> Packed:
    """Hash image, write image.zst (with the size in its frame header) and hash that, in one read of image."""
    target = image.with_name(image.name + ".zst")
    size = image.stat().st_size
    argv = [require("zstd"), "-q", f"-{level}", "-T0", f"--stream-size={size}", "-c", "-"]
    log.debug(f"+ {shlex.join(argv)} < {image} > {target}")
    raw_digest, zst_digest = hashlib.sha256(), hashlib.sha256()
    puncher = _Puncher()
    failure: list[BaseException] = []
    with target.open("wb") as sink, subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                     stderr=subprocess.PIPE) as zstd:
        assert zstd.stdin is not None and zstd.stdout is not None and zstd.stderr is not None
        _widen(zstd.stdin, zstd.stdout)
        drain = threading.Thread(target=_copy_out, args=(zstd.stdout, sink, zst_digest, failure),
                                 name="zstd-output", daemon=True)
        drain.start()
        fd = os.open(image, os.O_RDWR)
        try:
            _feed(fd, size, zstd.stdin, raw_digest, puncher)
        except BrokenPipeError:
            pass  # zstd stopped early; its exit code and message below say why
        finally:
            os.close(fd)
            zstd.stdin.close()
        drain.join()
        errors = zstd.stderr.read().decode(errors="replace").strip()
        code = zstd.wait()
    if code != 0:
        die(f"compressing {image.name} failed: {errors or f'zstd exited with {code}'}",
            hint="check the free space in the output directory")
    if failure:
        raise failure[0]
    return Packed(raw_digest.hexdigest(), target, zst_digest.hexdigest(), puncher.punched)


def _feed(fd: int, size: int, sink: IO[bytes], digest: _Hash, puncher: _Puncher) -> None:
    # The raw image's hash runs in a thread of its own (hashlib lets go of the GIL), so hashing a piece
    # overlaps with handing it to zstd instead of keeping zstd waiting.
    pieces: queue.Queue[bytes | None] = queue.Queue(maxsize=HASH_QUEUE)
    hasher = threading.Thread(target=_hash_all, args=(pieces, digest), name="raw-sha256", daemon=True)
    hasher.start()
    try:
        for offset, length, is_data in extents(fd, size):
            end = offset + length
            while offset < end:
                count = min(CHUNK, end - offset)
                if is_data:
                    piece = os.pread(fd, count, offset)
                    if len(piece) != count:
                        die(f"the image ended early at {offset + len(piece)} bytes", hint="build it again")
                    for start, run in zero_runs(piece, offset):
                        puncher.punch(fd, start, run)
                else:
                    piece = ZEROS if count == CHUNK else ZEROS[:count]
                pieces.put(piece)
                sink.write(piece)
                offset += count
    finally:
        pieces.put(None)
        hasher.join()


def _widen(*pipes: IO[bytes]) -> None:
    """Pipes of 1 MiB instead of 64 KiB: gigabytes pass through them, and each refill is a context switch."""
    for pipe in pipes:
        with contextlib.suppress(OSError):  # above the system's pipe-max-size: the default stays
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_SIZE)


def _hash_all(pieces: queue.Queue[bytes | None], digest: _Hash) -> None:
    while (piece := pieces.get()) is not None:
        digest.update(piece)


def _copy_out(source: IO[bytes], sink: IO[bytes], digest: _Hash, failure: list[BaseException]) -> None:
    try:
        while chunk := source.read(2**20):
            digest.update(chunk)
            sink.write(chunk)
    except OSError as error:
        failure.append(error)
