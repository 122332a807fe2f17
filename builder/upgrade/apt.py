"""apt on the nodes, pinned: which packages move together, at exactly which version, and whether apt can.

linstor-satellite and linstor-controller Depend on `linstor-common (= same version)`, so every one of them
installed on a node moves in one apt command (linstor.md 6.4, 13.1). The version is the one the node's
repository holds for the target release (`apt-cache madison`), else the image's own package version.
"""

from __future__ import annotations

from builder.deploy.pve import Pve
from builder.deploy.remote import Node, Transport
from builder.deploy.versions import release
from builder.errors import die

PACKAGES = ("linstor-common", "linstor-satellite", "linstor-controller")


def candidate(transport: Transport, node: Node, package: str, to_version: str) -> str | None:
    """The newest version of `package` in the node's repository that is the release `to_version`."""
    result = transport.run(node, ["apt-cache", "madison", package], check=False)
    for line in result.stdout.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) >= 2 and fields[0] == package and release(fields[1]) == to_version:
            return fields[1]  # madison lists the newest first
    return None


def pins(pve: Pve, node: Node, to_version: str, package_version: str) -> dict[str, str]:
    """{package: version} for every LINSTOR server package installed on `node`."""
    installed = [p for p in PACKAGES if pve.package_version(node, p) is not None]
    if "linstor-satellite" not in installed:
        die(f"linstor-satellite is not installed on {node.name}", hint="every node must be a LINSTOR satellite")
    if "linstor-common" not in installed:
        installed.insert(0, "linstor-common")
    version = candidate(pve.transport, node, "linstor-satellite", to_version)
    if version is None:
        version = package_version if package_version and release(package_version) == to_version else to_version
    return {package: version for package in installed}


def argv(pinned: dict[str, str], *flags: str) -> list[str]:
    return ["apt-get", "install", *flags, *(f"{package}={version}" for package, version in pinned.items())]


def _reason(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
    return (errors or lines or ["no output"])[0]


def simulate(transport: Transport, node: Node, pinned: dict[str, str]) -> None:
    result = transport.run(node, argv(pinned, "--simulate", "-q"), check=False)
    if result.returncode != 0:
        wanted = " ".join(f"{p}={v}" for p, v in pinned.items())
        die(f"apt on {node.name} cannot install {wanted}: {_reason(result.stderr or result.stdout)}",
            hint=f"check 'apt-cache madison linstor-satellite' on {node.name} (run apt-get update there, or add the "
                 "repository that holds this version)")  # fmt: skip


def install(transport: Transport, node: Node, pinned: dict[str, str]) -> None:
    result = transport.run(node, argv(pinned, "-y", "-q"), check=False)
    if result.returncode != 0:
        die(f"apt-get install on {node.name} failed: {_reason(result.stderr or result.stdout)}",
            hint=f"fix apt on {node.name}, then continue with --resume")
