"""The one error type a user sees: a message that says what is wrong and how to fix it."""

from __future__ import annotations


class VoicecoachError(Exception):
    """A user-facing error: printed as one line by the CLI, which then exits non-zero.

    ``message`` says what is wrong; ``hint`` says how to fix it.
    """

    def __init__(self, message: str, hint: str = "", exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def one_line(self) -> str:
        """The message and the fix on one line, as the CLI prints it."""
        text = self.message.rstrip(".")
        if self.hint:
            text += f"; {self.hint.rstrip('.')}"
        return " ".join(text.split()) + "."
