"""Version numbers of LINSTOR and the linstor-proxmox plugin, and what each release can do.

LINSTOR has no mixed-version operation, so versions are compared as LINSTOR's own x.y.z release
(the Debian epoch and revision are packaging detail). Release boundaries are from linstor.md
sections 2.2, 2.3 and 5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.manifest import upstream_version


def release(version: str) -> str:
    """'1.33.3-1' -> '1.33.3', '1.34.0~rc.1-1' -> '1.34.0-rc.1': the version LINSTOR itself reports."""
    return upstream_version(version.strip()).replace("~", "-")


def numbers(version: str) -> tuple[int, ...]:
    """The leading numeric parts: '1.34.0-rc.1' -> (1, 34, 0)."""
    match = re.match(r"^(\d+(?:\.\d+)*)", release(version))
    if not match:
        return ()
    return tuple(int(part) for part in match.group(1).split("."))


@dataclass(frozen=True)
class Plugin:
    """The installed linstor-proxmox plugin."""

    version: str

    @property
    def has_controllervm(self) -> bool:
        # The option was removed in 6.0.0; 5.2.2 is the last release that has it.
        return numbers(self.version) < (6,)

    @property
    def uses_pm_names(self) -> bool:
        return numbers(self.version) >= (8,)

    @property
    def local_activation_fallback(self) -> bool:
        return numbers(self.version) >= (8, 3)

    @property
    def max_apiver(self) -> int | None:
        """Highest PVE storage APIVER the plugin declares, where known: 5.2.2 reports 2..10 only."""
        return 10 if numbers(self.version) < (6,) else None

    def describe(self) -> str:
        features = ["device-path"]
        features.append("controllervm" if self.has_controllervm else "no controllervm (removed in 6.0.0)")
        if self.local_activation_fallback:
            features.append("local-activation fallback")
        return f"linstor-proxmox {self.version}: " + ", ".join(features)


def needs_keep_res(linstor_version: str) -> bool:
    """Before 1.33 a satellite may delete the .res file that brings the controller VM's disk up at boot."""
    return numbers(linstor_version) < (1, 33)
