"""Shared consoles and CLI-wide settings.

`console` (stdout) carries data such as tables and `--json`; `err_console` (stderr) carries
progress, warnings and errors, so piping stdout stays clean.
"""

from __future__ import annotations

import logging
import os

from rich.console import Console, ConsoleDimensions

#: Width of output to a file or pipe (a CI log) when COLUMNS does not set one: Rich's 80 would cut
#: performance numbers and metric names in the results tables short.
PIPE_WIDTH = 120


class _Console(Console):
    """A Console that is :data:`PIPE_WIDTH` wide when it writes to a file or pipe and COLUMNS is unset."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if not self.is_terminal and not os.environ.get("COLUMNS"):
            return ConsoleDimensions(PIPE_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = _Console()
err_console = _Console(stderr=True)


class Settings:
    """Process-wide CLI settings set by the global and per-command `--verbose` flags."""

    verbose: bool = False


settings = Settings()


def set_verbose(verbose: bool) -> None:
    """Turn on debug logging and Rich tracebacks (idempotent; never turns verbose back off)."""
    if verbose:
        settings.verbose = True
    configure_logging()


def configure_logging() -> None:
    from rich.logging import RichHandler

    root = logging.getLogger("madengine")
    root.setLevel(logging.DEBUG if settings.verbose else logging.INFO)
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False,
                              rich_tracebacks=True, tracebacks_show_locals=False)
        root.addHandler(handler)
    for handler in root.handlers:
        handler.setLevel(logging.DEBUG if settings.verbose else logging.WARNING)
