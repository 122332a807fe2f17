"""Writing an image onto a disk: byte-identical results, zeros not written, .zst streamed, bad targets refused."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder import imagewrite
from builder.errors import ApplianceError

MIB = 2**20


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A sparse 64 MiB 'disk' with data at the start, in the middle and in the last block."""
    path = tmp_path / "disk.raw"
    with path.open("wb") as handle:
        handle.truncate(64 * MIB)
        for offset in (0, 30 * MIB + 123, 64 * MIB - 4096):
            handle.seek(offset)
            handle.write(os.urandom(4096))
    return path


def read(path: Path, size: int) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def test_raw_to_file_is_identical_and_sparse(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.raw"
    target.write_bytes(b"")
    result = imagewrite.write_image(image, target)
    assert read(target, result.size) == image.read_bytes()
    # Only the three 4 MiB blocks holding data were written; the rest became holes.
    assert result.data_bytes == 3 * imagewrite.BLOCK
    assert result.zeroed_bytes == 64 * MIB - result.data_bytes
    assert os.stat(target).st_blocks * 512 <= 3 * imagewrite.BLOCK
    imagewrite.verify(target, result.size, result.sha256)


def test_zst_is_decompressed_while_writing(image: Path, tmp_path: Path) -> None:
    compressed = tmp_path / "disk.raw.zst"
    subprocess.run(["zstd", "-q", str(image), "-o", str(compressed)], check=True)
    target = tmp_path / "target.raw"
    target.write_bytes(b"")
    result = imagewrite.write_image(compressed, target)
    assert result.size == 64 * MIB
    assert read(target, result.size) == image.read_bytes()


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    backing = tmp_path / "loop.img"
    # Old contents everywhere: zero regions of the image must really be zeroed on the device.
    backing.write_bytes(os.urandom(80 * MIB))
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        yield Path(device)
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def test_block_device_with_old_data_ends_up_identical(image: Path, loop_device: Path) -> None:
    result = imagewrite.write_image(image, loop_device)
    assert result.zeroed_bytes > 0
    assert read(loop_device, result.size) == image.read_bytes()
    imagewrite.verify(loop_device, result.size, result.sha256)


def test_device_too_small_is_refused_and_untouched(tmp_path: Path, loop_device: Path) -> None:
    big = tmp_path / "big.raw"
    with big.open("wb") as handle:
        handle.truncate(96 * MIB)
    before = read(loop_device, 80 * MIB)
    with pytest.raises(ApplianceError, match="has 0.08 GiB but the image needs 0.09 GiB"):
        imagewrite.write_image(big, loop_device)
    assert read(loop_device, 80 * MIB) == before


def test_verify_detects_a_changed_byte(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.raw"
    target.write_bytes(b"")
    result = imagewrite.write_image(image, target)
    with target.open("r+b") as handle:
        handle.seek(30 * MIB + 200)
        handle.write(b"\xff")
    with pytest.raises(ApplianceError, match="checksum mismatch"):
        imagewrite.verify(target, result.size, result.sha256)
