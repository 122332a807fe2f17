"""Fake `pveversion [-v]`."""

from __future__ import annotations

import sys

from ._cli import Context, run

KERNEL = "6.8.12-9-pve"
REPOID = "2a5fa54a8503f96d"


def main(ctx: Context, argv: list[str]) -> int:
    packages = ctx.state.read("packages.json", {}).get(ctx.node, {})
    manager = packages.get("pve-manager", "8.4.1")
    if "-v" in argv or "--verbose" in argv:
        print(f"proxmox-ve: {packages.get('proxmox-ve', '8.4.0')} (running kernel: {KERNEL})")
        print(f"pve-manager: {manager} (running version: {manager}/{REPOID})")
        for name in ("libpve-storage-perl", "pve-cluster", "pve-ha-manager", "qemu-server"):
            if name in packages:
                print(f"{name}: {packages[name]}")
        return 0
    print(f"pve-manager/{manager}/{REPOID} (running kernel: {KERNEL})")
    return 0


def entry() -> int:
    return run(main)


if __name__ == "__main__":
    sys.exit(entry())
