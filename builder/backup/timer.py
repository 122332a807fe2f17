"""The node timer that runs `linstor-appliance backup --timer` every hour (node/systemd/, shipped disabled).

The units are the Debian package's; what is node-specific lives in one environment file, so the units stay
plain (no template instance per VMID, which the package's removal scripts would not know about). Every
node runs the timer; `--timer` makes all but the node running the VM return at once, and that one takes a
backup only when the database changed or the newest backup is older than a day.
"""

from __future__ import annotations

import shlex

TIMER = "linstor-appliance-backup.timer"
SERVICE = "linstor-appliance-backup.service"
CONFIG = "/etc/linstor-appliance/backup.conf"


def config_text(vmid: int, extra: tuple[str, ...] = ()) -> str:
    args = shlex.join(["--vmid", str(vmid), *extra])
    return ("# Written by linstor-appliance deploy: the arguments of the hourly database backup\n"
            f"# ({SERVICE}). Change them here, e.g. --storage ID or --keep N.\n"
            f"LINSTOR_APPLIANCE_BACKUP_ARGS={args}\n")  # fmt: skip
