"""Render the per-build files: the image's extra tree and the package manager tree for mkosi.

Both are plain directories so that what goes into the image can be read before it is built.
"""

from __future__ import annotations

from pathlib import Path

from builder import sources
from builder.config import Config, Distribution
from builder.deploy import firewall
from builder.resources import render


def network_values(config: Config) -> dict[str, object]:
    return {
        "network": str(config.network),
        "address": str(config.address) if config.address else None,
        "gateway": str(config.gateway) if config.gateway else None,
        "dns": list(config.dns),
        "search_domains": list(config.search_domains),
    }


def netplan_config(config: Config) -> str:
    return render("netplan/config.yaml.j2", **network_values(config))


def distribution_sources(config: Config) -> str:
    name = "debian" if config.distribution is Distribution.debian else "ubuntu"
    return render(f"image/templates/apt/{name}.sources.j2", mirror=config.mirror, release=config.release)


# What the appliance serves: SSH and the controller's REST API (HTTP, HTTPS) on LINSTOR's default ports.
SERVED_PORTS = (22, 3370, 3371)


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def extra_tree(config: Config, root: Path, linbit_key: str | None) -> None:
    """Files that differ per build; mkosi copies them over the image after the static image/mkosi.extra."""
    apt_name = "debian" if config.distribution is Distribution.debian else "ubuntu"
    write(root / "etc/netplan/config.yaml", netplan_config(config), 0o600)
    write(root / "etc/ssh/sshd_config.d/10-linstor-appliance.conf",
          render("image/templates/sshd.conf.j2", ssh_password_login=config.ssh_password_login,
                 ssh_root_login=config.ssh_root_login))
    if config.ssh_authorized_keys:
        write(root / f"etc/ssh/authorized_keys.d/{config.default_user}", "\n".join(config.ssh_authorized_keys) + "\n")
    write(root / f"etc/apt/sources.list.d/{apt_name}.sources", distribution_sources(config))
    write(root / "etc/apt/sources.list.d/linbit.sources",
          render("image/templates/apt/linbit.sources.j2", linbit=sources.linbit_repository(config),
                 keyring=linbit_key is not None))
    if linbit_key:
        write(root / "etc/apt/keyrings/linbit.asc", linbit_key)
    if config.linstor_version:
        write(root / "etc/apt/preferences.d/linstor.pref",
              render("image/templates/apt/linstor-pin.pref.j2", version=config.linstor_version))
    write(root / "etc/hosts", render("image/templates/hosts.j2", hostname=config.hostname))
    # Not yet deployed, the appliance knows no cluster to limit its ports to; it still drops everything
    # it does not serve, and `linstor-appliance deploy` replaces this file with an allowlist.
    write(root / "etc/nftables.conf", firewall.ruleset(SERVED_PORTS, None), 0o755)
    write(root / "etc/linstor-appliance/appliance.conf",
          render("image/templates/appliance.conf.j2", backup_keep=config.backup_keep))


def package_manager_tree(config: Config, root: Path, linbit_key: str | None) -> None:
    """apt configuration for the build only; mkosi does not copy it into the image.

    mkosi's own build sources include the debug archive, which does not answer on every mirror;
    providing mkosi.sources replaces them with exactly the image's own sources.
    """
    write(root / "etc/apt/sources.list.d/mkosi.sources", distribution_sources(config))
    if config.linstor_source.kind == "linbit" and linbit_key:
        write(root / "etc/apt/sources.list.d/linbit.sources",
              render("image/templates/apt/linbit.sources.j2", linbit=sources.linbit_repository(config),
                     keyring=True))
        write(root / "etc/apt/keyrings/linbit.asc", linbit_key)
    if config.linstor_version:
        write(root / "etc/apt/preferences.d/linstor.pref",
              render("image/templates/apt/linstor-pin.pref.j2", version=config.linstor_version))

