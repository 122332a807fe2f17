"""Cold start of a whole cluster: guests on DRBD storage wait for a LINSTOR controller, the controller VM never waits.

Entry points (also for the deploy command): `install(root, settings)`, `remove(root)`,
`status.report(root)`. See docs/coldstart.md.
"""

from __future__ import annotations

from builder.coldstart.install import install, remove
from builder.coldstart.settings import Settings

__all__ = ["Settings", "install", "remove"]
