"""The one error type users see, and the function that raises it."""

from __future__ import annotations

from typing import NoReturn


class ApplianceError(Exception):
    """A failure explained for people: one line of message, optionally a hint on what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}; {self.hint}"
        return self.message


def die(message: str, hint: str | None = None) -> NoReturn:
    raise ApplianceError(message, hint=hint)
