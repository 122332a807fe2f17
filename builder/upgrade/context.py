"""What the upgrade's steps share beyond the deploy's Context: the versions and the two disks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from builder.deploy.context import Context
from builder.deploy.controller import Endpoint


@dataclass(frozen=True)
class Target:
    """The upgrade as preflight settled it; kept in the journal, so a resumed run needs no controller to ask."""

    from_version: str  # the release the running controller reported
    to_version: str  # the release of the new image's linstor-controller
    old_resource: str  # the disk the VM booted from
    new_resource: str  # the disk the new image goes to
    old_disk: str  # the VM's scsi0 value before the switch, to switch back to
    # Per node, the packages apt installs at exactly these versions (--satellites; empty when none need it).
    pins: dict[str, dict[str, str]] = field(default_factory=dict)
    backup: str | None = None  # the newest off-VM backup when preflight looked, if young enough

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        return cls(**data)


@dataclass
class UpgradeContext(Context):
    target: Target | None = None
    satellites: bool = False
    timeout: float = 300.0

    @property
    def t(self) -> Target:
        assert self.target is not None, "preflight has not run"
        return self.target

    @property
    def endpoint(self) -> Endpoint:
        return self.f.appliance_endpoint


def of(ctx: Context) -> UpgradeContext:
    assert isinstance(ctx, UpgradeContext), "an upgrade step runs with an UpgradeContext"
    return ctx
