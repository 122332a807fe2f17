"""The journaled step loop that the deploy, restore and upgrade share; each says what a failed step means."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

from builder import log, testpoint
from builder.deploy import signals
from builder.deploy.context import Context
from builder.deploy.steps.base import Step
from builder.errors import ApplianceError

C = TypeVar("C", bound=Context)


def run_steps(ctx: C, steps: Sequence[Step], on_failure: Callable[[C, int, Step, BaseException], NoReturn]) -> None:
    """Each step in order, skipping what a journaled earlier run did and is still in place; then `completed`."""
    total = len(steps)
    for number, step in enumerate(steps, 1):
        # A signal may arrive anywhere in here, the journal's own writes included (they are whole: see Journal.save).
        try:
            with log.step(f"Step {number}/{total}: {step.title}"):
                if ctx.j.state(step.key) == "done" and step.still_done(ctx):
                    log.info("already done")
                    continue
                ctx.j.start_step(step.key)
                record = step.apply(ctx)
                ctx.j.finish_step(step.key, record)
            testpoint.reached(f"after-{step.key}")
        except (Exception, KeyboardInterrupt) as error:
            on_failure(ctx, number, step, error)
    ctx.j.set_status("completed")


def describe(error: BaseException) -> tuple[str, str | None]:
    """What stopped a step, in one line, and the hint that came with it."""
    if isinstance(error, ApplianceError):
        return error.message, error.hint
    if isinstance(error, signals.Interrupted):
        return f"interrupted by {error.name}", None
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", None
    return f"{type(error).__name__}: {error}", None
