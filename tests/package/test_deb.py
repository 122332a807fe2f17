"""make deb: the package builds reproducibly, passes lintian, and installs, runs, removes and purges
cleanly in minimal Debian 12 and 13 roots (the Proxmox VE 8 and 9 bases) made from Debian's archive."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import require_root

from builder import __version__
from package import roots

pytestmark = pytest.mark.package

PROJECT = Path(__file__).resolve().parents[2]
NAME = f"linstor-appliance_{__version__}_all.deb"
PAGES = ("linstor-appliance", "linstor-appliance-build", "linstor-appliance-boot", "linstor-appliance-deploy",
         "linstor-appliance-coldstart", "linstor-appliance-backup", "linstor-appliance-restore",
         "linstor-appliance-upgrade")  # fmt: skip
TIMER = "linstor-coldstart-retry.timer"
UNITS = ("linstor-coldstart-retry.service", TIMER, "linstor-appliance-backup.service",
         "linstor-appliance-backup.timer")


def build(outdir: Path) -> Path:
    result = subprocess.run([sys.executable, str(PROJECT / "tools/make-deb"), str(outdir)], capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return outdir / NAME


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root()
    for tool in ("dpkg-buildpackage", "dh_python3", "lintian", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing; 'make host-deps' installs it")
    return build(tmp_path_factory.mktemp("deb"))


def contents(deb: Path) -> dict[str, str]:
    """Path in the package -> its mode string."""
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].removeprefix("./").rstrip("/"): line.split()[0] for line in listing.splitlines()
            if "->" not in line}  # fmt: skip


def test_the_same_source_builds_the_same_bytes(deb: Path, tmp_path: Path) -> None:
    again = build(tmp_path)
    assert again.read_bytes() == deb.read_bytes()


def test_the_package_carries_the_tool_its_pages_completion_and_units(deb: Path) -> None:
    files = contents(deb)
    assert files["usr/bin/linstor-appliance"].startswith("-rwxr-xr-x")
    for page in PAGES:
        assert f"usr/share/man/man1/{page}.1.gz" in files, page
    assert "usr/share/bash-completion/completions/linstor-appliance" in files
    for unit in UNITS:
        assert {f"lib/systemd/system/{unit}", f"usr/lib/systemd/system/{unit}"} & files.keys(), unit
    for module in ("builder/cli.py", "builder/deploy/runner.py", "linstor/linstorapi.py", "netplan/config.yaml.j2",
                   "image/templates/deploy/nftables.conf.j2"):  # fmt: skip
        assert f"usr/lib/linstor-appliance/{module}" in files, module
    # Byte code is compiled on the node (py3compile) and removed with the package (py3clean).
    assert not [name for name in files if name.endswith(".pyc") or "__pycache__" in name]
    depends = roots.depends(deb)
    assert "python3-jinja2" in depends and "python3" in depends
    assert not [name for name in depends if "linstor" in name], "python-linstor is bundled, not a dependency"


def test_lintian_reports_no_errors_or_warnings(deb: Path) -> None:
    result = subprocess.run(["lintian", "--allow-root", "--fail-on", "error,warning", str(deb)], capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [line for line in result.stdout.splitlines() if line.startswith(("E:", "W:"))], result.stdout


@pytest.mark.parametrize("suite", ["bookworm", "trixie"])
def test_install_run_remove_and_purge_in_a_minimal_debian(deb: Path, suite: str, tmp_path: Path) -> None:
    root = roots.extract(roots.tarball(suite, roots.depends(deb)), tmp_path / suite)
    before = roots.snapshot(root)
    shutil.copyfile(deb, root / "tmp" / deb.name)
    roots.chroot(root, "apt-get", "install", "-y", "--no-install-recommends", f"/tmp/{deb.name}")

    # The tool runs on the root's own python3; --help imports every subcommand (python-linstor too).
    assert roots.chroot(root, "linstor-appliance", "--version").stdout.strip() == f"linstor-appliance {__version__}"
    usage = roots.chroot(root, "linstor-appliance", "--help").stdout
    assert all(command in usage for command in ("build", "boot", "deploy", "coldstart")), usage
    assert "--vmid" in roots.chroot(root, "linstor-appliance", "deploy", "--help").stdout
    page = roots.chroot(root, "man", "linstor-appliance-deploy").stdout
    assert "LINSTOR-APPLIANCE-DEPLOY(1)" in page and "vmid" in page and "rollback" in page, page[:2000]
    assert "linstor-appliance-coldstart(1)" in roots.chroot(root, "man", "linstor-appliance").stdout
    assert (root / "usr/lib/linstor-appliance/builder/__pycache__").is_dir()

    # Shipped disabled; what a command that needs the timer does: enable it, and configure it.
    assert roots.chroot(root, "systemctl", "is-enabled", TIMER, check=False).stdout.strip() == "disabled"
    roots.chroot(root, "systemctl", "enable", TIMER)
    assert roots.chroot(root, "systemctl", "is-enabled", TIMER, check=False).stdout.strip() == "enabled"
    config = {"etc/linstor-appliance/coldstart.conf": "BOOT_WAIT=300\n",
              f"etc/systemd/system/{TIMER}.d/interval.conf": "[Timer]\nOnUnitActiveSec=30s\n"}  # fmt: skip
    data = {"var/lib/linstor-appliance/deploy-100.json": "{}\n",
            "var/lib/linstor-appliance/backup-100-20261130T010000/SHA256SUMS": "\n"}  # fmt: skip
    for relative, text in {**config, **data}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)

    # Guests' hookscripts run the tool while cold start is installed: removing it then is refused, and the
    # package stays as it was.
    record = root / "var/lib/linstor-coldstart/installed.json"
    record.parent.mkdir()
    record.write_text("{}\n")
    refused = roots.chroot(root, "apt-get", "remove", "-y", "linstor-appliance", check=False)
    assert refused.returncode != 0
    assert ("linstor-appliance: cold-start support is installed on this node; run 'linstor-appliance coldstart "
            "remove' first") in refused.stdout + refused.stderr  # fmt: skip
    status = roots.chroot(root, "dpkg-query", "-W", "-f=${Status}", "linstor-appliance").stdout
    assert status.endswith(" ok installed"), status
    assert roots.chroot(root, "linstor-appliance", "--version").returncode == 0
    assert roots.chroot(root, "systemctl", "is-enabled", TIMER, check=False).stdout.strip() == "enabled"
    record.unlink()
    record.parent.rmdir()

    roots.chroot(root, "apt-get", "remove", "-y", "linstor-appliance")
    # Only the configuration and the data are left: no program, no unit file, no link to a unit.
    assert added(before, roots.snapshot(root)) == paths_of({**config, **data})
    assert roots.chroot(root, "systemctl", "is-enabled", TIMER, check=False).returncode != 0

    roots.chroot(root, "apt-get", "purge", "-y", "linstor-appliance")
    # Journals and backups are data: purge keeps them.
    assert added(before, roots.snapshot(root)) == paths_of(data)
    assert all((root / relative).read_text() == text for relative, text in data.items())


def test_remove_leaves_alone_a_unit_of_the_same_name_in_etc(deb: Path, tmp_path: Path) -> None:
    """The zipapp's coldstart install writes its own retry units into /etc/systemd/system: they are not the
    package's, and removing the package must not disable cold start there."""
    root = roots.extract(roots.tarball("bookworm", roots.depends(deb)), tmp_path / "root")
    shutil.copyfile(deb, root / "tmp" / deb.name)
    roots.chroot(root, "apt-get", "install", "-y", "--no-install-recommends", f"/tmp/{deb.name}")
    own = root / "etc/systemd/system" / TIMER
    own.write_text((root / "lib/systemd/system" / TIMER).read_text().replace("15s", "30s"))
    roots.chroot(root, "systemctl", "enable", TIMER)
    link = root / "etc/systemd/system/timers.target.wants" / TIMER
    assert os.readlink(link) == f"/etc/systemd/system/{TIMER}"
    roots.chroot(root, "apt-get", "purge", "-y", "linstor-appliance")
    assert own.is_file() and os.readlink(link) == f"/etc/systemd/system/{TIMER}"
    assert roots.chroot(root, "systemctl", "is-enabled", TIMER, check=False).stdout.strip() == "enabled"


