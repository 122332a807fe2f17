"""What every deploy step is: a small unit with explicit inputs that can describe, check, apply and undo itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from builder.deploy.context import Context


@dataclass(frozen=True)
class Action:
    """One line of the plan: what is done (a command line or an API call) and on which node."""

    node: str
    text: str


class Step:
    key: str = ""
    title: str = ""

    def applies(self, ctx: Context) -> bool:
        return True

    def describe(self, ctx: Context) -> list[Action]:
        raise NotImplementedError

    def still_done(self, ctx: Context) -> bool:
        """Whether what a finished run of this step did is still in place; steps that cannot tell trust the journal."""
        return True

    def apply(self, ctx: Context) -> dict[str, Any]:
        """Make the change (idempotently: a step may be repeated after a kill); return what changed."""
        raise NotImplementedError

    def undo(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        """Reverse what `record` says was changed; returns lines for the rollback report."""
        return []

    def summary(self, ctx: Context, record: dict[str, Any]) -> list[str]:
        """What the step changed, for the final report."""
        return []
