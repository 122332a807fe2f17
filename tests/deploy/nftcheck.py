"""Loading a ruleset with the host's own nft in a network namespace of its own, so the host's firewall is untouched.

nft is a host dependency (tools/install-host-deps); tests skip only where it is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def nft_binary() -> str:
    found = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.path.exists(p)), None)
    if found is None:
        pytest.skip("nft is not installed (tools/install-host-deps installs nftables)")
    return found


def in_namespace(script: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """A sh script in a new, empty network namespace (a user namespace too when not root)."""
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    env = {"PATH": f"{os.path.dirname(nft_binary())}:/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run([*unshare, "sh", "-c", script, "sh", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip


def nft_loads(text: str) -> subprocess.CompletedProcess[str]:
    """Checks, then loads the ruleset and lists what the kernel holds."""
    script = 'f=$(mktemp) && cat > "$f" && nft -c -f "$f" && nft -f "$f" && nft list ruleset; r=$?; rm "$f"; exit $r'
    return in_namespace(script, stdin=text)
