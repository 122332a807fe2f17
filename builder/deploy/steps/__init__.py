"""The deploy's steps in the order they run (the numbering the plan and the issue use)."""

from __future__ import annotations

from builder.deploy.steps.backupjob import BackupJob
from builder.deploy.steps.backuptimer import BackupTimer
from builder.deploy.steps.base import Action, Step
from builder.deploy.steps.disk import Disk
from builder.deploy.steps.handover import Handover
from builder.deploy.steps.image import Image
from builder.deploy.steps.inject import Inject
from builder.deploy.steps.register import Register
from builder.deploy.steps.start import Start
from builder.deploy.steps.storage import Storage
from builder.deploy.steps.units import Units
from builder.deploy.steps.verify import Verify
from builder.deploy.steps.vm import Vm

ALL: tuple[Step, ...] = (Disk(), Vm(), Image(), Register(), Units(), Handover(), Inject(), Start(), Verify(),
                         Storage(), BackupJob(), BackupTimer())  # fmt: skip

__all__ = ["ALL", "Action", "Step"]
