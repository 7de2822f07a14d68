"""How the command line ends: its exit statuses and the two errors that end a command early.

Only what every command raises lives here, so the commands never import each other.
"""

from __future__ import annotations

__all__ = [
    "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "CLIError", "Interrupted", "exception_text",
]

EXIT_OK = 0
EXIT_FAILED = 1  # a benchmark result differed, or an unexpected error
EXIT_USAGE = 2  # a bad path or a bad option
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A user error (bad path, bad option): reported in one line, exit status 2."""


class Interrupted(Exception):
    """Ctrl-C, with what to do next: reported in one line, exit status 130."""


def exception_text(exc: BaseException) -> str:
    """``Type: message`` on one line, cut short (a message may quote a whole document)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}{'...' if len(text) > 300 else ''}" if text else type(exc).__name__
