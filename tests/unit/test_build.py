"""The build pipeline around mkosi, with a fake mkosi on PATH: argv, outputs, atomicity, failures."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from unit.fakebin import FakeBin

from builder import build, config
from builder.errors import ApplianceError

# A stand-in for mkosi: answers --version, and for 'build' copies the rendered trees aside (for the test
# to inspect) and writes a small GPT disk plus mkosi's JSON manifest into --output-dir.
FAKE_MKOSI = r"""
import shutil, subprocess
if argv == ["--version"]:
    print("mkosi 24.3"); sys.exit(0)
if os.environ.get("FAKE_MKOSI_FAIL"):
    print("‣ Installing Debian"); print("E: Unable to locate package linstor-controller"); sys.exit(100)
opts = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
seen = os.environ["FAKE_MKOSI_SEEN"]
shutil.copytree(opts["--extra-tree"], seen + "/extra")
shutil.copytree(opts["--package-manager-tree"], seen + "/pkgmngr")
shutil.copy(opts["--env-file"], seen + "/build.env")
out = opts["--output-dir"]
os.makedirs(out, exist_ok=True)
raw = out + "/linstor-controller.raw"
with open(raw, "wb") as f:
    f.truncate(int(os.environ.get("FAKE_MKOSI_SIZE", str(64 * 2**20))))
subprocess.run(["sfdisk", "--quiet", raw], input="label: gpt\n,,L\n", text=True, check=True)
print("‣ Building linstor-controller image")
manifest = {"packages": [
    {"type": "deb", "name": "linstor-controller", "version": "1.34.0-1", "architecture": "all"},
    {"type": "deb", "name": "linux-image-6.12.1+deb13-cloud-amd64", "version": "6.12.1-1", "architecture": "amd64"},
]}
open(out + "/linstor-controller.manifest", "w").write(json.dumps(manifest))
"""


@pytest.fixture(autouse=True)
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build's root check passes: mkosi is a fake here, so nothing needs root (test_not_root undoes this)."""
    monkeypatch.setattr(build.os, "geteuid", lambda: 0)


@pytest.fixture
def mirror(tmp_path: Path) -> str:
    release = tmp_path / "mirror/dists/trixie/Release"
    release.parent.mkdir(parents=True)
    release.write_text("Suite: trixie\n")
    return f"file://{tmp_path}/mirror"


@pytest.fixture
def local_debs(tmp_path: Path) -> Path:
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "linstor-controller_1.34.0-1_all.deb").write_bytes(b"")
    return debs


