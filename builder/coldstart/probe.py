"""Asking a LINSTOR controller whether it is up: GET /health, as linstor-proxmox does (linstor.md 2.8)."""

from __future__ import annotations

from pathlib import Path

from builder.coldstart import pveconf
from builder.run import run


def health_argv(root: Path, storage: pveconf.Storage, address: str, timeout: int) -> list[str]:
    """curl for one controller address: https on 3371 with client certificates or a token, else http on 3370."""
    host = f"[{address}]" if ":" in address else address
    ca, crt, key = (storage.values.get(k) for k in ("apica", "apicrt", "apikey"))
    argv = ["curl", "-fs", "-o", "/dev/null", "--connect-timeout", str(timeout), "--max-time", str(timeout + 1)]
    if ca or (crt and key) or (root / "var/lib/linstor.d/auth.json").exists():
        argv += ["--cacert", ca] if ca else ["-k"]
        if crt and key:
            argv += ["--cert", crt, "--key", key]
        return [*argv, f"https://{host}:3371/health"]
    return [*argv, f"http://{host}:3370/health"]


def answering(root: Path, storage: pveconf.Storage, timeout: int = 2) -> str | None:
    """The first controller of the storage that answers, in list order, or None."""
    for address in storage.controllers:
        if run(health_argv(root, storage, address, timeout), check=False, capture=True).returncode == 0:
            return address
    return None
