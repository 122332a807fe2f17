"""The knobs of cold-start support and what they default to."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Settings:
    """What `coldstart install` writes to /etc/linstor-coldstart.conf on a node.

    boot_wait: how long pve-guests.service waits for a controller before it starts the on-boot guests
    anyway; hook_wait: how long the hook of an HA guest may wait (only ever in max_workers - 1 of the
    LRM's worker slots); retry_interval: how often the retry timer looks for refused starts.
    """

    controller_vmid: int | None = None
    snippets_storage: str = "local"
    boot_wait: int = 300
    hook_wait: int = 120
    retry_interval: int = 15
    probe_timeout: int = 2
    clear_wait: int = 60

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