@pytest.fixture
def fake_mkosi(fakebin: FakeBin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fakebin.add("mkosi", FAKE_MKOSI)
    seen = tmp_path / "seen"
    seen.mkdir()
    monkeypatch.setenv("FAKE_MKOSI_SEEN", str(seen))
    return seen


def make_config(tmp_path: Path, mirror: str, debs: Path, **extra: object) -> config.Config:
    values = {
        "distribution": config.Distribution.debian,
        "mirror": mirror,
        "linstor_source": config.LinstorSource("local", debs),
        "output_dir": tmp_path / "out",
        "cache_dir": tmp_path / "cache",
        "disk_size": 2**30,
        **extra,
    }
    return config.finalize(values)


def test_build_passes_configuration_to_mkosi(
    tmp_path: Path, mirror: str, local_debs: Path, fake_mkosi: Path, fakebin: FakeBin
) -> None:
    cfg = make_config(tmp_path, mirror, local_debs, hostname="ctrl1")
    build.build(cfg)
    argv = next(c for c in fakebin.calls("mkosi") if c[-1] == "build")
    pairs = dict(zip(argv, argv[1:], strict=False))
    assert pairs["--distribution"] == "debian"
    assert pairs["--release"] == "trixie"
    assert pairs["--hostname"] == "ctrl1"
    assert pairs["--mirror"] == mirror
    assert pairs["--package-directory"] == str(local_debs)
    assert pairs["--cache-dir"].startswith(str(tmp_path / "cache"))
    assert pairs["--directory"].endswith("/image")
    # The password hash travels in a 0600 file, never on a command line.
    assert not any("$6$" in a for a in argv)
    env = (fake_mkosi / "build.env").read_text()
    assert "APPLIANCE_PASSWORD_HASH=$6$" in env and "APPLIANCE_PASSWORD_EXPIRED=yes" in env


def test_build_outputs_are_complete_and_checksummed(
    tmp_path: Path, mirror: str, local_debs: Path, fake_mkosi: Path
) -> None:
    cfg = make_config(tmp_path, mirror, local_debs)
    outputs = build.build(cfg)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "SHA256SUMS", "linstor-controller.raw", "linstor-controller.raw.zst", "manifest.json"]
    assert outputs.image.stat().st_size == cfg.disk_size
    # Extending the disk must keep a valid GPT (backup header moved to the new end).
    verify = subprocess.run(["sfdisk", "--verify", str(outputs.image)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    table = json.loads(subprocess.run(["sfdisk", "--json", str(outputs.image)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    # The usable area (and so the backup GPT right after it) ends at the new end of the disk, not the old one.
    assert table["lastlba"] == cfg.disk_size // 512 - 34
    manifest = json.loads(outputs.manifest.read_text())
    assert manifest["linstor_controller"] == {"version": "1.34.0", "package_version": "1.34.0-1"}
    assert manifest["kernel"] == "6.12.1+deb13-cloud-amd64"
    assert manifest["distribution"] == "debian" and manifest["release"] == "trixie"
    assert manifest["sizes"]["virtual"] == cfg.disk_size
    assert manifest["configuration"]["hostname"] == "linstor-controller"
    check = subprocess.run(["sha256sum", "--check", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    unpacked = subprocess.run(["zstd", "-dc", str(outputs.compressed)], capture_output=True, check=True).stdout
    assert hashlib.sha256(unpacked).hexdigest() == hashlib.sha256(outputs.image.read_bytes()).hexdigest()


def test_rendered_files_reach_the_image_tree(
    tmp_path: Path, mirror: str, local_debs: Path, fake_mkosi: Path
) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0uI1XKfzTq8mUq8y3Yv3p0tMZkXWq0m1l3K2b6cYx a@b"
    cfg = make_config(tmp_path, mirror, local_debs, ssh_authorized_keys=(key,), linstor_version="1.34.0")
    build.build(cfg)
    extra = fake_mkosi / "extra"
    assert (extra / "etc/netplan/config.yaml").stat().st_mode & 0o777 == 0o600
    assert (extra / "etc/ssh/authorized_keys.d/linbit").read_text() == key + "\n"
    assert "Pin: version 1.34.0*" in (extra / "etc/apt/preferences.d/linstor.pref").read_text()
    # Build-time apt sources replace mkosi's own (which include the debug archive) and never reach the image.
    assert "URIs: " + mirror in (fake_mkosi / "pkgmngr/etc/apt/sources.list.d/mkosi.sources").read_text()
    assert not (extra / "etc/apt/sources.list.d/mkosi.sources").exists()


def test_failed_mkosi_leaves_no_output(
    tmp_path: Path, mirror: str, local_debs: Path, fake_mkosi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MKOSI_FAIL", "1")
    cfg = make_config(tmp_path, mirror, local_debs)
    with pytest.raises(ApplianceError) as caught:
        build.build(cfg)
    assert "Unable to locate package linstor-controller" in str(caught.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_image_larger_than_disk_is_refused(
    tmp_path: Path, mirror: str, local_debs: Path, fake_mkosi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MKOSI_SIZE", str(2**30 + 2**20))
    cfg = make_config(tmp_path, mirror, local_debs)
    with pytest.raises(ApplianceError) as caught:
        build.build(cfg)
    assert str(caught.value) == "the image needs 1.00 GiB but the disk size is 1.00 GiB; use --disk-size 2G or more"
    assert list((tmp_path / "out").iterdir()) == []


def test_unreachable_mirror_stops_before_mkosi(
    tmp_path: Path, local_debs: Path, fake_mkosi: Path, fakebin: FakeBin
) -> None:
    cfg = make_config(tmp_path, "http://127.0.0.1:9/debian", local_debs)
    with pytest.raises(ApplianceError) as caught:
        build.build(cfg)
    assert "mirror http://127.0.0.1:9/debian is unreachable" in str(caught.value)
    assert [c for c in fakebin.calls("mkosi") if c[-1] == "build"] == []
    assert not (tmp_path / "out").exists()


def test_missing_host_tool_names_the_package(
    tmp_path: Path, mirror: str, local_debs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("qemu-img", "zstd", "sfdisk", "openssl"):
        found = shutil.which(tool)
        assert found
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    cfg = make_config(tmp_path, mirror, local_debs)
    with pytest.raises(ApplianceError) as caught:
        build.build(cfg)
    assert str(caught.value).startswith("'mkosi' is not installed on this host; install the package mkosi")


def test_not_root(tmp_path: Path, mirror: str, local_debs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.os, "geteuid", lambda: 1000)
    with pytest.raises(ApplianceError, match="building the image needs root"):
        build.build(make_config(tmp_path, mirror, local_debs))


def test_wrong_mkosi_version(
    tmp_path: Path, mirror: str, local_debs: Path, fakebin: FakeBin
) -> None:
    fakebin.add("mkosi", 'print("mkosi 14")\n')
    with pytest.raises(ApplianceError, match="needs mkosi 24.x, found 'mkosi 14'"):
        build.build(make_config(tmp_path, mirror, local_debs))
