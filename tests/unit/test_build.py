"""The build pipeline around mkosi, with a fake mkosi on PATH: argv, outputs, atomicity, failures."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import json
import lzma
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from unit.fakebin import FakeBin
from unit.tinydeb import make_deb

from builder import build, config, pin
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
controller = os.environ.get("FAKE_MKOSI_CONTROLLER", "1.34.0-1")
manifest = {"packages": [
    {"type": "deb", "name": "linstor-controller", "version": controller, "architecture": "all"},
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
    make_deb(debs, "linstor-controller", "1.34.0-1")
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


# -- the pinned --linstor-version: in the source before mkosi runs, installed after --------------------------------


def only_error_line(caught: pytest.ExceptionInfo[ApplianceError]) -> str:
    message = str(caught.value)
    assert "\n" not in message
    return message


def mkosi_builds(fakebin: FakeBin) -> list[list[str]]:
    return [c for c in fakebin.calls("mkosi") if c[-1] == "build"]


def test_version_missing_from_the_local_folder_stops_before_mkosi(
    tmp_path: Path, mirror: str, fake_mkosi: Path, fakebin: FakeBin
) -> None:
    debs = tmp_path / "debs"
    make_deb(debs, "linstor-controller", "1.34.0-1~standin1")
    make_deb(debs, "linstor-common", "9.9.9-1")  # another package at the asked version does not count
    cfg = make_config(tmp_path, mirror, debs, linstor_version="9.9.9")
    with pytest.raises(ApplianceError) as caught:
        build.build(cfg)
    assert only_error_line(caught) == (
        f"--linstor-version 9.9.9 is not in the folder {debs}, which has linstor-controller 1.34.0-1~standin1; "
        "pick one of those, or fill a local: folder with the 9.9.9 packages "
        "(see 'Building for an older LINSTOR version' in the README)")
    assert mkosi_builds(fakebin) == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("pin", "held", "ok"), [
    ("1.34.0", "1.34.0-1~standin1", True),  # a release matches any packaging of it
    ("1.34.0", "1:1.34.0-2", True),
    ("1.34.0-1", "1.34.0-1~standin1", False),  # a full Debian version only itself
    ("1.34.0-1", "1.34.0-1", True),
    ("1.34.0", "1.34.0~rc.1-1", False),  # a release candidate is another release
    ("1.33.3", "1.34.0-1", False),
])
def test_pin_matches_linstors_release_or_the_exact_debian_version(
    tmp_path: Path, mirror: str, fake_mkosi: Path, fakebin: FakeBin, monkeypatch: pytest.MonkeyPatch,
    pin: str, held: str, ok: bool,
) -> None:
    debs = tmp_path / "debs"
    make_deb(debs, "linstor-controller", held)
    monkeypatch.setenv("FAKE_MKOSI_CONTROLLER", held)
    cfg = make_config(tmp_path, mirror, debs, linstor_version=pin)
    if ok:
        build.build(cfg)
        manifest = json.loads((tmp_path / "out/manifest.json").read_text())
        assert manifest["linstor_controller"]["package_version"] == held
    else:
        with pytest.raises(ApplianceError, match=f"^--linstor-version {pin} is not in the folder"):
            build.build(cfg)
        assert mkosi_builds(fakebin) == []


def test_installed_version_other_than_the_pin_leaves_no_output(
    tmp_path: Path, mirror: str, fake_mkosi: Path, fakebin: FakeBin, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The source holds the pinned version, yet the image got another one (e.g. mkosi reused a cached image).
    debs = tmp_path / "debs"
    make_deb(debs, "linstor-controller", "1.33.3-1")
    monkeypatch.setenv("FAKE_MKOSI_CONTROLLER", "1.34.0-1")
    cfg = make_config(tmp_path, mirror, debs, linstor_version="1.33.3")
    with pytest.raises(ApplianceError) as caught:
        build.build(cfg)
    assert only_error_line(caught).startswith(
        "the image has linstor-controller 1.34.0-1 installed instead of the pinned 1.33.3, so no image was written;")
    assert len(mkosi_builds(fakebin)) == 1
    assert list((tmp_path / "out").iterdir()) == []


# LINBIT's and Launchpad's servers are not reachable from the tests: a loopback server plays the repository.


class Repository:
    """An apt repository served over HTTP on 127.0.0.1 from a folder (dists/<suite>/...)."""

    def __init__(self, root: Path, url: str, server: http.server.ThreadingHTTPServer) -> None:
        self.root, self.url, self.server = root, url, server

    def publish(self, suite: str, component: str, versions: list[str], index: str = "Packages.xz") -> None:
        (self.root / "dists" / suite).mkdir(parents=True, exist_ok=True)
        (self.root / "dists" / suite / "Release").write_text(f"Suite: {suite}\nComponents: {component}\n")
        paragraphs = [
            f"Package: linstor-controller\nVersion: {version}\nArchitecture: all\n"
            f"Depends: linstor-common (= {version}), tar\nDescription: LINSTOR controller\n"
            " continuation line: Version: 0.0.0\n"
            for version in versions
        ]
        # Another package at other versions must not be taken for the controller.
        paragraphs.append("Package: linstor-satellite\nVersion: 7.7.7-1\nArchitecture: all\n")
        text = "\n".join(paragraphs).encode()
        data = {"Packages.xz": lzma.compress, "Packages.gz": gzip.compress, "Packages": bytes}[index](text)
        binary = self.root / "dists" / suite / component / "binary-amd64"
        binary.mkdir(parents=True, exist_ok=True)
        (binary / index).write_bytes(data)


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[Repository]:
    root = tmp_path / "repository"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Repository(root, f"http://127.0.0.1:{server.server_address[1]}/linbit/", server)
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves /linbit/<path> from the folder; 'broken' in a path answers HTTP 500."""

    def translate_path(self, path: str) -> str:
        return super().translate_path(path.removeprefix("/linbit"))

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if "binary-amd64" in self.path and (Path(self.directory) / "broken").exists():
            self.send_error(500)
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def linbit_config(tmp_path: Path, mirror: str, url: str, **extra: object) -> config.Config:
    keyring = tmp_path / "linbit.asc"
    keyring.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
    return make_config(tmp_path, mirror, tmp_path, linstor_source=config.parse_linstor_source(f"linbit:{url}"),
                       linbit_keyring=keyring, **extra)