def added(before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
    """What is in `after` that was not in `before`; nothing that was there may be gone or changed kind."""
    assert {path: kind for path, kind in before.items() if after.get(path) != kind} == {}
    return {path: kind for path, kind in after.items() if path not in before}


def paths_of(files: dict[str, str]) -> dict[str, str]:
    """The files and the directories that hold them, as roots.snapshot() lists them."""
    found = {relative: "file" for relative in files}
    for relative in files:
        for parent in Path(relative).parents:
            if str(parent) not in (".", "etc", "var", "var/lib", "etc/systemd", "etc/systemd/system"):
                found[str(parent)] = "dir"
    return found


def test_root_snapshot_sees_links_and_files(tmp_path: Path) -> None:
    """The comparison above is only as good as the snapshot: a leftover link or file must show up."""
    (tmp_path / "etc/systemd/system/timers.target.wants").mkdir(parents=True)
    os.symlink("/lib/systemd/system/x.timer", tmp_path / "etc/systemd/system/timers.target.wants/x.timer")
    (tmp_path / "var/cache").mkdir(parents=True)
    (tmp_path / "var/cache/ignored").write_text("")
    assert roots.snapshot(tmp_path) == {
        "etc": "dir", "etc/systemd": "dir", "etc/systemd/system": "dir",
        "etc/systemd/system/timers.target.wants": "dir",
        "etc/systemd/system/timers.target.wants/x.timer": "-> /lib/systemd/system/x.timer", "var": "dir",
    }  # fmt: skip
