"""Packaging an image in one pass: checksums and .zst as the separate tools make them, zeros no longer allocated."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from builder import imagepack, imagewrite

MiB = 2**20


def sparse_image(path: Path) -> Path:
    """An image like mkosi's: data, then zeros written out (free space), more data, then a long hole."""
    with path.open("wb") as handle:
        handle.write(os.urandom(3 * MiB + 512))  # ends inside a granule
        handle.write(bytes(9 * MiB))  # written zeros, larger than one read chunk
        handle.write(b"\x01" * 4096 + bytes(200 * 1024) + os.urandom(5000))  # zeros between small data
        handle.truncate(64 * MiB)  # a hole to the end
    return path


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_checksums_and_compressed_image_match_the_tools(tmp_path: Path) -> None:
    image = sparse_image(tmp_path / "disk.raw")
    expected = hashlib.sha256(image.read_bytes()).hexdigest()
    packed = imagepack.pack(image)
    assert packed.sha256 == expected
    assert packed.compressed == tmp_path / "disk.raw.zst"
    assert packed.compressed_sha256 == hashlib.sha256(packed.compressed.read_bytes()).hexdigest()
    unpacked = subprocess.run(["zstd", "-dc", str(packed.compressed)], capture_output=True, check=True).stdout
    assert hashlib.sha256(unpacked).hexdigest() == expected
    # The deploy reads the uncompressed size from the frame header; a stream must still carry it.
    assert imagewrite.image_size(packed.compressed) == 64 * MiB


def test_zeros_written_into_the_image_stop_taking_space(tmp_path: Path) -> None:
    image = sparse_image(tmp_path / "disk.raw")
    before = allocated(image)
    content = image.read_bytes()
    packed = imagepack.pack(image)
    assert image.read_bytes() == content, "punching holes must not change a byte"
    assert packed.punched_bytes >= 9 * MiB
    assert allocated(image) <= before - 9 * MiB
    # What is left allocated is about the data: 3 MiB + 4 KiB + 5000 bytes, rounded to granules.
    assert allocated(image) < 4 * MiB + 3 * imagepack.GRANULE


@pytest.mark.parametrize("size", [0, 1, imagepack.GRANULE - 1, imagepack.GRANULE, imagepack.CHUNK + 7])
def test_zero_runs_cover_only_whole_zero_granules(size: int) -> None:
    data = bytearray(size)
    if size > imagepack.GRANULE:
        data[imagepack.GRANULE] = 1  # the second granule holds data
    runs = list(imagepack.zero_runs(bytes(data), 1000))
    for start, length in runs:
        assert not any(data[start - 1000:start - 1000 + length])
        assert length % imagepack.GRANULE == 0 or (start == 1000 and length == size)
    covered = sum(length for _, length in runs)
    if size and not any(data):
        assert runs == [(1000, size)]
    elif size > imagepack.GRANULE:
        assert covered == size - size % imagepack.GRANULE - imagepack.GRANULE


def test_extents_describe_holes_and_data(tmp_path: Path) -> None:
    image = sparse_image(tmp_path / "disk.raw")
    fd = os.open(image, os.O_RDONLY)
    try:
        runs = list(imagepack.extents(fd, image.stat().st_size))
    finally:
        os.close(fd)
    assert runs[0][0] == 0 and runs[0][2] is True
    assert sum(length for _, length, _ in runs) == 64 * MiB
    assert runs[-1][2] is False, "the unwritten end of the disk is a hole and is not read"