@pytest.mark.parametrize("index", ["Packages.xz", "Packages.gz", "Packages"])
def test_version_missing_from_linbits_repository_stops_before_mkosi(
    tmp_path: Path, mirror: str, fake_mkosi: Path, fakebin: FakeBin, repository: Repository, index: str
) -> None:
    repository.publish("proxmox-9", "drbd-9", ["1.33.3-1", "1.34.0-1", "1.32.3-1"], index)
    cfg = linbit_config(tmp_path, mirror, repository.url, linstor_version="1.31.0")
    with pytest.raises(ApplianceError) as caught:
        build.build(cfg)
    assert only_error_line(caught).startswith(
        f"--linstor-version 1.31.0 is not in LINBIT's package repository ({repository.url.rstrip('/')} "
        "proxmox-9/drbd-9), which has linstor-controller 1.32.3-1, 1.33.3-1, 1.34.0-1; pick one of those")
    assert mkosi_builds(fakebin) == []
    assert not (tmp_path / "out").exists()


def test_version_in_linbits_repository_is_built_from_there(
    tmp_path: Path, mirror: str, fake_mkosi: Path, fakebin: FakeBin, repository: Repository
) -> None:
    repository.publish("proxmox-9", "drbd-9", ["1.33.3-1", "1.34.0-1"])
    build.build(linbit_config(tmp_path, mirror, repository.url, linstor_version="1.34.0"))
    assert len(mkosi_builds(fakebin)) == 1
    # The image's apt source is the repository the version was found in.
    assert f"URIs: {repository.url}" in (fake_mkosi / "extra/etc/apt/sources.list.d/linbit.sources").read_text()


def test_version_missing_from_the_ppa_stops_before_mkosi(
    tmp_path: Path, mirror: str, fake_mkosi: Path, fakebin: FakeBin, repository: Repository
) -> None:
    # Launchpad keeps only the newest version of a package in a PPA.
    repository.publish("noble", "main", ["1.34.0-1ppa1~noble1"], "Packages.gz")
    (Path(mirror.removeprefix("file://")) / "dists/noble").mkdir()
    (Path(mirror.removeprefix("file://")) / "dists/noble/Release").write_text("Suite: noble\n")
    cfg = linbit_config(tmp_path, mirror, repository.url, linstor_version="1.33.3")
    cfg = dataclasses.replace(cfg, distribution=config.Distribution.ubuntu, release="noble")
    with pytest.raises(ApplianceError) as caught:
        build.build(cfg)
    assert only_error_line(caught).startswith(
        f"--linstor-version 1.33.3 is not in the LINBIT PPA ({repository.url.rstrip('/')} noble/main), "
        "which has linstor-controller 1.34.0-1ppa1~noble1; pick one of those, or fill a local: folder")
    assert mkosi_builds(fakebin) == []


def test_unreadable_package_index_is_one_line(
    tmp_path: Path, mirror: str, fake_mkosi: Path, fakebin: FakeBin, repository: Repository
) -> None:
    repository.publish("proxmox-9", "drbd-9", ["1.34.0-1"])
    (repository.root / "broken").touch()
    with pytest.raises(ApplianceError) as caught:
        build.build(linbit_config(tmp_path, mirror, repository.url, linstor_version="1.34.0"))
    assert only_error_line(caught).startswith(
        f"LINBIT's package repository ({repository.url.rstrip('/')} proxmox-9/drbd-9) answered HTTP 500 for "
        f"{repository.url}dists/proxmox-9/drbd-9/binary-amd64/Packages.xz; check the network")
    (repository.root / "broken").unlink()
    shutil.rmtree(repository.root / "dists/proxmox-9/drbd-9")
    with pytest.raises(ApplianceError) as caught:
        build.build(linbit_config(tmp_path, mirror, repository.url, linstor_version="1.34.0"))
    assert only_error_line(caught).startswith(
        f"LINBIT's package repository ({repository.url.rstrip('/')} proxmox-9/drbd-9) has no package index at "
        f"{repository.url}dists/proxmox-9/drbd-9/binary-amd64/Packages;")
    assert mkosi_builds(fakebin) == []


def test_unreachable_index_is_one_line(tmp_path: Path, mirror: str, fake_mkosi: Path, fakebin: FakeBin) -> None:
    cfg = linbit_config(tmp_path, mirror, "http://127.0.0.1:9/linbit/", linstor_version="1.34.0")
    with pytest.raises(ApplianceError) as caught:
        pin.check_available(cfg)
    assert only_error_line(caught).startswith(
        "LINBIT's package repository (http://127.0.0.1:9/linbit proxmox-9/drbd-9) is unreachable "
        "(http://127.0.0.1:9/linbit/dists/proxmox-9/drbd-9/binary-amd64/Packages.xz: ")
    assert mkosi_builds(fakebin) == []
