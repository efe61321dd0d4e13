"""One-line failures for magics and widgets: the server's error text, never a traceback."""

from __future__ import annotations

from nbserve.errors import ServingError


class NotebookError(Exception):
    """A failure shown to the notebook user as ``code: message`` (IPython renders no traceback)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message

    def _render_traceback_(self) -> list[str]:
        # IPython's hook for exceptions that draw themselves: one red line instead of a stack.
        return [f"\x1b[0;31mnbserve: {self}\x1b[0m"]


def one_line(error: BaseException) -> str:
    """``CODE: message`` for a ServingError or NotebookError, ``Type: message`` for anything else."""
    if isinstance(error, NotebookError):
        return str(error)
    if isinstance(error, ServingError):
        return f"{error.code}: {error.message}"
    return f"{type(error).__name__}: {error}"
